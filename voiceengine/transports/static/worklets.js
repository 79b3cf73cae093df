// AudioWorklet processors of the voiceengine console (no build step).
//
// ve-capture: microphone float32 -> PCM16 frames of `frameMs` posted to the page.
// ve-playback: PCM16 chunks from the page -> the speakers, through a small jitter buffer;
// reports how far it has consumed the reply stream (played + dropped by a clear), so the
// server knows what the user actually heard.

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const frameMs = (options.processorOptions && options.processorOptions.frameMs) || 20;
    this.frameSamples = Math.round(sampleRate * frameMs / 1000);
    this.frame = new Int16Array(this.frameSamples);
    this.filled = 0;
  }

  process(inputs) {
    const input = inputs[0];
    if (input && input.length > 0) {
      const mono = input[0];
      for (let i = 0; i < mono.length; i++) {
        const s = Math.max(-1, Math.min(1, mono[i]));
        this.frame[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
        if (this.filled === this.frameSamples) {
          this.port.postMessage(this.frame.buffer, [this.frame.buffer]);
          this.frame = new Int16Array(this.frameSamples);
          this.filled = 0;
        }
      }
    }
    return true;
  }
}

class PlaybackProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = options.processorOptions || {};
    this.prebufferSamples = Math.round(sampleRate * (opts.prebufferMs || 40) / 1000);
    this.reportEvery = Math.max(1, Math.round(sampleRate * (opts.reportMs || 20) / 1000 / 128));
    this.queue = [];          // Int16Array chunks
    this.offset = 0;          // read position inside queue[0]
    this.queued = 0;          // samples queued
    this.playing = false;
    this.lastArrival = 0;
    this.playedSamples = 0;   // samples actually played
    this.consumedSamples = 0; // played + dropped by clears: the position in the reply stream
    this.blocks = 0;
    this.port.onmessage = (event) => {
      const data = event.data;
      if (data instanceof ArrayBuffer) {
        const chunk = new Int16Array(data);
        this.queue.push(chunk);
        this.queued += chunk.length;
        this.lastArrival = currentTime;
      } else if (data && data.type === "clear") {
        this.consumedSamples += this.queued;
        this.queue = [];
        this.offset = 0;
        this.queued = 0;
        this.playing = false;
        this.report();
      }
    };
  }

  report() {
    this.port.postMessage({
      playedMs: this.playedSamples * 1000 / sampleRate,
      consumedMs: this.consumedSamples * 1000 / sampleRate,
      queuedMs: this.queued * 1000 / sampleRate,
      playing: this.playing,
    });
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    if (!this.playing && this.queued > 0 &&
        (this.queued >= this.prebufferSamples || currentTime - this.lastArrival > 0.1)) {
      this.playing = true;
    }
    let i = 0;
    if (this.playing) {
      while (i < out.length && this.queue.length > 0) {
        const chunk = this.queue[0];
        const n = Math.min(out.length - i, chunk.length - this.offset);
        for (let k = 0; k < n; k++) out[i + k] = chunk[this.offset + k] / 32768;
        i += n;
        this.offset += n;
        if (this.offset === chunk.length) {
          this.queue.shift();
          this.offset = 0;
        }
      }
      this.queued -= i;
      this.playedSamples += i;
      this.consumedSamples += i;
      if (this.queued === 0) this.playing = false; // underrun or end of reply: buffer again
    }
    for (; i < out.length; i++) out[i] = 0;
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    if (++this.blocks % this.reportEvery === 0) this.report();
    return true;
  }
}

registerProcessor("ve-capture", CaptureProcessor);
registerProcessor("ve-playback", PlaybackProcessor);
