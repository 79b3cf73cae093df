# Shared buffer intake for every _audio extension (textually included).
#
# PCM16 is signed 16-bit little-endian. We accept any C-contiguous buffer whose items
# are bytes or native little-endian int16 and view it as bytes without copying. Read-only
# buffers are fine (const memoryviews). Everything else gets a clear error:
#   TypeError        wrong item type (float64, int32, int8 arrays, str, None, ...)
#   AudioFormatError big-endian int16, non-contiguous / negative-stride views

from cpython.buffer cimport PyBUF_RECORDS_RO, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

from voiceengine.exceptions import AudioFormatError

cdef extern from *:
    """
    #if defined(_MSC_VER) || (defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__) \
        || defined(__LITTLE_ENDIAN__) || defined(__x86_64__) || defined(__aarch64__) || defined(__i386__)
    #define VE_LITTLE_ENDIAN 1
    #else
    #define VE_LITTLE_ENDIAN 0
    #endif
    """
    int VE_LITTLE_ENDIAN

cdef extern from *:
    """
    #ifndef VOICEENGINE_DEBUG_BUILD
    #define VOICEENGINE_DEBUG_BUILD 0
    #endif
    """
    int VOICEENGINE_DEBUG_BUILD

#: True in the bounds-checked debug build (VOICEENGINE_DEBUG_BUILD=1 at build time)
DEBUG_BUILD = bool(VOICEENGINE_DEBUG_BUILD)

_BYTE_FORMATS = frozenset(("B", "c", "<B", "=B", "@B", "<c", "=c", "@c"))  # "<c": ctypes c_char arrays  # int8 ("b") is audio of the wrong width: TypeError
_INT16_NATIVE = frozenset(("h", "@h", "=h", "<h"))
_INT16_BIG = frozenset((">h", "!h"))


cdef bint _plain_byte_view(object view):
    """Whether the memoryview ``view`` is a non-empty 1-D contiguous view of format ``"B"``:
    what :func:`checked_view` hands back for any valid byte buffer, judged from the view's
    own buffer without making another (``False`` for a released view: the general path
    reports it)."""
    cdef Py_buffer info
    cdef bint plain
    try:
        PyObject_GetBuffer(view, &info, PyBUF_RECORDS_RO)
    except Exception:
        return False
    plain = (info.ndim == 1 and info.itemsize == 1 and info.len > 0
             and (info.strides == NULL or info.strides[0] == 1)
             and info.format != NULL and info.format[0] == b"B" and info.format[1] == 0)
    PyBuffer_Release(&info)
    return plain


cdef object checked_view(object buf, frozenset native, frozenset big, str kind, str dtype):
    """Validate ``buf`` as samples of ``kind`` and return it as bytes without copying.

    ``bytes``/``bytearray`` come back as they are; any other buffer as a 1-D unsigned-byte
    memoryview over the caller's memory. ``native``/``big`` are the item formats of the
    sample type in little-endian / big-endian order (see the file comment for errors).
    """
    cdef object view
    if type(buf) is bytes or type(buf) is bytearray:
        return buf
    if type(buf) is memoryview and _plain_byte_view(buf):
        return buf  # already what the checks below would return (a chunker's frame, a slice)
    if isinstance(buf, str) or buf is None:
        raise TypeError(f"expected a {kind} buffer (bytes-like or array), got {type(buf).__name__}")
    try:
        view = memoryview(buf)
    except (TypeError, ValueError, BufferError):
        # ValueError/BufferError: a released memoryview, or an exporter that refuses
        # (numpy datetime64): not a usable buffer either, same documented TypeError
        raise TypeError(f"expected a {kind} buffer (bytes-like or array), got {type(buf).__name__}") from None
    fmt = view.format
    if fmt in big:
        raise AudioFormatError(f"big-endian {kind} buffers are not little-endian; byteswap first")
    if fmt in native:
        if not VE_LITTLE_ENDIAN and fmt[0] != "<":
            raise AudioFormatError(f"native {kind} on a big-endian host is not little-endian")
    elif fmt not in _BYTE_FORMATS:
        raise TypeError(
            f"{kind} buffers must hold {kind} samples or raw bytes, got item format {fmt!r} "
            f"(itemsize {view.itemsize}); convert e.g. with numpy .astype('{dtype}')"
        )
    if view.nbytes == 0:
        # Empty input is valid whatever its shape: memoryview calls an empty reversed
        # view non-contiguous and refuses to cast a zero in the shape ((0, 2) arrays).
        # Writable, so read_into's writable intake takes it too.
        return memoryview(bytearray())
    if not view.c_contiguous:
        raise AudioFormatError("audio buffer must be C-contiguous (got a strided or reversed view); copy it first")
    if view.ndim != 1 or fmt not in ("B", "<B", "=B", "@B"):
        view = view.cast("B")
    return view


cdef inline object pcm_view(object buf):
    """``buf`` validated as PCM16 (int16 or raw bytes), as bytes without copying."""
    return checked_view(buf, _INT16_NATIVE, _INT16_BIG, "PCM16", "<i2")


cdef inline const unsigned char[::1] pcm_bytes(object buf):
    """``pcm_view`` as a typed memoryview, for code that indexes the bytes."""
    return pcm_view(buf)


cdef inline object pcm_span(object buf, const unsigned char **data, Py_ssize_t *size):
    """Point ``data``/``size`` at ``buf``'s PCM16 bytes, without copying.

    Returns the object that keeps that memory alive and unresized while it is held:
    ``buf`` itself for ``bytes`` (read directly: the buffer-export machinery dominates a
    20 ms call), else a 1-D byte memoryview over the caller's memory.
    """
    cdef const unsigned char[::1] view
    if type(buf) is bytes:
        data[0] = <const unsigned char *>PyBytes_AS_STRING(buf)
        size[0] = PyBytes_GET_SIZE(buf)
        return buf
    owner = pcm_view(buf)
    if type(owner) is bytearray:
        owner = memoryview(owner)  # an export pins the bytearray against resizing
    view = owner
    size[0] = view.shape[0]
    data[0] = &view[0] if size[0] else NULL
    return owner
