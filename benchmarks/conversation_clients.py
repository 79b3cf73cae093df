"""One client under test, in its own worker process: N paced conversations, measured.

Run by ``benchmarks/conversation_load.py`` as
``python -m benchmarks.conversation_clients --client minimal --url ws://... --levels 50 ...``;
prints one JSON object (the last line of stdout). Everything that depends on the client is
in a :class:`Client` subclass; the workload (the paced 20 ms microphone, the turns), the
measurement and the accounting are shared, so the clients differ only in their own code.

Measurement (per level of live sessions): after the sessions are up and ``warmup`` seconds
have passed, a window of ``seconds``: process CPU (``getrusage``, user + system, every
thread, and each apart), wall time, audio sent and received, replies, event-loop lag (how late the paced
frames wake up), RSS (sampled every 0.5 s, from ``/proc/self/statm``), and with
``--server-pid`` the server process's CPU in the same window (from ``/proc``: whether the
server, not the client, is what ran out of time). Imports, the session ramp and the
warm-up are outside the window. This module imports nothing of voiceengine at module
level, so the ``agents`` client can run under another interpreter (a venv with
openai-agents, whose websockets pin differs from ours).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import resource
import sys
import time
from typing import Any

from benchmarks.voiced_tone import voiced_tone

#: set by ``conversation_load --anchor-tree``: that checkout's voiceengine, imported instead of
#: this tree's (the harness stays this one), for a same-run A/B
TREE_ENV = "VOICEENGINE_BENCH_TREE"
if os.environ.get(TREE_ENV):
    sys.path.insert(0, os.environ[TREE_ENV])

RATE = 24000
FRAME_MS = 20
FRAME_BYTES = RATE * 2 * FRAME_MS // 1000  # 960: PCM16 mono 24 kHz
API_KEY = "sk-bench-not-a-key"  # the fake server takes any bearer token
_RSS_SAMPLE_S = 0.5
_CONNECT_CONCURRENCY = 10


def _voiced_frames() -> list[bytes]:
    """One second of voiced tone cut into 20 ms frames once: the driver hands out the same
    bytes objects to every client."""
    pcm = voiced_tone(RATE, RATE)
    return [pcm[i:i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]


VOICED = _voiced_frames()
SILENCE = bytes(FRAME_BYTES)


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil  # not Linux

        return int(psutil.Process().memory_info().rss)


def cpu_times() -> tuple[float, float]:
    """This process's CPU seconds so far: (user, system), every thread."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime, ru.ru_stime


