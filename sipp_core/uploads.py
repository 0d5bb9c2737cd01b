"""Reading an upload's bytes: shared by the weights (byo) and data set (data) loaders."""
from __future__ import annotations

from typing import Any


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
