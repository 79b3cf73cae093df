# Shared buffer intake for every _audio extension (textually included).
#
# PCM16 is signed 16-bit little-endian. We accept any C-contiguous buffer whose items
# are bytes or native little-endian int16 and view it as bytes without copying. Read-only
# buffers are fine (const memoryviews). Everything else gets a clear error:
#   TypeError        wrong item type (float64, int32, int8 arrays, str, None, ...)
#   AudioFormatError big-endian int16, non-contiguous / negative-stride views

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

_BYTE_FORMATS = frozenset(("B", "c", "<B", "=B", "@B"))  # int8 ("b") is audio of the wrong width: TypeError
_INT16_NATIVE = frozenset(("h", "@h", "=h", "<h"))
_INT16_BIG = frozenset((">h", "!h"))


cdef inline const unsigned char[::1] pcm_bytes(object buf):
    """View ``buf`` as contiguous bytes without copying (see module comment for errors)."""
    cdef object view
    if type(buf) is bytes or type(buf) is bytearray:
        return buf
    if isinstance(buf, str) or buf is None:
        raise TypeError(f"expected a PCM16 buffer (bytes-like or int16 array), got {type(buf).__name__}")
    try:
        view = memoryview(buf)
    except TypeError:
        raise TypeError(
            f"expected a PCM16 buffer (bytes-like or int16 array), got {type(buf).__name__}"
        ) from None
    fmt = view.format
    if fmt in _INT16_BIG:
        raise AudioFormatError("big-endian int16 buffers are not PCM16 little-endian; byteswap first")
    if fmt in _INT16_NATIVE:
        if not VE_LITTLE_ENDIAN and fmt != "<h":
            raise AudioFormatError("native int16 on a big-endian host is not PCM16 little-endian")
    elif fmt not in _BYTE_FORMATS:
        raise TypeError(
            f"PCM16 buffers must hold int16 or raw bytes, got item format {fmt!r} "
            f"(itemsize {view.itemsize}); convert e.g. with numpy .astype('<i2')"
        )
    if not view.c_contiguous:
        raise AudioFormatError("audio buffer must be C-contiguous (got a strided or reversed view); copy it first")
    if view.ndim != 1 or fmt not in ("B", "<B", "=B", "@B"):
        view = view.cast("B")
    return view
