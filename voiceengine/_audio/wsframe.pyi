"""Stub for the compiled ``voiceengine._audio.wsframe`` module."""

from typing import Callable, Sequence

from typing_extensions import disjoint_base

@disjoint_base
class ClientFramer:
    """Frames client messages (text: str, binary: bytes) for one connection."""

    def __init__(self, urandom: Callable[[int], bytes] | None = None) -> None: ...
    def frame(self, messages: Sequence[str | bytes]) -> bytes: ...