def process_cpu_s(pid: int) -> float | None:
    """Another process's CPU seconds so far (user + system), from ``/proc``; ``None`` when
    it cannot be read (not Linux, the process gone). Not psutil's ``cpu_times()``, which the
    parent-side benchmarks use: importing psutil here would add about 0.9 MB to every
    worker's RSS figures."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return stat_cpu_s(f.read())
    except OSError:
        return None


def stat_cpu_s(stat: bytes) -> float:
    """User + system CPU seconds from a ``/proc/<pid>/stat`` line."""
    # the fields after the command name, which is in parentheses and may hold spaces and ")"
    fields = stat[stat.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


class Client:
    """One conversation. Subclasses connect, send one 20 ms frame, and count what comes back."""

    name = ""

    def __init__(self, url: str) -> None:
        self.url = url
        self.received_bytes = 0  # decoded reply audio handed to the app
        self.replies = 0  # responses completed
        self.errors: list[str] = []

    async def open(self) -> None:
        raise NotImplementedError

    async def send_frame(self, frame: bytes) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class MinimalClient(Client):
    """What a competent user writes on ``websockets`` + ``json`` + ``base64``."""

    name = "minimal"

    async def open(self) -> None:
        from websockets.asyncio.client import connect

        self.ws = await connect(self.url, additional_headers={"Authorization": f"Bearer {API_KEY}"},
                                max_size=16 * 2**20)
        await self.ws.send(json.dumps({"type": "session.update", "session": {
            "type": "realtime", "output_modalities": ["audio"],
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": RATE},
                                "turn_detection": {"type": "server_vad"}},
                      "output": {"format": {"type": "audio/pcm", "rate": RATE}}}}}))
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for message in self.ws:
                event = json.loads(message)
                kind = event["type"]
                if kind == "response.output_audio.delta":
                    self.received_bytes += len(base64.b64decode(event["delta"]))
                elif kind == "response.done":
                    self.replies += 1
                elif kind == "error":
                    self.errors.append(str(event.get("error", {}).get("code")))
        except ConnectionClosed:
            pass

    async def send_frame(self, frame: bytes) -> None:
        await self.ws.send(json.dumps({"type": "input_audio_buffer.append",
                                       "audio": base64.b64encode(frame).decode("ascii")}))

    async def close(self) -> None:
        await self.ws.close()
        await self.reader


class EngineClient(Client):
    """The real ``VoiceEngine`` facade, audio pushed as an app does, playback unpaced to a
    callback (a null sink: the app gets every played PCM chunk and only counts it)."""

    name = "voiceengine"

    async def open(self) -> None:
        from voiceengine.engine import VoiceEngine, VoiceEngineConfig

        config = VoiceEngineConfig(api_key=API_KEY, url=self.url, input_sample_rate=RATE,
                                   playback_speed=None, prebuffer_ms=0)
        self.engine = engine = VoiceEngine("openai", config)

        def on_audio(pcm: bytes) -> None:
            self.received_bytes += len(pcm)

        def on_done(_info: Any) -> None:
            self.replies += 1

        def on_error(error: Any) -> None:
            self.errors.append(str(getattr(error, "code", None) or error))

        engine.on_audio_response = on_audio
        engine.on_response_done = on_done
        engine.on_error = on_error
        await engine.connect()

    async def send_frame(self, frame: bytes) -> None:
        await self.engine.send_audio(frame)

    async def close(self) -> None:
        await self.engine.close()


class EngineLayerClient(EngineClient):
    """The engine with one of its layers taken out, to measure what that layer costs in
    place (``conversation_load --layers``): the same engine, workload and server, minus
    the engine's own work at one depth. Not a way to use the library: these reach into its
    internals, which is why they live here. The parts kept are resolved once the engine
    is connected (no reconnect happens in this benchmark)."""

    #: where input frames enter: "engine" (``VoiceEngine.send_audio``), "runtime" (the
    #: provider's ``send_audio_nowait``: the engine's send layer out), "session" (the
    #: session's append text, framed and written: the runtime's send layer out too), "raw"
    #: (an append text made here, framed and written: the session's out too)
    send_at = "engine"
    #: audio deltas: "engine" (through the session, the provider and the engine to the
    #: app's callback) or "raw" (decoded at the socket and counted: the receive chain out)
    receive_at = "engine"

    async def open(self) -> None:
        await super().open()
        provider: Any = self.engine._provider  # an OpenAIProvider: a ProviderRuntime
        transport = provider._transport
        connection = transport.connection
        socket_write, framer = connection.transport.write, transport._framer
        session = provider._session
        if self.send_at == "runtime":
            self._send = provider.send_audio_nowait
        elif self.send_at == "session":
            def send_session(frame: bytes) -> None:
                socket_write(framer.frame((session.encode_audio(frame),)))
            self._send = send_session
        elif self.send_at == "raw":
            def send_raw(frame: bytes) -> None:
                text = ('{"type":"input_audio_buffer.append","audio":"'
                        + base64.b64encode(frame).decode("ascii") + '"}')
                socket_write(framer.frame((text,)))
            self._send = send_raw
        if self.receive_at == "raw":
            from voiceengine._audio.delta import scan_audio_delta

            pushed = connection.sink  # the runtime's: every other message still goes there
            client = self
            delta_type, sample_width = session.codec.audio_delta_type, session.codec.sample_width

            def receive_raw(text: str | bytes) -> None:
                scanned = scan_audio_delta(text, delta_type, sample_width)
                if scanned is None:
                    pushed(text)
                else:
                    client.received_bytes += len(scanned[1])
            connection.sink = receive_raw

    async def send_frame(self, frame: bytes) -> None:  # (send_at "engine": EngineClient's, see below)
        self._send(frame)


def _layer_client(name: str, send_at: str, receive_at: str) -> type[EngineLayerClient]:
    body: dict[str, Any] = {"name": name, "send_at": send_at, "receive_at": receive_at}
    if send_at == "engine":
        body["send_frame"] = EngineClient.send_frame  # the very same step as the full engine's
    return type(f"EngineLayerClient_{send_at}_{receive_at}", (EngineLayerClient,), body)


#: ``conversation_load --layers``: name -> (where frames enter, where audio deltas stop, what
#: that removes); each takes the engine's work out from one depth on
_LAYERS = {
    "ve-rt-send": ("runtime", "engine", "frames enter the provider runtime (the engine's send layer out)"),
    "ve-ss-send": ("session", "engine",
                   "frames enter the session, framed and written (+ the runtime's send layer out)"),
    "ve-raw-send": ("raw", "engine", "append texts made by hand, framed and written (+ the session's append out)"),
    "ve-raw-recv": ("engine", "raw", "audio deltas decoded at the socket and counted (the whole receive chain out)"),
    "ve-raw": ("raw", "raw", "ve-raw-send and ve-raw-recv together: what any client pays on this transport"),
}
LAYER_CLIENTS = {name: removed for name, (_, _, removed) in _LAYERS.items()}
_LAYER_CLASSES = [_layer_client(name, send_at, receive_at) for name, (send_at, receive_at, _) in _LAYERS.items()]


class AgentsClient(Client):
    """openai-agents' ``OpenAIRealtimeWebSocketModel`` (the model layer, no agent runner)."""

    name = "agents"

    async def open(self) -> None:
        from agents.realtime.model_inputs import RealtimeModelSendAudio
        from agents.realtime.openai_realtime import OpenAIRealtimeWebSocketModel

        self._audio_event = RealtimeModelSendAudio
        self.model = OpenAIRealtimeWebSocketModel()
        client = self

        class Listener:
            async def on_event(self, event: Any) -> None:
                kind = event.type
                if kind == "audio":
                    client.received_bytes += len(event.data)
                elif kind == "turn_ended":
                    client.replies += 1
                elif kind in ("error", "exception"):
                    client.errors.append(str(getattr(event, "error", None) or getattr(event, "exception", None)))

        self.model.add_listener(Listener())
        await self.model.connect({"api_key": API_KEY, "url": self.url, "initial_model_settings": {
            "tracing": None, "turn_detection": {"type": "server_vad"},
            "input_audio_format": "pcm16", "output_audio_format": "pcm16"}})

    async def send_frame(self, frame: bytes) -> None:
        await self.model.send_event(self._audio_event(audio=frame))

    async def close(self) -> None:
        await self.model.close()


