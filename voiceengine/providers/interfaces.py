"""What a provider implements to run on :class:`~voiceengine.providers.runtime.ProviderRuntime`.

Two small interfaces (docs/provider_interface.md walks through writing both):

* :class:`ProtocolSession`: the sans-I/O protocol state of ONE connection, in the style of
  websockets' ``protocol.py``. Frames in (:meth:`~ProtocolSession.receive`) -> normalized
  events out; requests -> frames queued for :meth:`~ProtocolSession.data_to_send`. No
  sockets, no asyncio, no clock. It says when the session is usable (``ready``), whether
  the service announced its end (``expiring``), whether a recycle would cut anything
  (``idle``), which replies die with the connection (``lost_responses``), and how it gets
  the conversation back: by a server-side resumption handle (``resumption_handle`` /
  ``resumed``) when the service offers one, else by replaying the neutral conversation
  entries (``replay_entry``), each encoded the provider's own way.
* :class:`Transport`: one open connection that moves frames (the only place a provider
  imports ``websockets``). Opening one is the provider's ``open_transport()``, which maps
  every handshake failure to :class:`~voiceengine.exceptions.ConnectionFailed`
  (``fatal``/``retryable`` set).

Everything else (tasks, the bounded outbound queue, connect and reconnect with backoff,
the audio backlog and its ledger, recycling, restore) is the runtime's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence, runtime_checkable

from .conversation import ConversationEntry
from .types import ProviderEvent

__all__ = [
    "CloseInfo",
    "RECONNECTABLE_CLOSE_CODES",
    "TransportClosed",
    "Transport",
    "BatchTransport",
    "PushTransport",
    "ProtocolSession",
    "Frame",
]

#: A wire frame: text (JSON services) or bytes (binary protocols).
Frame = str | bytes

#: Close codes after which a fresh connection may succeed (going away, no status,
#: abnormal, internal error, service restart, try again later, TLS failure).
RECONNECTABLE_CLOSE_CODES = frozenset({1001, 1005, 1006, 1011, 1012, 1013, 1015})


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseInfo:
    """How a connection ended: the close code (1006 when none) and reason; ``local`` when
    this side started the close (message too big, keepalive timeout, a planned recycle)."""

    code: int | None
    reason: str = ""
    local: bool = False

    @property
    def reconnectable(self) -> bool:
        return self.code in RECONNECTABLE_CLOSE_CODES


class TransportClosed(Exception):
    """Raised by :meth:`Transport.receive` / :meth:`Transport.send` once the connection is
    closed; ``info`` says how (never a secret)."""

    def __init__(self, info: CloseInfo) -> None:
        super().__init__(f"connection closed with code {info.code}")
        self.info = info


@runtime_checkable
class Transport(Protocol):
    """One open connection (handshake done). The runtime owns it and closes it."""

    async def send(self, frame: Frame, /) -> None:
        """Write one frame; raises :class:`TransportClosed` once closed."""
        ...

    async def receive(self) -> Frame:
        """The next frame; raises :class:`TransportClosed` once closed."""
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close, bounded in time even against a peer that never answers (abort after the
        provider's close timeout); never raises."""
        ...

    def abort(self) -> None:
        """Drop the connection at once (no closing handshake)."""
        ...

    def close_info(self) -> CloseInfo:
        """How the connection ended (1006 when the peer sent no close)."""
        ...


@runtime_checkable
class BatchTransport(Transport, Protocol):
    """A :class:`Transport` that can also write several frames at once without waiting:
    the runtime's fast path (one socket write for every frame ready at that moment)."""

    def send_nowait(self, frames: Sequence[Frame], /) -> bool:
        """Write all of ``frames``, in order, now (``True``), or none of them (``False``:
        the caller falls back to :meth:`~Transport.send`, which waits for flow control
        and raises :class:`TransportClosed` once closed)."""
        ...


@runtime_checkable
class PushTransport(Transport, Protocol):
    """A :class:`Transport` that can hand each message to a callback as it arrives (from
    its read callback): the runtime's inbound fast path, no reader wake-up per message."""

    def push_to(self, sink: Callable[[Frame], None], /) -> asyncio.Future[None] | None:
        """Call ``sink`` with every message, in order, until the returned future is done;
        then :meth:`~Transport.receive` returns the message that ended pushing, if any, or
        raises :class:`TransportClosed`. ``None``: nothing changed, :meth:`~Transport.receive`
        first (messages are waiting for it, or the connection is closing)."""
        ...

    def stop_push(self) -> None:
        """Stop pushing (idempotent); later messages wait for :meth:`~Transport.receive`."""
        ...


@runtime_checkable
class ProtocolSession(Protocol):
    """The sans-I/O protocol state of one connection (see the module docstring)."""

    @property
    def ready(self) -> bool:
        """The service set the session up: audio and requests may flow."""
        ...

    @property
    def session_id(self) -> str | None:
        """The service's id of this session, once known."""
        ...

    @property
    def expiring(self) -> bool:
        """The service announced the end of this session: its close is reconnectable even
        when it looks normal (OpenAI: ``session_expired`` then 1001; Gemini: ``goAway``)."""
        ...

    @property
    def idle(self) -> bool:
        """No reply requested, in progress or queued: a planned recycle cuts nothing."""
        ...

    @property
    def resumption_handle(self) -> str | None:
        """The latest handle the service gave to resume this session elsewhere (``None``:
        the service offers none, or gave none yet). The runtime hands it to the next
        session it creates after a loss."""
        ...

    @property
    def resumed(self) -> bool:
        """The service resumed the previous session from the handle (its conversation is
        intact): the runtime replays nothing."""
        ...

    def start(self) -> None:
        """Queue the set-up frames (configuration, and every runtime-applied update)."""
        ...

    def receive(self, frame: Frame, /) -> list[ProviderEvent]:
        """Decode one frame, update the state, return the events for the app. Never raises:
        a malformed frame is an ERROR event (``remote=True``)."""
        ...

    def data_to_send(self) -> Sequence[Frame]:
        """The frames queued since the last call, in order."""
        ...

    def encode_audio(self, pcm: bytes | bytearray | memoryview, /) -> Frame | None:
        """The frame carrying ``pcm`` (validated input audio, possibly a view of the app's
        buffer: encode it now, keep no reference), returned rather than queued so the
        runtime can account for the audio it carries; ``None`` for nothing to send."""
        ...

    def replay_entry(self, entry: ConversationEntry, /) -> None:
        """Queue what re-creates ``entry`` in this (fresh) session, in the provider's own
        encoding; raises ``ValueError``/``TypeError`` for an entry it cannot carry."""
        ...

    def lost_responses(self) -> Sequence[str | None]:
        """Replies that die with this connection (ids; ``None`` for one requested and not yet
        started): the runtime ends each with a synthetic RESPONSE_DONE ``failed``."""
        ...
