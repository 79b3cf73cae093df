"""The engine's input audio through the provider's synchronous sink (``audio_sink``): a frame
per call reaches the socket before ``send_audio`` returns, the frames of one call share a
socket write, errors count what was not sent, and a provider that extends ``send_audio``
is still awaited."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from typing import Any, AsyncIterator

import pytest

from enginekit import fast_config, make_provider, voiced
from voiceengine.engine import VoiceEngine
from voiceengine.exceptions import LimitExceeded
from voiceengine.providers import runtime as runtime_module
from voiceengine.providers.openai import OpenAIProvider

FRAME_BYTES = 960  # 20 ms at 24 kHz


def _count_socket_writes(provider: Any) -> list[int]:
    """Sizes of the provider's socket writes from now on."""
    socket_transport = provider._transport.connection.transport
    writes: list[int] = []
    real_write = socket_transport.write

    def counting_write(data: Any) -> None:
        writes.append(len(data))
        real_write(data)

    socket_transport.write = counting_write
    return writes


async def _appended_audio(server: Any, nbytes: int) -> list[bytes]:
    """The audio of each ``input_audio_buffer.append`` the server got, once it has ``nbytes``."""
    async with asyncio.timeout(5):
        while server.sessions[0].input_audio_bytes < nbytes:
            await asyncio.sleep(0.005)
    return [base64.b64decode(event["audio"]) for event in server.sessions[0].received
            if event["type"] == "input_audio_buffer.append"]


@contextlib.asynccontextmanager
async def _engine_counting_writes() -> AsyncIterator[tuple[VoiceEngine, Any, list[int]]]:
    """An engine on the fake server (audio payloads recorded), settled, and the sizes of
    its provider's socket writes from then on."""
    async with make_provider("openai", turn_detection=None, server_config={"record_audio_payloads": True}
                             ) as (provider, server):
        async with VoiceEngine(provider, fast_config(input_sample_rate=24000)) as engine:
            await asyncio.sleep(0.002)
            yield engine, server, _count_socket_writes(provider)


async def test_a_frame_per_call_is_written_before_send_audio_returns() -> None:
    async with make_provider("openai", turn_detection=None) as (provider, server):
        async with VoiceEngine(provider, fast_config(input_sample_rate=24000)) as engine:
            assert provider.audio_sink() is not None
            writes = _count_socket_writes(provider)
            for n in range(1, 4):
                await asyncio.sleep(0.002)  # live frames come apart (20 ms in real time)
                assert await engine.send_audio(voiced(24000, 20)) == 1
                assert len(writes) == n  # on the socket already: no wait for the next iteration
            assert engine.metrics.bytes_sent == 3 * FRAME_BYTES
            assert len(await _appended_audio(server, 3 * FRAME_BYTES)) == 3


async def test_the_frames_of_one_call_share_one_socket_write_in_order() -> None:
    audio = voiced(24000, 100)
    async with _engine_counting_writes() as (engine, server, writes):
        assert await engine.send_audio(audio) == 5
        assert len(writes) == 1  # five append events, one write
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert len(writes) == 1  # and the write scheduled by the first frames found nothing left
        appended = await _appended_audio(server, len(audio))
        assert [len(chunk) for chunk in appended] == [FRAME_BYTES] * 5
        assert b"".join(appended) == audio


async def test_calls_back_to_back_share_a_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """An app pushing a file as fast as it can: ten calls in one step, two socket writes."""
    audio = voiced(24000, 200)
    async with _engine_counting_writes() as (engine, server, writes):
        loop = asyncio.get_running_loop()
        frozen = loop.time()
        with monkeypatch.context() as patch:  # no gap between the calls, however loaded the machine
            patch.setattr(loop, "time", lambda: frozen)
            patch.setattr(runtime_module, "_burst_clock", lambda: frozen)  # the writer's burst clock
            for offset in range(0, len(audio), FRAME_BYTES):
                assert await engine.send_audio(audio[offset:offset + FRAME_BYTES]) == 1
        assert len(writes) == 1  # the first at once
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert len(writes) == 2  # the other nine together, in the next iteration
        assert b"".join(await _appended_audio(server, len(audio))) == audio


async def test_a_frame_the_provider_refuses_counts_it_and_the_rest_as_unsent() -> None:
    async with make_provider("openai", turn_detection=None) as (provider, _server):
        real_sink = provider.send_audio_nowait
        taken: list[bool] = []

        def refusing_third(audio: Any, more: bool = False) -> None:
            if len(taken) == 2:
                raise LimitExceeded("outbound queue full", limit=2)
            taken.append(more)
            real_sink(audio, more)

        provider.send_audio_nowait = refusing_third  # what audio_sink() hands out (asked once, by the engine)
        async with VoiceEngine(provider, fast_config(input_sample_rate=24000)) as engine:
            with pytest.raises(LimitExceeded):
                await engine.send_audio(voiced(24000, 100))
            assert taken == [True, True]  # more frames followed each
            assert engine.metrics.bytes_sent == 2 * FRAME_BYTES
            assert engine.metrics.audio_unsent_bytes == 3 * FRAME_BYTES


class _ExtendingProvider(OpenAIProvider):
    """Does its own work after each enqueue (as OpenAI Live's timeline does)."""

    seen = 0

    async def send_audio(self, audio: Any) -> None:
        await super().send_audio(audio)
        self.seen += len(audio)


async def test_a_provider_that_extends_send_audio_is_awaited_not_bypassed() -> None:
    async with make_provider("openai", turn_detection=None) as (plain, server):
        provider = _ExtendingProvider(plain.config)
        assert provider.audio_sink() is None
        async with VoiceEngine(provider, fast_config(input_sample_rate=24000)) as engine:
            assert await engine.send_audio(voiced(24000, 60)) == 3
            assert provider.seen == 3 * FRAME_BYTES
            await _appended_audio(server, 3 * FRAME_BYTES)
