"""Bounded input-audio backlog kept while a connection is being restored.

Audio handed to ``send_audio`` while the provider has no usable session (reconnecting,
or between ``session.created`` and ``restored``), plus audio that was still in the
outbound queue when the connection was lost, waits here. It is bounded in bytes; when
full the OLDEST audio goes first (the newest speech matters most to the reply), and every
byte it lets go is returned to the caller so the provider's
:class:`~voiceengine.providers.base.AudioLedger` stays exact. No asyncio, no I/O. Owned by
:class:`~voiceengine.providers.runtime.ProviderRuntime`; provider-neutral (frames are opaque).
"""

from __future__ import annotations

import collections
from typing import Iterable

__all__ = ["AudioBacklog", "OutboundAudio"]


class OutboundAudio:
    """One encoded input-audio frame in the outbound queue, with what the ledger needs.

    ``text`` is the encoded frame (text or bytes); ``pcm`` the audio it carries (kept so that, if the
    connection is lost before it is written, the audio can go back to the backlog);
    ``replay`` says whether writing it counts as *replayed* (it came from the backlog)
    rather than *sent*.
    """

    __slots__ = ("text", "pcm", "replay", "nbytes")

    def __init__(self, text: str | bytes, pcm: bytes, *, replay: bool = False) -> None:
        self.text = text
        self.pcm = pcm
        self.replay = replay
        self.nbytes = len(pcm)  # read several times per frame: a slot, not a property


class AudioBacklog:
    """A FIFO of audio chunks holding at most ``capacity`` bytes (drop-oldest).

    ``align`` (bytes per sample frame) keeps partial trims on sample boundaries, so what
    remains is still valid PCM.
    """

    __slots__ = ("capacity", "align", "_chunks", "_nbytes")

    def __init__(self, capacity: int, *, align: int = 2) -> None:
        if capacity < 0 or align < 1:
            raise ValueError("capacity must be >= 0 and align >= 1")
        self.capacity = capacity - capacity % align
        self.align = align
        self._chunks: collections.deque[bytes] = collections.deque()
        self._nbytes = 0

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return self._nbytes

    def __len__(self) -> int:
        return len(self._chunks)

    def push(self, pcm: bytes) -> int:
        """Append ``pcm`` (newest); returns the bytes dropped to stay within capacity."""
        if pcm:
            self._chunks.append(bytes(pcm))
            self._nbytes += len(pcm)
        return self._trim()

    def push_front(self, chunks: Iterable[bytes]) -> int:
        """Put ``chunks`` (in order, older than everything held) at the front; returns
        the bytes dropped to stay within capacity (oldest first, so these go first)."""
        for pcm in reversed(list(chunks)):
            if pcm:
                self._chunks.appendleft(bytes(pcm))
                self._nbytes += len(pcm)
        return self._trim()

    def resize(self, capacity: int) -> int:
        """Hold at most ``capacity`` bytes from now on (a planned handover holds more for a
        while); returns the bytes dropped to fit, oldest first."""
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self.capacity = capacity - capacity % self.align
        return self._trim()

    def _trim(self) -> int:
        excess = self._nbytes - self.capacity
        if excess <= 0:
            return 0
        dropped = 0
        while excess > 0 and self._chunks:
            head = self._chunks[0]
            if len(head) <= excess:
                self._chunks.popleft()
                cut = len(head)
            else:
                cut = excess + (-excess) % self.align  # whole samples only
                cut = min(cut, len(head))
                if cut == len(head):
                    self._chunks.popleft()
                else:
                    self._chunks[0] = head[cut:]
            dropped += cut
            excess -= cut
            self._nbytes -= cut
        return dropped

    def drain(self, *, max_chunk: int) -> list[bytes]:
        """Take everything out, oldest first, merged into chunks of at most ``max_chunk``
        bytes (fewer, bigger messages on replay)."""
        out: list[bytes] = []
        current = bytearray()
        while self._chunks:
            pcm = self._chunks.popleft()
            view = memoryview(pcm)
            while view.nbytes:
                room = max_chunk - len(current)
                take = view[:room]
                current += take
                view = view[len(take):]
                if len(current) >= max_chunk:
                    out.append(bytes(current))
                    current = bytearray()
        if current:
            out.append(bytes(current))
        self._nbytes = 0
        return out

    def clear(self) -> int:
        """Discard everything; returns the bytes discarded."""
        n = self._nbytes
        self._chunks.clear()
        self._nbytes = 0
        return n
