"""A toy provider on the runtime: the walkthrough of docs/provider_interface.md, runnable.

Toy protocol (JSON text). Client: {"t": "hello"}, {"t": "audio", "b64"}, {"t": "say", "id",
"role", "text"}, {"t": "reply"}. Server: {"t": "ready", "session"}, {"t": "text", "id", "text"},
{"t": "done", "id"}. Reconnects, backlog, ledger, recycling and restore come from the runtime.
"""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any, Mapping

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from voiceengine.exceptions import ConnectionFailed
from voiceengine.providers.base import ProviderConfig
from voiceengine.providers.conversation import ConversationEntry, EntryKind
from voiceengine.providers.interfaces import CloseInfo, Frame, TransportClosed
from voiceengine.providers.runtime import ProviderRuntime, RuntimeSettings
from voiceengine.providers.types import AudioFormat, EventType, ProviderCapabilities, ProviderEvent, ResponseInfo


class ToyTransport:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, frame: Frame, /) -> None:
        try:
            await self.ws.send(frame)
        except ConnectionClosed:
            raise TransportClosed(self.close_info()) from None

    async def receive(self) -> Frame:
        try:
            return await self.ws.recv()
        except ConnectionClosed:
            raise TransportClosed(self.close_info()) from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.ws.close(code, reason)

    def abort(self) -> None:
        self.ws.transport.abort()

    def close_info(self) -> CloseInfo:
        return CloseInfo(code=self.ws.close_code or 1006, reason=self.ws.close_reason or "")


class ToySession:
    """The sans-I/O half: frames in -> events out, calls in -> frames out."""

    resumption_handle = None  # the toy service cannot resume sessions: restores replay
    resumed = expiring = ready = False
    session_id: str | None = None

    def __init__(self) -> None:
        self.replying: str | None = None  # id of the reply in progress
        self._out: list[Frame] = []
        self._ids = itertools.count(1)

    @property
    def idle(self) -> bool:
        return self.replying is None

    def start(self) -> None:  # a real service queues its configuration here
        self._out.append(json.dumps({"t": "hello"}))

    def data_to_send(self) -> list[Frame]:
        out, self._out = self._out, []
        return out

    def encode_audio(self, pcm: bytes | bytearray | memoryview, /) -> Frame | None:
        return json.dumps({"t": "audio", "b64": base64.b64encode(pcm).decode()})

    def say(self, text: str, role: str = "user", item_id: str | None = None) -> str:
        item_id = item_id or f"toy{next(self._ids)}"
        self._out.append(json.dumps({"t": "say", "id": item_id, "role": role, "text": text}))
        return item_id

    def reply(self) -> None:
        self.replying = "pending"
        self._out.append(json.dumps({"t": "reply"}))

    def replay_entry(self, entry: ConversationEntry, /) -> None:
        if entry.kind is not EntryKind.MESSAGE or entry.content_text is None:
            raise ValueError(f"the toy protocol cannot carry {entry.kind.value} {entry.id}")
        self.say(entry.content_text, entry.role, None if entry.synthetic_id else entry.id)

    def lost_responses(self) -> list[str | None]:
        return [] if self.replying is None else [self.replying]

    def receive(self, frame: Frame, /) -> list[ProviderEvent]:
        msg: Mapping[str, Any] = json.loads(frame)
        if msg.get("t") == "ready":
            self.ready, self.session_id = True, str(msg["session"])
            return [ProviderEvent(type=EventType.SESSION_CREATED, provider="toy", session_id=self.session_id)]
        if msg.get("t") == "text":
            self.replying = str(msg["id"])
            added = {"id": msg["id"], "type": "message", "role": "assistant", "content": []}
            return [ProviderEvent(type=EventType.ITEM_ADDED, data=added, item_id=msg["id"], provider="toy"),
                    ProviderEvent(type=EventType.TEXT_DONE, data=msg["text"], item_id=msg["id"], provider="toy")]
        if msg.get("t") == "done":
            self.replying = None
            info = ResponseInfo(response_id=str(msg["id"]), status="completed")
            return [ProviderEvent(type=EventType.RESPONSE_DONE, data=info, provider="toy")]
        return [ProviderEvent(type=EventType.UNKNOWN, data=msg.get("t"), raw=msg, provider="toy")]


class ToyProvider(ProviderRuntime[ToySession]):
    name = "toy"

    def __init__(self, url: str, **runtime_options: Any) -> None:
        config = ProviderConfig(turn_detection=None, max_reconnect_attempts=3, connect_timeout_s=5.0)
        super().__init__(config, RuntimeSettings(backlog_bytes=48_000), **runtime_options)
        self.url = url

    async def open_transport(self) -> ToyTransport:
        try:
            return ToyTransport(await connect(self.url, proxy=None))
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise ConnectionFailed(f"HTTP {status}", status_code=status, retryable=status >= 500,
                                   fatal=status < 500) from None
        except OSError as exc:
            raise ConnectionFailed(f"cannot connect: {type(exc).__name__}", retryable=True) from None

    def new_session(self, *, resume_handle: str | None) -> ToySession:
        return ToySession()

    async def send_text(self, text: str, *, role: str = "user", respond: bool = True) -> str:
        item_id = await self._control(lambda s: s.say(text, role))
        self.conversation.add_message(role, text, entry_id=item_id)
        if respond:
            await self.create_response()
        return item_id

    async def create_response(self, **options: Any) -> None:
        await self._control(lambda s: s.reply())

    def get_audio_format(self) -> tuple[AudioFormat, AudioFormat]:
        return AudioFormat(), AudioFormat()

    def get_capabilities(self) -> ProviderCapabilities:
        # every flag off: the verbs the toy service lacks (truncate, cancel, ...) raise
        # InvalidState through BaseProvider's defaults, never a silent no-op
        return ProviderCapabilities(name=self.name, input_format=AudioFormat(), output_format=AudioFormat())
