// The voiceengine console page: microphone -> /browser -> the engine -> reply -> speakers.
// Plain JS, no build step. window.voiceengineStats is kept up to date for automation.
"use strict";

(function () {
  const stats = { state: "idle", sentMs: 0, receivedMs: 0, playedMs: 0, transcript: [] };
  window.voiceengineStats = stats;

  const $ = (id) => document.getElementById(id);
  const logBox = $("log");
  const transcriptBox = $("transcript");
  const chart = $("chart");
  const latencies = { firstAudio: [], interrupt: [] };
  const MAX_LOG_LINES = 300;
  const MAX_POINTS = 30;

  let ctx = null, mic = null, capture = null, playback = null, ws = null;
  let outRate = 0, inRate = 0;
  let speechStoppedAt = null, interruptAt = null, queuedMs = 0, playing = false;
  let lastPlayedMs = 0, lastConsumedMs = 0;
  const t0 = performance.now();

  function setState(state) {
    stats.state = state;
    $("state").textContent = state;
    const live = state === "live" || state === "connecting";
    $("start").disabled = live;
    $("stop").disabled = !live;
    $("interrupt").disabled = state !== "live";
  }

  function log(name, detail) {
    const line = document.createElement("div");
    const ms = (performance.now() - t0).toFixed(0).padStart(7);
    line.textContent = `${ms} ms  ${name}${detail ? "  " + detail : ""}`;
    logBox.appendChild(line);
    while (logBox.childNodes.length > MAX_LOG_LINES) logBox.removeChild(logBox.firstChild);
    logBox.scrollTop = logBox.scrollHeight;
  }

  function fmt(ms) { return ms == null ? "\u2013" : `${ms.toFixed(0)} ms`; }

  function updateAudio() {
    $("audioMs").textContent = `${(stats.sentMs / 1000).toFixed(1)} s / ${(stats.receivedMs / 1000).toFixed(1)} s / ` +
      `${(stats.playedMs / 1000).toFixed(1)} s`;
  }

  function drawChart() {
    const g = chart.getContext("2d");
    const w = chart.width, h = chart.height;
    g.clearRect(0, 0, w, h);
    const all = latencies.firstAudio.concat(latencies.interrupt);
    const top = Math.max(500, ...all) * 1.1;
    g.strokeStyle = "#eef0f4";
    for (let y = 0; y <= 4; y++) { g.beginPath(); g.moveTo(0, h * y / 4); g.lineTo(w, h * y / 4); g.stroke(); }
    const series = [[latencies.firstAudio, "#8250df"], [latencies.interrupt, "#d1242f"]];
    for (const [points, color] of series) {
      g.strokeStyle = color; g.fillStyle = color; g.beginPath();
      points.forEach((v, i) => {
        const x = (i + 0.5) * w / MAX_POINTS, y = h - (v / top) * h;
        if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
        g.fillRect(x - 2, y - 2, 4, 4);
      });
      g.stroke();
    }
    g.fillStyle = "#5b6478"; g.font = "10px sans-serif";
    g.fillText(`${top.toFixed(0)} ms`, 4, 10);
  }

  function addLatency(kind, ms) {
    const list = latencies[kind];
    list.push(ms);
    if (list.length > MAX_POINTS) list.shift();
    $(kind === "firstAudio" ? "firstAudio" : "interruptLatency").textContent = fmt(ms);
    drawChart();
  }

  function showTranscript(msg) {
    const key = msg.itemId || `${msg.role}-${stats.transcript.length}`;
    let entry = stats.transcript.find((e) => e.key === key);
    if (!entry) {
      entry = { key, role: msg.role, text: "", final: false, node: null };
      stats.transcript.push(entry);
      entry.node = document.createElement("div");
      entry.node.className = `line ${msg.role}`;
      const who = document.createElement("span");
      who.className = "who";
      who.textContent = msg.role === "user" ? "you" : "assistant";
      entry.node.appendChild(who);
      entry.node.appendChild(document.createElement("span"));
      transcriptBox.appendChild(entry.node);
    }
    entry.text = msg.final ? msg.text : entry.text + msg.text;
    entry.final = msg.final;
    entry.node.lastChild.textContent = entry.text;
    entry.node.classList.toggle("partial", !msg.final);
    transcriptBox.scrollTop = transcriptBox.scrollHeight;
  }

  function onControl(msg) {
    switch (msg.type) {
      case "ready":
        inRate = msg.inputSampleRate; outRate = msg.outputSampleRate;
        setState("live");
        log("ready", `${msg.callId} in ${inRate} Hz, out ${outRate} Hz`);
        break;
      case "clear":
        playback.port.postMessage({ type: "clear" });
        log("clear", "playback flushed (barge-in)");
        break;
      case "transcript":
        showTranscript(msg);
        break;
      case "turn":
        $("serverFirstAudio").textContent = fmt(msg.firstAudioPlayedMs);
        log("turn", `#${msg.index} ${msg.status} first audio ${fmt(msg.firstAudioPlayedMs)}`);
        break;
      case "event":
        if (msg.name === "speech.stopped") speechStoppedAt = performance.now();
        if (msg.name === "speech.started" && (playing || queuedMs > 0)) interruptAt = performance.now();
        log(msg.name, msg.detail);
        break;
      default:
        log("unknown message", msg.type);
    }
  }

  function onPlayback(report) {
    queuedMs = report.queuedMs;
    playing = report.playing;
    if (report.playedMs > lastPlayedMs && speechStoppedAt !== null) {
      addLatency("firstAudio", performance.now() - speechStoppedAt);
      speechStoppedAt = null;
    }
    if (interruptAt !== null && !report.playing && report.queuedMs === 0) {
      addLatency("interrupt", performance.now() - interruptAt);
      interruptAt = null;
    }
    lastPlayedMs = report.playedMs;
    stats.playedMs = report.playedMs;
    updateAudio();
    // only when the position moved: an idle page sends nothing
    if (report.consumedMs !== lastConsumedMs && ws && ws.readyState === WebSocket.OPEN && stats.state === "live") {
      lastConsumedMs = report.consumedMs;
      ws.send(JSON.stringify({ type: "played", positionMs: report.consumedMs }));
    }
  }

  async function start() {
    if (stats.state === "live" || stats.state === "connecting") return;
    setState("connecting");
    try {
      ctx = new AudioContext({ latencyHint: "interactive" });
      await ctx.audioWorklet.addModule("worklets.js");
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
      });
      mic = ctx.createMediaStreamSource(stream);
      capture = new AudioWorkletNode(ctx, "ve-capture", { processorOptions: { frameMs: 20 } });
      playback = new AudioWorkletNode(ctx, "ve-playback", { outputChannelCount: [1],
        processorOptions: { prebufferMs: 40, reportMs: 20 } });
      playback.port.onmessage = (e) => onPlayback(e.data);
      playback.connect(ctx.destination);
      mic.connect(capture);
      if (ctx.state !== "running") await ctx.resume();
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      ws = new WebSocket(`${scheme}//${location.host}/browser${location.search}`);
      ws.binaryType = "arraybuffer";
      ws.onopen = () => {
        ws.send(JSON.stringify({ type: "hello", sampleRate: ctx.sampleRate, outputSampleRate: ctx.sampleRate }));
      };
      ws.onmessage = (e) => {
        if (e.data instanceof ArrayBuffer) {
          stats.receivedMs += (e.data.byteLength / 2) * 1000 / outRate;
          playback.port.postMessage(e.data, [e.data]);
        } else {
          onControl(JSON.parse(e.data));
        }
      };
      ws.onclose = (e) => {
        log("closed", `${e.code} ${e.reason}`);
        teardown(e.code === 1000 || e.code === 1005 ? "closed" : "error");
      };
      capture.port.onmessage = (e) => {
        if (ws && ws.readyState === WebSocket.OPEN && stats.state === "live") {
          ws.send(e.data);
          stats.sentMs += (e.data.byteLength / 2) * 1000 / ctx.sampleRate;
        }
      };
    } catch (err) {
      log("error", String(err && err.message || err));
      teardown("error");
    }
  }

  function teardown(state) {
    if (mic) { mic.mediaStream.getTracks().forEach((t) => t.stop()); mic.disconnect(); }
    if (capture) capture.disconnect();
    if (playback) playback.disconnect();
    if (ctx && ctx.state !== "closed") ctx.close();
    mic = capture = playback = ctx = null;
    setState(state);
  }

  function stop() {
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ type: "bye" }));
      ws.close(1000, "bye");
    } else {
      teardown("closed");
    }
  }

  $("start").addEventListener("click", start);
  $("stop").addEventListener("click", stop);
  $("interrupt").addEventListener("click", () => {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "interrupt" }));
  });
  $("say").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("text").value.trim();
    if (text && ws && ws.readyState === WebSocket.OPEN && stats.state === "live") {
      ws.send(JSON.stringify({ type: "text", text }));
      showTranscript({ role: "user", text, final: true, itemId: null });
      $("text").value = "";
    }
  });
  drawChart();
  updateAudio();
  if (new URLSearchParams(location.search).get("autostart") === "1") start();
})();
