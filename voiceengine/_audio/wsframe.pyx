# cython: language_level=3, auto_pickle=False, autotestdict=False
"""Client WebSocket framing (RFC 6455 5.2, 5.3) of whole messages into one buffer, and
the delimiting of the server's plain messages on the way in.

The transport's outbound fast path writes the messages that are ready at one moment with
one socket write, each as a FIN (unfragmented) frame masked with a fresh key. Done in
Python that is, per message, a UTF-8 copy of the text, a header object, a masked copy
and a join (a copy of everything), plus an ``os.urandom`` system call per write for the
keys. :class:`ClientFramer` writes headers, keys and masked payloads straight into the
one ``bytes`` it returns, reading a text message from the str's own UTF-8 (an ASCII
str's storage), and draws keys from ``os.urandom`` a block of 256 at a time. Every key
is used once.

Inbound, :func:`push_messages` walks a read's frames and hands each plain message (an
unmasked, unfragmented text or binary frame without reserved bits) to the connection's
sink, decoding the text straight from the read buffer: in Python that walk was a dozen
byte reads, a memoryview slice and a str call per message, once per 20 ms audio delta
of every session. It stops at the first frame it does not take and leaves that frame,
and the judgement of it, to the caller.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint64_t
from libc.string cimport memcpy

cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object, Py_ssize_t *) except NULL
    object PyUnicode_DecodeUTF8(const char *, Py_ssize_t, const char *)

import os

cdef enum:
    KEY_BYTES = 4
    KEY_BLOCK = 1024  # 256 keys per os.urandom call
    FIN_TEXT = 0x81
    FIN_BINARY = 0x82
    MASK_BIT = 0x80
    FIN_BIT = 0x80
    RSV_BITS = 0x70
    OPCODE_BITS = 0x0F
    LENGTH_BITS = 0x7F
    OP_TEXT = 0x1
    OP_BINARY = 0x2


cdef inline const char *_payload(object message, Py_ssize_t *size) except NULL:
    if type(message) is str:
        return PyUnicode_AsUTF8AndSize(message, size)  # an ASCII str: its storage, no copy
    if type(message) is bytes:
        size[0] = PyBytes_GET_SIZE(message)
        return PyBytes_AS_STRING(message)
    raise TypeError(f"a WebSocket message is str or bytes, not {type(message).__name__}")


cdef inline Py_ssize_t _header_bytes(Py_ssize_t n) noexcept:
    if n < 126:
        return 2 + KEY_BYTES
    if n < 65536:
        return 4 + KEY_BYTES
    return 10 + KEY_BYTES


cdef void _mask(unsigned char *out, const unsigned char *src, Py_ssize_t n,
                const unsigned char *key) noexcept nogil:
    cdef unsigned char key8[8]
    cdef uint64_t word, key_word
    cdef Py_ssize_t i = 0
    memcpy(key8, key, KEY_BYTES)
    memcpy(key8 + KEY_BYTES, key, KEY_BYTES)
    memcpy(&key_word, key8, 8)  # the key twice, in memory order: endian-neutral
    while i + 8 <= n:
        memcpy(&word, src + i, 8)
        word ^= key_word
        memcpy(out + i, &word, 8)
        i += 8
    while i < n:  # i is a multiple of 8 here: key byte i % 4 lines up
        out[i] = src[i] ^ key[i & 3]
        i += 1


cdef class ClientFramer:
    """Frames client messages (text: str, binary: bytes) for one connection.

    ``urandom`` is where keys come from (``os.urandom``; tests pass a recorder).
    """

    cdef object _urandom
    cdef bytes _keys
    cdef Py_ssize_t _used

    def __cinit__(self, *args, **kwargs):
        self._urandom = os.urandom
        self._keys = b""
        self._used = 0

    def __init__(self, urandom=None):
        if urandom is not None:
            self._urandom = urandom

    cdef const unsigned char *_next_key(self) except NULL:
        if self._used + KEY_BYTES > PyBytes_GET_SIZE(self._keys):
            keys = self._urandom(KEY_BLOCK)
            if type(keys) is not bytes or PyBytes_GET_SIZE(keys) != KEY_BLOCK:
                raise ValueError(f"urandom returned {len(keys)} bytes, expected {KEY_BLOCK}")
            self._keys = keys
            self._used = 0
        cdef const unsigned char *key = <const unsigned char *>PyBytes_AS_STRING(self._keys) + self._used
        self._used += KEY_BYTES
        return key

    def frame(self, messages) -> bytes:
        """``messages`` (a list or tuple of str / bytes), each as one masked FIN frame, in
        order, in one ``bytes``."""
        cdef Py_ssize_t total = 0, size = 0, length, pos = 0
        cdef int shift
        cdef const char *data
        cdef const unsigned char *key
        cdef unsigned char *out
        cdef tuple items = tuple(messages)
        for message in items:
            _payload(message, &size)
            total += _header_bytes(size) + size
        result = PyBytes_FromStringAndSize(NULL, total)
        out = <unsigned char *>PyBytes_AS_STRING(result)
        for message in items:
            data = _payload(message, &length)
            out[pos] = FIN_TEXT if type(message) is str else FIN_BINARY
            if length < 126:
                out[pos + 1] = MASK_BIT | length
                pos += 2
            elif length < 65536:
                out[pos + 1] = MASK_BIT | 126
                out[pos + 2] = (length >> 8) & 0xFF
                out[pos + 3] = length & 0xFF
                pos += 4
            else:
                out[pos + 1] = MASK_BIT | 127
                for shift in range(8):
                    out[pos + 2 + shift] = (<unsigned long long>length >> (56 - 8 * shift)) & 0xFF
                pos += 10
            key = self._next_key()
            memcpy(out + pos, key, KEY_BYTES)
            pos += KEY_BYTES
            _mask(out + pos, <const unsigned char *>data, length, key)
            pos += length
        return result


def push_messages(data, Py_ssize_t pos, Py_ssize_t max_size, connection, Py_ssize_t end=-1) -> int:
    """Hand the plain messages of ``data[:end]`` (``end=-1``: all of it) from offset ``pos``
    on to ``connection.sink``, in order, while it has one; returns the offset of the first
    byte not taken.

    A plain message is a whole unmasked FIN text or binary frame, no reserved bits, at most
    ``max_size`` bytes of payload, text valid UTF-8 (a str to the sink), binary as bytes.
    The walk stops at the first frame that is not one, or not complete in ``data``, or when
    the sink is gone (``None``; a sink may end pushing from its own call): that frame is
    the caller's. ``data`` is any byte buffer; nothing keeps a view of it after the call.
    """
    cdef Py_buffer view
    cdef const unsigned char *p
    cdef Py_ssize_t size, start, stop, width, i
    cdef unsigned long long length
    cdef unsigned char first, second, opcode
    if pos < 0:
        raise ValueError("pos must be >= 0")
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        p = <const unsigned char *>view.buf
        size = view.len
        if end >= 0:
            if end > size:
                raise ValueError(f"end {end} is past the buffer's {size} bytes")
            size = end
        while size - pos >= 2:
            first = p[pos]
            second = p[pos + 1]
            if second & MASK_BIT or first & RSV_BITS or not first & FIN_BIT:
                break
            opcode = first & OPCODE_BITS
            if opcode != OP_TEXT and opcode != OP_BINARY:
                break
            length = second & LENGTH_BITS
            start = pos + 2
            if length >= 126:
                width = 2 if length == 126 else 8
                if size - start < width:
                    break
                length = 0
                for i in range(width):
                    length = (length << 8) | p[start + i]
                start += width
            if length > <unsigned long long>max_size:
                break
            if <unsigned long long>(size - start) < length:
                break  # the rest of this frame is still on its way
            stop = start + <Py_ssize_t>length
            sink = connection.sink
            if sink is None:
                break
            if opcode == OP_TEXT:
                try:
                    message = PyUnicode_DecodeUTF8(<const char *>p + start, stop - start, NULL)
                except UnicodeDecodeError:
                    break  # the caller's: websockets fails the connection with 1007
            else:
                message = PyBytes_FromStringAndSize(<const char *>p + start, stop - start)
            pos = stop
            sink(message)
    finally:
        PyBuffer_Release(&view)
    return pos