CLIENTS: dict[str, type[Client]] = {c.name: c for c in (MinimalClient, EngineClient, AgentsClient, *_LAYER_CLASSES)}


class Conversation:
    """One session's microphone: a 20 ms frame on a real-time schedule, forever, in a cycle of
    ``speech_ms`` of voice then silence (server VAD ends the turn, the reply comes back
    while the silence streams on, as a live microphone does)."""

    def __init__(self, client: Client, index: int, *, speech_ms: int, cycle_ms: int) -> None:
        self.client = client
        self.index = index
        self.speech_frames = speech_ms // FRAME_MS
        self.cycle_frames = cycle_ms // FRAME_MS
        # sessions spread over the cycle (golden-ratio steps) so they do not all speak at once
        self.frame_index = int((index * 0.6180339887) % 1.0 * self.cycle_frames)
        self.phase_s = (index * 0.3819660113) % 1.0 * FRAME_MS / 1000
        self.sent_bytes = 0
        self.late_frames = 0  # sent more than one frame period behind schedule
        self.task: asyncio.Task[None] | None = None

    async def run(self, recorder: Recorder) -> None:
        loop = asyncio.get_running_loop()
        period = FRAME_MS / 1000
        due = loop.time() + self.phase_s
        await asyncio.sleep(self.phase_s)
        n_voiced = len(VOICED)
        samples_rss = self.index == 0
        while True:
            if recorder.recording:
                now = loop.time()
                recorder.lag.append(max(0.0, now - due))  # how late this frame's wake-up is
                if samples_rss and now >= recorder.next_rss:
                    recorder.rss.append(rss_bytes())
                    recorder.next_rss = now + _RSS_SAMPLE_S
            pos = self.frame_index % self.cycle_frames
            frame = VOICED[pos % n_voiced] if pos < self.speech_frames else SILENCE
            await self.client.send_frame(frame)
            self.sent_bytes += FRAME_BYTES
            self.frame_index += 1
            due += period
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -period:
                self.late_frames += 1


class Recorder:
    """What the conversations record while a window is open. Event-loop lag is read off the
    frames' own wake-ups (how late each paced frame woke against its schedule): no ticker
    of its own, so the measurement adds no loop iterations to the client it measures. RSS
    is sampled by the first conversation every 0.5 s."""

    def __init__(self) -> None:
        self.lag: list[float] = []
        self.rss: list[int] = []
        self.next_rss = 0.0
        self.recording = False

    def start(self) -> None:
        self.lag.clear()
        self.rss.clear()
        self.next_rss = 0.0
        self.recording = True


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _totals(conversations: list[Conversation]) -> dict[str, int]:
    return {
        "sent_bytes": sum(c.sent_bytes for c in conversations),
        "received_bytes": sum(c.client.received_bytes for c in conversations),
        "replies": sum(c.client.replies for c in conversations),
        "late_frames": sum(c.late_frames for c in conversations),
        "errors": sum(len(c.client.errors) for c in conversations),
    }


async def _open(client: Client, gate: asyncio.Semaphore) -> None:
    async with gate:
        await client.open()


#: ``--window-marks``: system calls the worker makes when a window opens and when it closes
#: and nowhere else (neither Python nor the libraries here call them), so an instruction
#: counter told to cut its counts at them (callgrind's ``--zero-before=getppid ...
#: --dump-before=getpgrp``: ``benchmarks/conversation_instructions.py``) counts exactly the window
WINDOW_OPENS, WINDOW_CLOSES = "getppid", "getpgrp"


