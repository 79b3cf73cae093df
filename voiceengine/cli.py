"""The ``voiceengine`` command: ``demo``, ``talk``, ``run``, ``fake-server``, ``serve``.

Errors a user can cause (no key, a bad file, PortAudio missing, a server that cannot be
reached) print one line to stderr and exit non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import struct
import sys
import time
import wave
from typing import Any, Sequence

from .engine import VoiceEngine, VoiceEngineConfig
from .exceptions import ConfigurationError, VoiceEngineError
from .providers.types import EventType, InterruptResult, ProviderEvent
from .testing.config import FakeServerConfig

__all__ = ["main", "build_parser"]

log = logging.getLogger("voiceengine.cli")

EXIT_USAGE = 2
EXIT_ERROR = 1


class UserError(Exception):
    """Something the user can fix; printed as one line."""


# --------------------------------------------------------------------- helpers
def synth_utterance(sample_rate: int = 48000, *, seconds: float = 1.2, seed: int = 1) -> bytes:
    """A voiced-like test utterance (harmonics + syllable envelope), PCM16 mono."""
    n = int(sample_rate * seconds)
    f0 = 120.0 + 15.0 * seed
    out = bytearray()
    for i in range(n):
        t = i / sample_rate
        env = 0.5 - 0.5 * math.cos(2 * math.pi * 4.0 * t)  # ~4 syllables per second
        s = sum(math.sin(2 * math.pi * f0 * k * t) / k for k in (1, 2, 3)) * 0.3 * env
        out += struct.pack("<h", int(max(-1.0, min(1.0, s)) * 32767))
    return bytes(out)


DEMO_REPLIES = (
    "Hello! I am the voiceengine demo assistant, talking to you through a fake server on this machine.",
    "This second answer is long on purpose, so that you can interrupt me while I am still talking about "
    "resampling, ring buffers and the many other things a voice engine has to get right.",
    "Sure, I stopped talking. What would you like to know?",
)


class EventLog:
    """Prints a compact live log of the interesting events (audio deltas are summarized)."""

    QUIET = {EventType.AUDIO_DELTA, EventType.TRANSCRIPT_DELTA, EventType.TEXT_DELTA, EventType.CONTENT_PART_ADDED,
             EventType.CONTENT_PART_DONE, EventType.OUTPUT_ITEM_ADDED, EventType.OUTPUT_ITEM_DONE,
             EventType.RATE_LIMITS, EventType.INPUT_TRANSCRIPT_DELTA, EventType.FUNCTION_CALL_ARGUMENTS_DELTA,
             EventType.ITEM_DONE, EventType.AUDIO_DONE}

    def __init__(self, stream: Any = None) -> None:
        self.t0 = time.perf_counter()
        self.stream = stream or sys.stdout
        self.deltas = 0

    def __call__(self, event: ProviderEvent) -> None:
        if event.type is EventType.AUDIO_DELTA:
            self.deltas += 1
            return
        if event.type in self.QUIET:
            return
        detail = ""
        data = event.data
        if isinstance(data, str):
            detail = repr(data if len(data) < 70 else data[:67] + "...")
        elif isinstance(data, InterruptResult):
            detail = f"{data.action} item at {data.audio_end_ms} ms (played {data.played_ms} ms)"
        elif event.type is EventType.METRICS:
            rx, pl = data.first_audio_received_ms, data.first_audio_played_ms
            detail = f"turn {data.index}: first audio received {_ms(rx)}, played {_ms(pl)}"
        elif event.type is EventType.ERROR and event.error is not None:
            detail = f"{event.error.code}: {event.error.message}"
        elif event.type is EventType.CONNECTION_STATE and data is not None:
            detail = f"{getattr(data, 'phase', '')} {getattr(data, 'reason', '')}".strip()
        elif event.type is EventType.RESPONSE_DONE and data is not None:
            detail = f"status={getattr(data, 'status', '?')}"
        elif isinstance(data, dict) and data:
            keys = [k for k in ("role", "id", "speaker", "audio_start_ms", "audio_end_ms", "interrupted", "from", "to",
                                "items", "source") if k in data] or list(data)[:3]
            detail = " ".join(f"{k}={_short(data[k])}" for k in keys)
        print(f"{(time.perf_counter() - self.t0) * 1000:8.0f} ms  {event.type.value:<26} {detail}",
              file=self.stream, flush=True)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 32 else text[:29] + "..."


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f} ms"


def latency_table(engine: VoiceEngine, stream: Any = None) -> None:
    """Print the per-turn latency table and the engine counters.

    The "truncated at" column shows only for a provider that cuts the interrupted reply
    at what was heard (OpenAI Realtime); OpenAI Live and Gemini Live stop by themselves.
    """
    stream = stream or sys.stdout
    m = engine.metrics
    truncation = engine.provider.get_capabilities().truncation
    print("\nturn  status       first audio rx  first audio played  audio played  interrupt"
          + ("  truncated at" if truncation else ""), file=stream)
    for t in engine._metrics.turns:
        print(f"{t.index:>4}  {t.status:<11}  {_ms(t.first_audio_received_ms):>14}  {_ms(t.first_audio_played_ms):>18}"
              f"  {t.audio_played_ms:>9.0f} ms  {_ms(t.interrupt_latency_ms):>9}"
              + (f"  {_ms(t.truncated_at_ms):>12}" if truncation else ""), file=stream)
    print(f"\nsent {m.frames_sent} frames ({m.bytes_sent} B), received {m.deltas_received} deltas "
          f"({m.bytes_received} B), played {m.bytes_played} B; underruns {m.playback_underruns}, "
          f"overruns {m.playback_overruns}; resampler delay in {m.input_resampler_delay_ms:.2f} ms / "
          f"out {m.output_resampler_delay_ms:.2f} ms; reconnects {m.reconnects}", file=stream)


async def _wait_event(engine: VoiceEngine, etype: EventType, timeout: float, predicate: Any = None) -> ProviderEvent:
    fut: asyncio.Future[ProviderEvent] = asyncio.get_running_loop().create_future()

    def handler(event: ProviderEvent) -> None:
        if not fut.done() and (predicate is None or predicate(event)):
            fut.set_result(event)

    sub = engine.events.subscribe(handler, types=etype)
    try:
        return await asyncio.wait_for(fut, timeout)
    except asyncio.TimeoutError:
        raise UserError(f"timed out after {timeout:.0f} s waiting for {etype.value}") from None
    finally:
        sub.unsubscribe()


async def _wait_listening(engine: VoiceEngine, etype: EventType, timeout: float, predicate: Any = None, *,
                          open_mic: bool, rate: int, pace: float) -> ProviderEvent:
    """:func:`_wait_event`; with ``open_mic`` silence streams meanwhile, as from a microphone:
    a service that owns turn-taking (OpenAI Live) hears a turn or a reply end only as its
    input audio timeline moves on."""
    if not open_mic:
        return await _wait_event(engine, etype, timeout, predicate)

    async def microphone() -> None:
        frame = bytes(rate * 2 * 20 // 1000)
        while True:
            await engine.send_audio(frame, sample_rate=rate)
            await asyncio.sleep(0.02 / pace)

    mic = asyncio.ensure_future(microphone())
    try:
        return await _wait_event(engine, etype, timeout, predicate)
    finally:
        mic.cancel()
        await asyncio.gather(mic, return_exceptions=True)


async def _stream(engine: VoiceEngine, pcm: bytes, rate: int, *, frame_ms: int = 20, pace: float = 0.0) -> None:
    step = rate * 2 * frame_ms // 1000
    view = memoryview(pcm)
    for off in range(0, len(pcm), step):
        await engine.send_audio(view[off:off + step], sample_rate=rate)
        if pace:
            await asyncio.sleep(frame_ms / 1000.0 / pace)


# ------------------------------------------------------------------------ demo
#: the environment variable holding each provider's key for ``demo --live``
LIVE_KEYS = {"openai": "OPENAI_API_KEY", "openai-live": "OPENAI_API_KEY", "gemini": "GEMINI_API_KEY"}
_SERVER_NAMES = {"openai": "Realtime", "openai-live": "OpenAI Live", "gemini": "Gemini Live"}


def _demo_server(provider: str, server_speed: float) -> Any:
    """The fake server of ``provider``, speaking :data:`DEMO_REPLIES` (not started)."""
    if provider == "gemini":
        from .testing.gemini import FakeGeminiConfig, FakeGeminiLiveServer

        return FakeGeminiLiveServer(FakeGeminiConfig(speed=server_speed, responses=DEMO_REPLIES))
    if provider == "openai-live":
        from .testing.openai_live import FakeOpenAILiveConfig, FakeOpenAILiveServer

        return FakeOpenAILiveServer(FakeOpenAILiveConfig(speed=server_speed, replies=DEMO_REPLIES))
    from .testing import FakeRealtimeServer

    return FakeRealtimeServer(FakeServerConfig(speed=server_speed, responses=DEMO_REPLIES))


async def run_demo(args: argparse.Namespace, out: Any = None) -> int:
    """Two spoken turns against a fake server of ``--provider`` (or the real service with
    ``--live``): the second reply is interrupted by the user, then the latency table."""
    from .audio.wav import WavSink

    out = out or sys.stdout
    provider: str = getattr(args, "provider", "openai")
    rate = 48000
    server = None
    if args.live:
        key = os.environ.get(LIVE_KEYS[provider])
        if not key:
            raise UserError(f"--live needs {LIVE_KEYS[provider]} in the environment")
        fields: dict[str, Any] = {"api_key": key}
    else:
        server = _demo_server(provider, args.server_speed)
        await server.__aenter__()
        fields = {"api_key": "demo-key-not-secret", "url": server.url}
        print(f"fake {_SERVER_NAMES[provider]} server on {server.url} (no key, no network)", file=out)
    try:
        sink = WavSink(args.output, sample_rate=args.rate, channels=1)
        cfg = VoiceEngineConfig(playback_speed=args.speed, output_sample_rate=args.rate, prebuffer_ms=60, **fields)
        try:
            async with VoiceEngine(provider, cfg, sink=sink) as engine:
                engine.events.subscribe(EventLog(out))
                pace = args.speed or 1.0
                # no manual commit: the service ends turns from the audio alone (OpenAI Live)
                open_mic = not engine.provider.get_capabilities().manual_commit

                async def wait(etype: EventType, predicate: Any = None) -> ProviderEvent:
                    return await _wait_listening(engine, etype, args.timeout, predicate, open_mic=open_mic,
                                                 rate=rate, pace=pace)

                user = synth_utterance(rate, seed=1) + bytes(rate * 2 * 900 // 1000)
                print(f"-> user utterance 1 ({len(user) // (rate * 2 // 1000)} ms at {rate} Hz)", file=out)
                await _stream(engine, user, rate)
                await wait(EventType.METRICS)
                print("-> user utterance 2 (will barge in during the reply)", file=out)
                await _stream(engine, user, rate)
                await wait(EventType.PLAYBACK_STARTED)
                await asyncio.sleep(args.barge_in_after)
                print("-> user speaks over the assistant", file=out)
                interrupted = asyncio.ensure_future(_wait_event(engine, EventType.INTERRUPTED, args.timeout))
                # paced like a microphone (on the virtual clock): sent at once, the server's
                # speech_started and its next response.created arrive together, and an engine
                # that reads them in one batch under load cancels the new response instead
                await _stream(engine, synth_utterance(rate, seed=2) + bytes(rate * 2 * 900 // 1000), rate,
                              pace=pace)
                await interrupted
                await wait(EventType.METRICS, lambda e: not e.data.interrupted)
                latency_table(engine, out)
        finally:
            await _maybe_close(sink)
        print(f"\nreply audio written to {args.output}", file=out)
        errors = getattr(server, "errors", None)  # the Gemini fake answers errors on the wire only
        if errors:
            raise UserError(f"the server reported {len(errors)} error(s): {errors[0]}")
        return 0
    finally:
        if server is not None:
            await server.__aexit__(None, None, None)


async def _maybe_close(obj: Any) -> None:
    closer = getattr(obj, "aclose", None) or getattr(obj, "close", None)
    if callable(closer):
        result = closer()
        if asyncio.iscoroutine(result):
            await result


def _provider_for(args: argparse.Namespace) -> tuple[str, VoiceEngineConfig]:
    fields: dict[str, Any] = {}
    if args.provider == "openai":
        key = os.environ.get("OPENAI_API_KEY")
        if not key and not args.url:
            raise UserError("OPENAI_API_KEY is not set (or use --provider mock, or --url for a fake server)")
        fields["api_key"] = key or "local-test-key"
        if args.url:
            fields["url"] = args.url
    return args.provider, VoiceEngineConfig(
        instructions=getattr(args, "instructions", None), voice=getattr(args, "voice", None),
        playback_speed=getattr(args, "speed", 1.0), **fields)


# ------------------------------------------------------------------------- run
async def run_file(args: argparse.Namespace, out: Any = None) -> int:
    from .audio.wav import WavSink, WavSource

    out = out or sys.stdout
    if not os.path.isfile(args.input):
        raise UserError(f"input file not found: {args.input}")
    try:
        source = WavSource(args.input, realtime=False)
    except (wave.Error, EOFError, ValueError) as exc:
        raise UserError(f"cannot read {args.input} as a PCM16 WAV file: {exc}") from None
    name, cfg = _provider_for(args)
    try:
        sink = WavSink(args.output, sample_rate=args.rate, channels=1)
    except OSError as exc:
        raise UserError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    try:
        engine = VoiceEngine(name, cfg, sink=sink)
        async with engine:
            engine.events.subscribe(EventLog(out))
            done = asyncio.ensure_future(_wait_event(engine, EventType.METRICS, args.timeout))
            await engine.start_listening(source)
            await engine.wait_listening()
            await done
    finally:
        await _maybe_close(sink)
    print(f"reply audio written to {args.output}", file=out)
    return 0


# ------------------------------------------------------------------------ talk
async def run_talk(args: argparse.Namespace, out: Any = None) -> int:
    from .audio import rms_dbfs
    from .audio.devices import Microphone, Speaker

    out = out or sys.stdout
    name, cfg = _provider_for(args)
    status: dict[str, Any] = {"who": "listening", "level": -math.inf}

    class Metered:
        """Wraps the microphone to feed the level meter (no copy of the audio)."""

        def __init__(self, mic: Any) -> None:
            self.mic = mic
            self.sample_rate = getattr(mic, "sample_rate", None)
            self.channels = getattr(mic, "channels", None)

        async def __aiter__(self) -> Any:
            async with self.mic:
                async for buf in self.mic:
                    status["level"] = rms_dbfs(buf)
                    yield buf

    speaker = Speaker()
    speaker.start()  # raises AudioDeviceError (one line) when PortAudio or a device is missing
    async with VoiceEngine(name, cfg, sink=speaker) as engine:
        engine.events.on(EventType.PLAYBACK_STARTED, lambda e: status.update(who="assistant"))
        engine.events.on(EventType.PLAYBACK_STOPPED, lambda e: status.update(who="listening"))
        engine.events.on(EventType.SPEECH_STARTED, lambda e: status.update(who="user"))
        engine.on_transcript = lambda t: t.final and print(f"\r{t.role:>9}: {t.text}\033[K", file=out)
        await engine.start_listening(Metered(Microphone()))
        print("talking (Ctrl-C to stop)", file=out)
        try:
            while True:
                level = status["level"]
                bars = 0 if level == -math.inf else max(0, min(30, int((level + 60) / 2)))
                print(f"\r[{'#' * bars:<30}] {status['who']:<10}\033[K", end="", file=out, flush=True)
                await asyncio.sleep(0.1)
        except (KeyboardInterrupt, asyncio.CancelledError):
            pass
    return 0


# ----------------------------------------------------------------- fake-server
def fake_server_config(args: argparse.Namespace) -> FakeServerConfig:
    """The long-running server's settings: nothing of a closed session is kept unless
    ``--keep-sessions N`` asks for the last N; live sessions record no audio payloads."""
    return FakeServerConfig(speed=args.server_speed, keep_closed_sessions=args.keep_sessions,
                            record_audio_payloads=False)


async def run_fake_server(args: argparse.Namespace, out: Any = None) -> int:
    out = out or sys.stdout
    provider = getattr(args, "provider", "openai")

    def ready(server: Any) -> None:
        print(f"fake {_SERVER_NAMES[provider]} server listening on {server.url} (Ctrl-C to stop)", file=out,
              flush=True)

    try:
        if provider == "gemini":
            from .testing.gemini import FakeGeminiConfig, serve_gemini_async

            await serve_gemini_async(args.port, args.host, config=FakeGeminiConfig(speed=args.server_speed),
                                     ready=ready)
        elif provider == "openai-live":
            from .testing.openai_live import FakeOpenAILiveConfig, serve_openai_live_async

            # like the Realtime fake's long-running mode: no audio payloads kept
            live_config = FakeOpenAILiveConfig(speed=args.server_speed, record_audio_payloads=False)
            await serve_openai_live_async(args.port, args.host, config=live_config, ready=ready)
        else:
            from .testing.server import serve_async

            await serve_async(args.port, args.host, config=fake_server_config(args), ready=ready)
    except OSError as exc:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    return 0


# ----------------------------------------------------------------------- serve
def run_serve(args: argparse.Namespace, out: Any = None) -> int:
    """Phone calls, the browser console and /metrics on one port (see docs/deploy.md)."""
    from .transports.command import ServeCommand, run

    command = ServeCommand(provider=args.provider, url=args.url, instructions=args.instructions, voice=args.voice,
                           host=args.host, port=args.port, workers=args.workers,
                           drain_timeout_s=args.drain_timeout, metrics=not args.no_metrics)
    return run(command, out or sys.stdout)


# ------------------------------------------------------------------- argparse
def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voiceengine", description="Realtime voice conversations.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="no key/network/hardware: a fake server + the real provider")
    demo.add_argument("--provider", choices=tuple(LIVE_KEYS), default="openai",
                      help="openai (Realtime), openai-live or gemini (default openai)")
    demo.add_argument("--output", "-o", default="reply.wav", help="reply WAV path (default reply.wav)")
    demo.add_argument("--rate", type=int, default=24000, help="reply WAV sample rate")
    demo.add_argument("--live", action="store_true",
                      help="use the real API (needs OPENAI_API_KEY, or GEMINI_API_KEY for gemini)")
    demo.add_argument("--speed", type=float, default=4.0, help="virtual playback clock (x real time)")
    demo.add_argument("--server-speed", type=float, default=20.0, help="fake server audio pacing (x real time)")
    demo.add_argument("--barge-in-after", type=float, default=0.15, help="seconds of reply before barging in")
    demo.add_argument("--timeout", type=float, default=20.0)

    def provider_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument("--provider", choices=("openai", "mock"), default="openai")
        p.add_argument("--url", default=None, help="Realtime endpoint (e.g. a fake server's ws:// URL)")
        p.add_argument("--voice", default=None)
        p.add_argument("--instructions", default=None)
        p.add_argument("--timeout", type=float, default=60.0)

    talk = sub.add_parser("talk", help="microphone and speaker conversation")
    provider_opts(talk)
    run = sub.add_parser("run", help="file to file: --input question.wav --output answer.wav")
    run.add_argument("--input", "-i", required=True)
    run.add_argument("--output", "-o", required=True)
    run.add_argument("--rate", type=int, default=24000, help="output WAV sample rate")
    run.add_argument("--speed", type=float, default=None, help="virtual playback clock; default unpaced")
    provider_opts(run)
    fake = sub.add_parser("fake-server", help="serve a fake provider server (OpenAI Realtime, OpenAI Live or "
                                              "Gemini Live)")
    fake.add_argument("--provider", choices=tuple(LIVE_KEYS), default="openai")
    fake.add_argument("--port", type=int, default=8765)
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--server-speed", type=float, default=10.0)
    fake.add_argument("--keep-sessions", type=_non_negative_int, default=0, metavar="N",
                      help="keep the records of the last N closed sessions in memory (default 0)")
    srv = sub.add_parser("serve", help="serve phone calls (/twilio), the browser console (/) and /metrics")
    srv.add_argument("--port", type=int, default=8080)
    srv.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    srv.add_argument("--provider", default="openai", help="openai, gemini or mock (key from the environment)")
    srv.add_argument("--url", default=None, help="provider endpoint (e.g. a fake server's ws:// URL)")
    srv.add_argument("--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    srv.add_argument("--drain-timeout", type=float, default=30.0, help="seconds running calls get after SIGTERM")
    srv.add_argument("--voice", default=None)
    srv.add_argument("--instructions", default=None)
    srv.add_argument("--no-metrics", action="store_true", help="no /metrics (no prometheus_client needed)")
    return parser


_COMMANDS = {"demo": run_demo, "talk": run_talk, "run": run_file, "fake-server": run_fake_server}


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, UserError):
        return str(exc)
    if isinstance(exc, ImportError | OSError) and "PortAudio" in str(exc):
        return "audio devices unavailable: PortAudio is not installed (pip install 'voiceengine[audio]')"
    if isinstance(exc, ConnectionRefusedError) or (isinstance(exc, OSError) and exc.errno in (111, 61, 10061)):
        return f"cannot reach the server: {exc.strerror or exc}"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``voiceengine`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        if args.command == "serve":  # owns its event loop(s) and processes
            return run_serve(args)
        return asyncio.run(_COMMANDS[args.command](args))
    except KeyboardInterrupt:
        return 130
    except (UserError, VoiceEngineError, OSError, ImportError, wave.Error, EOFError, ValueError) as exc:
        if args.debug:
            raise
        print(f"voiceengine {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
