"""Fault injection for :class:`~voiceengine.testing.FakeRealtimeServer` (sans-I/O matching).

A :class:`Fault` says *what* goes wrong (:class:`FaultKind`) and *when* (:class:`Trigger`).
Give faults to ``FakeServerConfig(faults=...)`` or to ``server.inject(fault)`` at any time.

Triggers (``count`` = N, ``event_type`` = X/Y, both optional):

============================  ===============================================================
``IMMEDIATE``                 now, on the newest live session (or ``session_index``); if no
                              session is live, right after the next ``session.created``
``ON_CONNECT``                at the opening handshake of the next connection(s)
``BEFORE_SESSION_CREATED``    after the handshake, before ``session.created`` is sent
``AFTER_SERVER_EVENTS``       after the N-th server event of type X (any type when X is None)
``ON_CLIENT_EVENT``           when the N-th client event of type Y arrives, before it is handled
``MID_RESPONSE``              after the N-th output delta (audio, text or arguments) of a response
``DURING_INTERRUPT``          when an interrupt starts: client ``response.cancel`` or
                              ``conversation.item.truncate`` while a response is active, or a
                              server-VAD barge-in (before the cancellation events go out)
============================  ===============================================================

Counting starts when the fault is armed; ``times`` says how often it fires (None = always;
for handshake faults: how many connections it hits). Handshake kinds (``REJECT_HANDSHAKE``,
``HANDSHAKE_TIMEOUT``) always act at the handshake, whatever the trigger.

Chaining: ``then`` holds faults armed the moment this one fires. That is how a handshake
fault reaches a *later* phase: ``Fault(kind=CLOSE, close_code=1006, trigger=MID_RESPONSE,
then=(Fault(kind=REJECT_HANDSHAKE, status_code=503),))`` drops the connection mid-response
and refuses the client's next handshake.
"""

from __future__ import annotations

import enum
import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["FaultKind", "Trigger", "Fault", "ArmedFault", "FaultBook", "HANDSHAKE_KINDS", "DELTA_TYPES"]


class FaultKind(enum.Enum):
    """What goes wrong."""

    CLOSE = "close"                      # close with ``close_code``; 1006 = abrupt TCP drop, no close frame
                                         # (the socket is closed: the peer normally sees a FIN)
    TCP_RESET = "tcp_reset"              # abort with SO_LINGER 0: the peer sees an RST (ECONNRESET),
                                         # no close frame, no FIN
    MALFORMED_JSON = "malformed_json"    # a text frame that is not JSON (``payload`` str overrides)
    UNKNOWN_EVENT = "unknown_event"      # a well-formed event of a type the API does not define
    MALFORMED_EVENT = "malformed_event"  # a known type with required fields missing (``payload`` overrides)
    BAD_BASE64_AUDIO = "bad_base64_audio"  # the next response.output_audio.delta carries invalid base64
    DUPLICATE_EVENT = "duplicate_event"  # the next server event (of ``target_type`` if set) is sent twice
    OUT_OF_ORDER = "out_of_order"        # the next two server events ready together are sent swapped
                                         # (one with nothing queued behind it goes out as is)
    STALL = "stall"                      # stop sending and handling for ``duration_s`` (None = for good);
                                         # the socket stays open and still answers pings; client
                                         # messages are held and handled in order when it ends
    HALF_OPEN = "half_open"              # stop reading and writing entirely (no pongs, no close frame)
    OVERSIZED_MESSAGE = "oversized_message"  # one message of ``size_bytes`` bytes
    REJECT_HANDSHAKE = "reject_handshake"    # HTTP ``status_code`` instead of 101
    HANDSHAKE_TIMEOUT = "handshake_timeout"  # accept TCP, never answer the upgrade
    SESSION_EXPIRED = "session_expired"  # error ``session_expired`` then close 1001
    RATE_LIMITS = "rate_limits"          # a rate_limits.updated event (``payload`` = list of limits)
    ERROR_EVENT = "error_event"          # an ``error`` (error_type/error_code/error_message);
                                         # then close with ``close_code`` when ``close_after``
    DELAY = "delay"                      # hold outgoing events for ``duration_s`` (keeps order;
                                         # client events are still handled, unlike STALL)