async def run_worker(client_name: str, url: str, levels: list[int], *, warmup_s: float, seconds: float,
                     speech_ms: int, cycle_ms: int, window_marks: bool = False,
                     server_pid: int = 0) -> dict[str, Any]:
    cls = CLIENTS[client_name]
    if client_name == "voiceengine" or client_name in LAYER_CLIENTS:  # imports outside the measurement
        import voiceengine.engine  # noqa: F401
    elif client_name == "agents":
        import agents.realtime.openai_realtime  # noqa: F401
    else:
        import websockets.asyncio.client  # noqa: F401
    rss_start = rss_bytes()
    recorder = Recorder()
    conversations: list[Conversation] = []
    gate = asyncio.Semaphore(_CONNECT_CONCURRENCY)
    windows: list[dict[str, Any]] = []
    try:
        for level in levels:
            new = [Conversation(cls(url), i, speech_ms=speech_ms, cycle_ms=cycle_ms)
                   for i in range(len(conversations), level)]
            await asyncio.gather(*(_open(c.client, gate) for c in new))
            for conv in new:
                conv.task = asyncio.create_task(conv.run(recorder))
            conversations.extend(new)
            await asyncio.sleep(warmup_s)
            before = _totals(conversations)
            recorder.start()
            server0 = process_cpu_s(server_pid) if server_pid else None  # (outside the marked window)
            if window_marks:
                os.getppid()  # WINDOW_OPENS
            (user0, sys0), wall0 = cpu_times(), time.perf_counter()
            await asyncio.sleep(seconds)
            (user1, sys1), wall1 = cpu_times(), time.perf_counter()
            if window_marks:
                os.getpgrp()  # WINDOW_CLOSES
            server1 = process_cpu_s(server_pid) if server_pid else None
            recorder.recording = False
            after = _totals(conversations)
            delta = {k: after[k] - before[k] for k in after}
            failed = [c.task for c in conversations if c.task is not None and c.task.done()]
            if failed:
                exc = failed[0].exception()
                raise RuntimeError(f"{len(failed)} conversation(s) stopped: {exc!r}")
            windows.append({
                "sessions": level, "cpu_s": (user1 + sys1) - (user0 + sys0), "user_s": user1 - user0,
                "sys_s": sys1 - sys0, "wall_s": wall1 - wall0, **delta,
                "server_cpu_s": server1 - server0 if server0 is not None and server1 is not None else None,
                "lag_p50_ms": _percentile(recorder.lag, 0.50) * 1e3,
                "lag_p99_ms": _percentile(recorder.lag, 0.99) * 1e3,
                "lag_max_ms": max(recorder.lag, default=math.nan) * 1e3,
                "rss_mean_mb": sum(recorder.rss) / len(recorder.rss) / 2**20 if recorder.rss else rss_bytes() / 2**20,
                "rss_end_mb": rss_bytes() / 2**20,
            })
    finally:
        for conv in conversations:
            if conv.task is not None:
                conv.task.cancel()
        await asyncio.gather(*(c.task for c in conversations if c.task is not None), return_exceptions=True)
        totals_before_close = _totals(conversations)
        closes = await asyncio.gather(*(c.client.close() for c in conversations), return_exceptions=True)
    close_errors = [repr(e) for e in closes if isinstance(e, BaseException)]
    error_samples = sorted({e for c in conversations for e in c.client.errors})[:5]
    return {
        "client": client_name, "levels": levels, "windows": windows, "totals": _totals(conversations),
        "totals_before_close": totals_before_close, "rss_start_mb": rss_start / 2**20,
        "close_errors": close_errors[:5], "error_samples": error_samples,
        "python": sys.version.split()[0], "pid": os.getpid(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", required=True, choices=sorted(CLIENTS))
    parser.add_argument("--url", required=True)
    parser.add_argument("--levels", required=True, help="live sessions per measurement, ascending: 10,60")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--speech-ms", type=int, default=2500)
    parser.add_argument("--cycle-ms", type=int, default=6000)
    parser.add_argument("--window-marks", action="store_true",
                        help=f"call {WINDOW_OPENS}() as each window opens and {WINDOW_CLOSES}() as it closes")
    parser.add_argument("--server-pid", type=int, default=0,
                        help="the server's process: its CPU in each window is reported too (Linux)")
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")]
    result = asyncio.run(run_worker(args.client, args.url, levels, warmup_s=args.warmup, seconds=args.seconds,
                                    speech_ms=args.speech_ms, cycle_ms=args.cycle_ms,
                                    window_marks=args.window_marks, server_pid=args.server_pid))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
