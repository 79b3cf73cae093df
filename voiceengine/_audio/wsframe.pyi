"""Stub for the compiled ``voiceengine._audio.wsframe`` module."""

from typing import Callable, Protocol, Sequence

from typing_extensions import disjoint_base

@disjoint_base
class ClientFramer:
    """Frames client messages (text: str, binary: bytes) for one connection."""

    def __init__(self, urandom: Callable[[int], bytes] | None = None) -> None: ...
    def frame(self, messages: Sequence[str | bytes]) -> bytes: ...


class _PushingConnection(Protocol):
    @property
    def sink(self) -> Callable[[str | bytes], object] | None: ...

def push_messages(data: bytes | bytearray | memoryview, pos: int, max_size: int,
                  connection: _PushingConnection, end: int = -1) -> int:
    """Hands the plain messages of ``data[pos:end]`` to ``connection.sink``; returns where it stopped."""
