"""Stub for the compiled ``voiceengine._audio.chunker`` module."""

from typing import Self

from typing_extensions import disjoint_base

from _typeshed import ReadableBuffer as Buffer

MAX_FRAME_BYTES: int

@disjoint_base
class Chunker:
    """Cut a PCM16 stream into fixed-size read-only frame views."""

    def __init__(self, frame_bytes: int) -> None: ...
    @classmethod
    def from_ms(cls, frame_ms: float, sample_rate: int, channels: int = 1) -> Self: ...
    @property
    def frame_bytes(self) -> int: ...
    @property
    def pending(self) -> int: ...
    def push(self, buf: Buffer, *, borrow: bool = False) -> list[memoryview]: ...
    def flush(self, pad: bool = True) -> memoryview | None: ...
    def reset(self) -> None: ...

DEBUG_BUILD: bool