class Trigger(enum.Enum):
    """When a fault fires; see the module docstring."""

    IMMEDIATE = "immediate"
    ON_CONNECT = "on_connect"
    BEFORE_SESSION_CREATED = "before_session_created"
    AFTER_SERVER_EVENTS = "after_server_events"
    ON_CLIENT_EVENT = "on_client_event"
    MID_RESPONSE = "mid_response"
    DURING_INTERRUPT = "during_interrupt"


HANDSHAKE_KINDS = frozenset({FaultKind.REJECT_HANDSHAKE, FaultKind.HANDSHAKE_TIMEOUT})
#: Output deltas that count for ``MID_RESPONSE``.
DELTA_TYPES = frozenset({
    "response.output_audio.delta",
    "response.output_text.delta",
    "response.function_call_arguments.delta",
})
_UNSENDABLE_CLOSE_CODES = frozenset({1004, 1005, 1015})


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """One fault to inject. Only the fields its ``kind`` uses matter."""

    kind: FaultKind
    trigger: Trigger = Trigger.IMMEDIATE
    event_type: str | None = None        # the trigger's event type (X / Y in the table)
    target_type: str | None = None       # DUPLICATE_EVENT: which server event type to duplicate
    count: int = 1
    times: int | None = 1
    session_index: int | None = None
    close_code: int | None = 1011
    close_reason: str = ""
    status_code: int = 503
    size_bytes: int = 17 * 2**20
    duration_s: float | None = None
    error_code: str = "server_error"
    error_type: str = "server_error"
    error_message: str = "The server had an error while processing your request."
    close_after: bool = False           # ERROR_EVENT: close with close_code after the error
    payload: Any = None
    label: str = ""
    then: tuple["Fault", ...] = ()      # faults armed when this one fires (see the module docstring)

    def __post_init__(self) -> None:
        object.__setattr__(self, "then", tuple(self.then))
        if not all(isinstance(f, Fault) for f in self.then):
            raise TypeError("then must hold Fault objects")
        if not isinstance(self.kind, FaultKind):
            raise TypeError("kind must be a FaultKind")
        if not isinstance(self.trigger, Trigger):
            raise TypeError("trigger must be a Trigger")
        if self.count < 1:
            raise ValueError("count must be >= 1")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be >= 1 or None (always)")
        if self.close_code is not None:
            if not 1000 <= self.close_code <= 4999 or self.close_code in _UNSENDABLE_CLOSE_CODES:
                raise ValueError(f"close_code {self.close_code} cannot be produced")
        if self.kind is FaultKind.CLOSE and self.close_code is None:
            raise ValueError("CLOSE needs a close_code")
        if self.kind is FaultKind.REJECT_HANDSHAKE and not 400 <= self.status_code <= 599:
            raise ValueError("status_code must be a 4xx/5xx HTTP status")
        if self.size_bytes < 64:
            raise ValueError("size_bytes must be >= 64")
        if self.duration_s is not None and self.duration_s < 0:
            raise ValueError("duration_s must be >= 0")

    @property
    def is_handshake(self) -> bool:
        """True for faults that act on the HTTP upgrade."""
        return self.kind in HANDSHAKE_KINDS


_ids = itertools.count(1)


@dataclass(slots=True, kw_only=True)
class ArmedFault:
    """A fault waiting to fire; ``remaining`` is None for unlimited."""

    fault: Fault
    remaining: int | None
    id: int = field(default_factory=lambda: next(_ids))


