"""Reading an upload's bytes, and saying why PyTorch refused one: shared by the weights (byo),
data set (data) and checkpoint loaders."""
from __future__ import annotations

import re
from typing import Any

__all__ = ["read_upload", "safe_load_message"]

# PyTorch's text around a refused file advises loading it with weights_only=False or
# allowlisting the object it asks for: both would run whatever the file carries. Any
# sentence that mentions these is dropped before a reason reaches the user.
_UNSAFE_ADVICE = re.compile(
    r"weights_only|safe_globals|add_safe_globals|re-running|trust|arbitrary code|file an issue|"
    r"check the documentation|internal miniz error|https?://",
    re.IGNORECASE,
)
_UNPICKLER_REASON = re.compile(r"WeightsUnpickler error:\s*(.*?)(?:\s*Please use\b|\s*Check the documentation|$)",
                               re.DOTALL)
_DISALLOWED_GLOBAL = re.compile(r"GLOBAL ([\w.]+) was not an allowed global")
_ZIP_REASON = re.compile(r"PytorchStreamReader failed (reading zip archive|locating file [^:]*):\s*([^.]*)")


def read_upload(obj: Any, max_bytes: int) -> bytes:
    """The bytes of ``obj``: bytes, bytearray, memoryview, or a binary file object (such
    as streamlit's UploadedFile) read from its start. At most max_bytes + 1 bytes are
    read from a file, so a caller sees an over-size upload (len > max_bytes) without
    reading all of it; its own message names the limit.

    Raises:
        TypeError: anything else, or a file opened in text mode.
    """
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj)
    if hasattr(obj, "read"):
        if hasattr(obj, "seek"):
            obj.seek(0)
        raw = obj.read(max_bytes + 1)
        if not isinstance(raw, (bytes, bytearray)):
            raise TypeError("the file object must be opened in binary mode")
        return bytes(raw)
    raise TypeError(f"expected the file's bytes or a binary file object, got {type(obj).__name__}")


def safe_load_message(exc: BaseException, limit: int = 160) -> str:
    """Why ``torch.load(..., weights_only=True)`` (or ``torch.export.load``) refused a file, in one
    plain phrase fit to show a user.

    PyTorch's own text is long, cut mid-sentence by any fixed-width slice, and suggests
    loading with ``weights_only=False`` or allowlisting globals, which would run the file's
    code. This keeps only the reason (e.g. "unsupported pickle operand 19", "it holds the
    Python object builtins.print, which is not a tensor", "damaged zip archive: failed finding
    central directory"), drops every sentence with such advice, and shortens at a word
    boundary. Callers add what the file should have been and the fix.
    """
    text = str(exc).strip()
    reason = _unpickler_reason(text) or _zip_reason(text) or _first_safe_sentence(text)
    if not reason:
        reason = type(exc).__name__
    elif isinstance(exc, (KeyError, IndexError, EOFError)):  # their text alone is a bare key or nothing
        reason = f"{type(exc).__name__} {reason}"
    return _shorten(reason, limit)


def _unpickler_reason(text: str) -> str:
    found = _UNPICKLER_REASON.search(text)
    if not found:
        return ""
    glob = _DISALLOWED_GLOBAL.search(found.group(1))
    if glob:
        return f"it holds the Python object {glob.group(1)}, which is not a tensor"
    reason = " ".join(found.group(1).split()).rstrip(". ")
    operand = re.fullmatch(r"Unsupported operand (\d+)", reason)
    if operand:
        return f"its bytes are not a pickle of tensors (unsupported pickle operand {operand.group(1)})"
    return _first_safe_sentence(reason)


def _zip_reason(text: str) -> str:
    found = _ZIP_REASON.search(text)
    return f"damaged zip archive: {found.group(2).strip()}" if found else ""


def _first_safe_sentence(text: str) -> str:
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", text):
        sentence = " ".join(sentence.split()).rstrip(". ")
        if sentence and not _UNSAFE_ADVICE.search(sentence) and sentence.lower() != "weights only load failed":
            return sentence
    return ""


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + " …"
