# cython: language_level=3, auto_pickle=False, autotestdict=False
"""Strict one-pass decoder of audio-delta frames (flat JSON object + base64 PCM).

A realtime voice service sends most of a reply's bytes as frames like::

    {"type":"response.output_audio.delta","event_id":"...","response_id":"...",
     "item_id":"...","output_index":0,"content_index":0,"delta":"<base64 PCM>"}

A general JSON parser spends most of its time copying and checking the long base64
string, which the base64 decoder then reads again. :func:`scan_audio_delta` parses
only the flat shape such frames have (string, integer, true/false/null members; ASCII
text; no escapes) and hands the delta to pybase64's strict SIMD decoder, which is its
validation. Anything else -- another type, another shape, a number it does not read
exactly like :func:`json.loads`, invalid base64 -- returns ``None`` and the caller takes
its general path, so malformed frames are reported exactly as that path reports them.
"""

from cpython.long cimport PyLong_FromLongLong
from cpython.unicode cimport PyUnicode_Substring
from libc.string cimport memchr, memcmp

cdef extern from "Python.h":
    int PyObject_GenericSetAttr(object, object, object) except -1
    bint PyUnicode_IS_ASCII(object)
    const void *PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)

try:
    from pybase64 import b64decode as _b64decode
except ImportError:  # pragma: no cover - depends on the environment
    _b64decode = None

# json.loads reads at most 18 digits into a machine integer here; longer ones go to it
cdef enum:
    MAX_INT_DIGITS = 18


cdef inline Py_ssize_t _skip_ws(const char *s, Py_ssize_t i, Py_ssize_t n) noexcept:
    while i < n and (s[i] == b' ' or s[i] == b'\n' or s[i] == b'\r' or s[i] == b'\t'):
        i += 1
    return i


cdef inline Py_ssize_t _plain_string_end(const char *s, Py_ssize_t i, Py_ssize_t n) noexcept:
    """Index of the closing quote of a string starting at ``i`` (after the opening quote);
    -1 when it has an escape or a control character (json.loads' strict mode), or no end."""
    cdef unsigned char c
    while i < n:
        c = <unsigned char>s[i]
        if c == b'"':
            return i
        if c == b'\\' or c < 0x20:
            return -1
        i += 1
    return -1


# members of audio-delta frames: a parsed key equal to one of these reuses the interned
# object (no allocation, hash already cached) instead of a new str
cdef tuple _KNOWN_KEYS = ("type", "event_id", "response_id", "item_id", "output_index",
                          "content_index", "delta")


cdef inline object _text(str text, const char *s, Py_ssize_t a, Py_ssize_t b, tuple known):
    """``text[a:b]``, or the equal str of ``known`` when there is one."""
    cdef Py_ssize_t n = b - a
    for k in known:
        if PyUnicode_GET_LENGTH(k) == n and memcmp(<const char *>PyUnicode_DATA(k), s + a, n) == 0:
            return k
    return PyUnicode_Substring(text, a, b)


cdef inline object _value(str text, const char *s, Py_ssize_t a, Py_ssize_t b, str known):
    """``text[a:b]``, or ``known`` when equal (the frame's type string)."""
    cdef Py_ssize_t n = b - a
    if PyUnicode_GET_LENGTH(known) == n and memcmp(<const char *>PyUnicode_DATA(known), s + a, n) == 0:
        return known
    return PyUnicode_Substring(text, a, b)


