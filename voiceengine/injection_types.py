"""Context injection data types: what to inject, when, and how (:mod:`voiceengine.injection`).

:class:`InjectionTiming` says *when* an item goes in, :class:`InjectionMode` *how* it goes on
the wire:

============  ===================================================================
mode          wire action (through the provider API, never raw JSON)
============  ===================================================================
SILENT        ``add_item``: a ``user`` (or, trusted only, ``system``) message with
              ``input_text`` content; no response
RESPOND       ``add_item`` as SILENT, then ``create_response()`` (gated by the provider)
PER_RESPONSE  extra ``instructions`` on the next ``response.create`` sent through the
              injector (session instructions + context, appended, never replacing)
GLOBAL        ``update_session(instructions=session instructions + every GLOBAL context)``
OUT_OF_BAND   ``create_response(conversation="none", input=[message item], ...)``
============  ===================================================================

Trust: text that does not come from the application itself (retrieved documents, tool
output, anything a user could influence) is *untrusted*. It only ever travels inside a
conversation item of role ``user``. ``system`` items, PER_RESPONSE and GLOBAL splice text
into what the model treats as instructions, so they require ``trusted=True``; the
:class:`ContextItem` constructor refuses otherwise.

:mod:`voiceengine.injection` re-exports every public name here.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from .exceptions import ConfigurationError
from .providers.types import ProviderEvent

__all__ = [
    "InjectionTiming",
    "InjectionMode",
    "ContextItem",
    "InjectionContext",
    "InjectionRecord",
]


class InjectionTiming(str, enum.Enum):
    """When a context item goes in."""

    IMMEDIATE = "immediate"  # now, even while a response is active
    NEXT_TURN = "next_turn"  # after the user's next turn ends, before the reply
    NEXT_PAUSE = "next_pause"  # a silence window of ``pause_ms`` with no response active
    ON_TRIGGER = "on_trigger"  # when ``trigger(event)`` or ``keywords`` match, at the next safe point
    SCHEDULED = "scheduled"  # at ``at`` (epoch s) or after ``delay_s``, at the next safe point
    MANUAL = "manual"  # when the app calls :meth:`ContextInjector.trigger`, at the next safe point


class InjectionMode(str, enum.Enum):
    """How a context item goes on the wire (see the module docstring's table)."""

    SILENT = "silent"
    RESPOND = "respond"
    PER_RESPONSE = "per_response"
    GLOBAL = "global"
    OUT_OF_BAND = "out_of_band"


@dataclass(frozen=True, slots=True, kw_only=True)
class InjectionContext:
    """What a condition sees when the injector considers delivering an item."""

    now: float
    response_active: bool
    user_speaking: bool
    playing: bool
    turns: int
    last_user_transcript: str | None
    last_assistant_transcript: str | None
    event: ProviderEvent | None = None


Condition = Callable[[InjectionContext], bool]
Trigger = Callable[[ProviderEvent], bool]

_TRUSTED_ONLY = (InjectionMode.PER_RESPONSE, InjectionMode.GLOBAL)
_ROLES = ("user", "system")


@dataclass(frozen=True, slots=True, kw_only=True)
class ContextItem:
    """One piece of context to inject.

    ``content`` is the text. ``trusted`` must be ``True`` for PER_RESPONSE and GLOBAL
    modes and for ``role="system"``; untrusted text (the default) always travels as a
    ``user`` message item. ``priority``: higher goes first; ties keep insertion order.
    ``ttl_s``: dropped (CONTEXT_EXPIRED) if not injected within that many seconds of being
    added. ``max_injections``: how many times the item may be injected (NEXT_TURN,
    NEXT_PAUSE, ON_TRIGGER, SCHEDULED with ``delay_s`` and MANUAL re-arm after each
    injection until the count is reached). ``conditions``: every one must return true at
    delivery time, else the item waits. Timing parameters: ``pause_ms`` (NEXT_PAUSE),
    ``trigger``/``keywords`` (ON_TRIGGER; keywords match whole words, case-insensitive,
    in user and assistant transcripts and text), ``at`` (epoch seconds) or ``delay_s``
    (SCHEDULED). ``response_options``: extra ``response.create`` options for RESPOND and
    OUT_OF_BAND (e.g. ``output_modalities``, ``metadata``).
    """

    content: str
    timing: InjectionTiming = InjectionTiming.IMMEDIATE
    mode: InjectionMode = InjectionMode.SILENT
    priority: int = 0
    ttl_s: float | None = None
    max_injections: int = 1
    conditions: Sequence[Condition] = ()
    trusted: bool = False
    role: str | None = None
    pause_ms: int = 1000
    trigger: Trigger | None = None
    keywords: Sequence[str] = ()
    at: float | None = None
    delay_s: float | None = None
    response_options: Mapping[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: "ctx_" + uuid.uuid4().hex[:12])

    def __post_init__(self) -> None:
        if not isinstance(self.content, str) or not self.content:
            raise ConfigurationError("ContextItem.content must be a non-empty str")
        object.__setattr__(self, "timing", InjectionTiming(self.timing))
        object.__setattr__(self, "mode", InjectionMode(self.mode))
        if self.mode in _TRUSTED_ONLY and not self.trusted:
            raise ConfigurationError(
                f"{self.mode.name} splices text into the instructions: it takes trusted text only "
                "(pass trusted=True for text your application wrote; put untrusted text in a "
                "SILENT/RESPOND item, which travels as a user message)"
            )
        role = self.role if self.role is not None else ("system" if self.trusted else "user")
        if role not in _ROLES:
            raise ConfigurationError(f"role must be one of {_ROLES}, got {role!r}")
        if role == "system" and not self.trusted:
            raise ConfigurationError("a system-role item takes trusted text only (pass trusted=True)")
        object.__setattr__(self, "role", role)
        if self.ttl_s is not None and not self.ttl_s > 0:
            raise ConfigurationError("ttl_s must be > 0 or None")
        if not isinstance(self.max_injections, int) or self.max_injections < 1:
            raise ConfigurationError("max_injections must be an int >= 1")
        if self.timing is InjectionTiming.IMMEDIATE and self.max_injections != 1:
            raise ConfigurationError("an IMMEDIATE item is injected once (max_injections=1)")
        if self.pause_ms < 0:
            raise ConfigurationError("pause_ms must be >= 0")
        object.__setattr__(self, "conditions", tuple(self.conditions))
        for cond in self.conditions:
            if not callable(cond):
                raise TypeError("conditions must be callables taking an InjectionContext")
        keywords = tuple(k.strip().lower() for k in self.keywords if k and k.strip())
        object.__setattr__(self, "keywords", keywords)
        if self.timing is InjectionTiming.ON_TRIGGER and self.trigger is None and not keywords:
            raise ConfigurationError("ON_TRIGGER needs a trigger callable or keywords")
        if self.trigger is not None and not callable(self.trigger):
            raise TypeError("trigger must be a callable taking a ProviderEvent")
        if self.timing is InjectionTiming.SCHEDULED:
            if (self.at is None) == (self.delay_s is None):
                raise ConfigurationError("SCHEDULED needs exactly one of at= (epoch s) or delay_s=")
            if self.delay_s is not None and self.delay_s < 0:
                raise ConfigurationError("delay_s must be >= 0")
        object.__setattr__(self, "response_options", dict(self.response_options))

    def message_item(self) -> dict[str, Any]:
        """The wire-shaped conversation item carrying this content (role kept as given)."""
        return {
            "type": "message",
            "role": self.role,
            "content": [{"type": "input_text", "text": self.content}],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class InjectionRecord:
    """What one injection did: emitted as the ``data`` of a CONTEXT_INJECTED event.

    ``action`` is ``"item"``, ``"item+response"``, ``"response.instructions"``,
    ``"session.update"`` or ``"out_of_band"``; ``wire_item_id`` is the conversation item
    created (SILENT/RESPOND). The content itself is not repeated here.
    """

    context_id: str
    mode: InjectionMode
    timing: InjectionTiming
    action: str
    count: int
    wire_item_id: str | None = None
    priority: int = 0
    at: float = 0.0


class _Entry:
    """Mutable bookkeeping for one queued ContextItem."""

    __slots__ = ("item", "seq", "added_at", "due_at", "armed", "count", "activity_mark", "pending_turn")

    def __init__(self, item: ContextItem, seq: int, now: float, wall_now: float) -> None:
        self.item = item
        self.seq = seq
        self.added_at = now
        self.armed = item.timing is InjectionTiming.IMMEDIATE
        self.count = 0
        self.activity_mark = -1
        self.pending_turn = False
        self.due_at: float | None = None
        if item.timing is InjectionTiming.SCHEDULED:
            self.due_at = now + item.delay_s if item.delay_s is not None else now + (item.at or 0.0) - wall_now

    @property
    def expires_at(self) -> float | None:
        return None if self.item.ttl_s is None else self.added_at + self.item.ttl_s

    def sort_key(self) -> tuple[int, int]:
        return (-self.item.priority, self.seq)
