# cython: language_level=3, auto_pickle=False, autotestdict=False
"""Client WebSocket framing (RFC 6455 5.2, 5.3) of whole messages into one buffer.

The transport's outbound fast path writes the messages that are ready at one moment with
one socket write, each as a FIN (unfragmented) frame masked with a fresh key. Done in
Python that is, per message, a UTF-8 copy of the text, a header object, a masked copy
and a join (a copy of everything), plus an ``os.urandom`` system call per write for the
keys. :class:`ClientFramer` writes headers, keys and masked payloads straight into the
one ``bytes`` it returns, reading a text message from the str's own UTF-8 (an ASCII
str's storage), and draws keys from ``os.urandom`` a block of 256 at a time. Every key
is used once.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint64_t
from libc.string cimport memcpy

cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object, Py_ssize_t *) except NULL

import os

cdef enum:
    KEY_BYTES = 4
    KEY_BLOCK = 1024  # 256 keys per os.urandom call
    FIN_TEXT = 0x81
    FIN_BINARY = 0x82
    MASK_BIT = 0x80


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