class FaultBook:
    """Server-wide pending faults plus per-session counters. No I/O, no asyncio.

    Every ``match_*`` method returns the faults that fire now and consumes them.
    """

    def __init__(self, faults: tuple[Fault, ...] = (), *, max_fired: int = 10_000) -> None:
        if max_fired < 1:
            raise ValueError("max_fired must be >= 1")
        self._armed: list[ArmedFault] = []
        self._counters: dict[tuple[int, int], int] = {}
        #: the last ``max_fired`` faults that fired (session index, fault), oldest first
        self.fired: list[tuple[int | None, Fault]] = []
        #: ``time.monotonic()`` (the asyncio loop clock) at each entry of ``fired``
        self.fired_at: list[float] = []
        #: every fault that fired, including those no longer in ``fired``
        self.fired_total = 0
        self.max_fired = max_fired
        for f in faults:
            self.add(f)

    def add(self, fault: Fault) -> ArmedFault:
        """Arm ``fault``."""
        armed = ArmedFault(fault=fault, remaining=fault.times)
        self._armed.append(armed)
        return armed

    @property
    def pending(self) -> tuple[Fault, ...]:
        """Faults not yet exhausted."""
        return tuple(a.fault for a in self._armed)

    def clear(self) -> None:
        """Disarm everything."""
        self._armed.clear()
        self._counters.clear()

    def record_fired(self, session: int | None, fault: Fault) -> None:
        """Note that ``fault`` fired and arm its ``then`` follow-ups."""
        self.fired.append((session, fault))
        self.fired_at.append(time.monotonic())
        self.fired_total += 1
        if len(self.fired) > self.max_fired:  # a server left running for days keeps the recent ones
            del self.fired[0], self.fired_at[0]
        for follow_up in fault.then:
            self.add(follow_up)

    def _consume(self, armed: ArmedFault, session: int | None) -> Fault:
        if armed.remaining is not None:
            armed.remaining -= 1
            if armed.remaining <= 0:
                self._armed.remove(armed)
                self._counters = {k: v for k, v in self._counters.items() if k[0] != armed.id}
        self.record_fired(session, armed.fault)
        return armed.fault

    def _targets(self, session: int | None) -> list[ArmedFault]:
        return [
            a for a in self._armed
            if a.fault.session_index is None or session is None or a.fault.session_index == session
        ]

    def match_handshake(self, session: int) -> Fault | None:
        """The handshake fault for connection number ``session``, if any."""
        for a in self._targets(session):
            if a.fault.is_handshake:
                return self._consume(a, session)
        return None

    def match_simple(self, session: int, trigger: Trigger) -> list[Fault]:
        """Faults whose trigger has no counter (BEFORE_SESSION_CREATED, IMMEDIATE, ...)."""
        return [
            self._consume(a, session)
            for a in self._targets(session)
            if a.fault.trigger is trigger and not a.fault.is_handshake
        ]

    def _count(self, session: int, armed: ArmedFault) -> bool:
        key = (armed.id, session)
        n = self._counters.get(key, 0) + 1
        if n >= armed.fault.count:
            self._counters.pop(key, None)
            return True
        self._counters[key] = n
        return False

    def match_server_event(self, session: int, event: Mapping[str, Any], *,
                           delta_types: frozenset[str] = DELTA_TYPES) -> list[Fault]:
        """Faults that fire after ``event`` was sent. ``delta_types`` are the event types that
        count for ``MID_RESPONSE`` (a server of another protocol passes its own)."""
        etype = event.get("type")
        out: list[Fault] = []
        for a in self._targets(session):
            f = a.fault
            if f.is_handshake:
                continue
            if f.trigger is Trigger.AFTER_SERVER_EVENTS and f.event_type in (None, etype):
                if self._count(session, a):
                    out.append(self._consume(a, session))
            elif f.trigger is Trigger.MID_RESPONSE and etype in delta_types:
                if self._count(session, a):
                    out.append(self._consume(a, session))
        return out

    def reset_response_counters(self, session: int) -> None:
        """MID_RESPONSE counts deltas of one response: restart counting at each response."""
        mids = {a.id for a in self._armed if a.fault.trigger is Trigger.MID_RESPONSE}
        for key in [k for k in self._counters if k[0] in mids and k[1] == session]:
            del self._counters[key]

    def match_client_event(self, session: int, event_type: str) -> list[Fault]:
        """Faults that fire on an incoming client event, before it is handled."""
        out: list[Fault] = []
        for a in self._targets(session):
            f = a.fault
            if f.is_handshake or f.trigger is not Trigger.ON_CLIENT_EVENT:
                continue
            if f.event_type in (None, event_type) and self._count(session, a):
                out.append(self._consume(a, session))
        return out