cdef dict _parse_flat(str text, const char *s, Py_ssize_t n, bytes delta_key, str type_value):
    """``json.loads(text)`` for a flat ASCII object without escapes, else ``None``.

    The member named ``delta_key`` is taken up to the next quote without a per-character
    check: the caller accepts it only if it is strict base64 (no quote, backslash or
    control character can be in that alphabet).
    """
    cdef Py_ssize_t i, a, b, digits
    cdef long long value
    cdef bint negative, is_delta, seen_delta = False
    cdef Py_ssize_t dlen = len(delta_key)
    cdef const char *dkey = delta_key
    cdef const char *hit
    cdef dict msg = {}
    i = _skip_ws(s, 0, n)
    if i >= n or s[i] != b'{':
        return None
    i = _skip_ws(s, i + 1, n)
    while True:
        if i >= n or s[i] != b'"':
            return None
        a = i + 1
        b = _plain_string_end(s, a, n)
        if b < 0:
            return None
        key = _text(text, s, a, b, _KNOWN_KEYS)
        is_delta = b - a == dlen and memcmp(s + a, dkey, dlen) == 0
        i = _skip_ws(s, b + 1, n)
        if i >= n or s[i] != b':':
            return None
        i = _skip_ws(s, i + 1, n)
        if i >= n:
            return None
        if s[i] == b'"':
            a = i + 1
            if is_delta:
                if seen_delta:
                    return None  # only the last copy would be validated as base64
                seen_delta = True
                hit = <const char *>memchr(s + a, b'"', n - a)
                if hit == NULL:
                    return None
                b = hit - s
            else:
                b = _plain_string_end(s, a, n)
                if b < 0:
                    return None
            msg[key] = PyUnicode_Substring(text, a, b) if is_delta else _value(text, s, a, b, type_value)
            i = b + 1
        elif s[i] == b'-' or (b'0' <= s[i] <= b'9'):
            negative = s[i] == b'-'
            if negative:
                i += 1
            a = i
            value = 0
            while i < n and b'0' <= s[i] <= b'9':
                value = value * 10 + (s[i] - 48)  # ord('0')
                i += 1
                if i - a > MAX_INT_DIGITS:
                    return None
            digits = i - a
            if digits == 0 or (digits > 1 and s[a] == b'0'):
                return None
            if i < n and (s[i] == b'.' or s[i] == b'e' or s[i] == b'E'):
                return None  # a float: json.loads' own conversion decides its value
            msg[key] = PyLong_FromLongLong(-value if negative else value)
        elif n - i >= 4 and memcmp(s + i, b"null", 4) == 0:
            msg[key] = None
            i += 4
        elif n - i >= 4 and memcmp(s + i, b"true", 4) == 0:
            msg[key] = True
            i += 4
        elif n - i >= 5 and memcmp(s + i, b"false", 5) == 0:
            msg[key] = False
            i += 5
        else:
            return None  # nested object, array, NaN/Infinity, garbage
        i = _skip_ws(s, i, n)
        if i >= n:
            return None
        if s[i] == b'}':
            break
        if s[i] != b',':
            return None
        i = _skip_ws(s, i + 1, n)
    if _skip_ws(s, i + 1, n) != n:
        return None  # trailing data
    return msg


cdef bytes _DELTA_KEY = b"delta"


def scan_audio_delta(text, str wire_type, Py_ssize_t sample_width):
    """``(message, pcm)`` for a well-formed audio-delta frame of ``wire_type``, else ``None``.

    ``message`` equals ``json.loads(text)``; ``pcm`` is its ``delta`` member decoded as
    strict base64 (pybase64, ``validate=True``). The frame must be a str whose first
    member is ``"type": wire_type``, with string ``item_id`` and ``response_id``, an
    integer ``content_index`` if present, and whole samples of ``sample_width`` bytes.
    ``None`` means "not taken here" (another type or shape, a malformed member, pybase64
    not installed): decode it the general way, which reports what is wrong with it.
    """
    cdef const char *s
    cdef Py_ssize_t n, i, tlen
    cdef dict msg
    if _b64decode is None or type(text) is not str or not PyUnicode_IS_ASCII(text):
        return None
    s = <const char *>PyUnicode_DATA(text)
    n = PyUnicode_GET_LENGTH(text)
    if not PyUnicode_IS_ASCII(wire_type):
        return None
    tlen = PyUnicode_GET_LENGTH(wire_type)
    # cheap refusal of every other frame: services write "type" first
    i = _skip_ws(s, 0, n)
    if i >= n or s[i] != b'{':
        return None
    i = _skip_ws(s, i + 1, n)
    if n - i < 8 or memcmp(s + i, b'"type"', 6) != 0:
        return None
    i = _skip_ws(s, i + 6, n)
    if i >= n or s[i] != b':':
        return None
    i = _skip_ws(s, i + 1, n)
    if n - i < tlen + 2 or s[i] != b'"' or memcmp(s + i + 1, <const char *>PyUnicode_DATA(wire_type), tlen) != 0 \
            or s[i + 1 + tlen] != b'"':
        return None
    msg = _parse_flat(text, s, n, _DELTA_KEY, wire_type)
    if msg is None or msg.get("type") != wire_type:
        return None
    delta = msg.get("delta")
    if type(delta) is not str or type(msg.get("item_id")) is not str \
            or type(msg.get("response_id")) is not str or type(msg.get("content_index", 0)) is not int:
        return None
    try:
        pcm = _b64decode(delta, None, True)  # validate=True, passed positionally (no kwargs dict)
    except (ValueError, TypeError):
        return None
    if sample_width <= 0 or len(pcm) % sample_width:
        return None
    return msg, pcm


def fill_slots(cls, tuple names, tuple values):
    """A new ``cls`` instance with slot ``names[k]`` set to ``values[k]``, ``__init__`` not run.

    For frozen slotted dataclasses on a hot path: their generated ``__init__`` parses
    keywords and calls ``object.__setattr__`` once per field from Python (~2 us for a
    9-field event); this sets the same slots from C. The caller passes every field
    (a slot left unset raises AttributeError when read) and owns the invariants
    ``__init__`` would have checked.
    """
    if len(names) != len(values):
        raise ValueError("names and values differ in length")
    obj = cls.__new__(cls)
    for k in range(len(names)):
        PyObject_GenericSetAttr(obj, names[k], values[k])
    return obj
