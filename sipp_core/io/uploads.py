"""What every upload loader shares: reading an upload's bytes within a size limit, telling which kind of file
it is (a torch.save file, an exported program, a NumPy archive) before anything loads it, saying why PyTorch
refused one, and a dry forward pass that checks an uploaded network fits the data set. Used by the weights
(state_dict_upload), exported-program (exported_upload, pt2_scan), data set (byo, data) and checkpoint loaders."""
from __future__ import annotations

import io
import re
import zipfile
from typing import Any

import torch
from torch import nn

from ..errors import UploadError

__all__ = ["DATA_SMALLER", "MODEL_MAX_BYTES", "NPZ_UPLOAD_MAX_BYTES", "WEIGHTS_SMALLER", "check_runs_on", "first_few",
           "looks_like_npz", "looks_like_pt2", "looks_like_torch_save", "read_checked", "read_upload",
           "safe_load_message", "strip_root", "zip_names"]

MODEL_MAX_BYTES = 200 * 1024**2  # Streamlit's default upload limit is 200 MB as well
NPZ_UPLOAD_MAX_BYTES = 200 * 1024**2  # the app's (npz.NPZ_MAX_BYTES, 512 MiB, for a file read from disk)
WEIGHTS_SMALLER = "save the state_dict only (float32, no optimizer state), or export the network alone"
DATA_SMALLER = "use fewer points or smaller images"

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


# ---- what kind of file, and does the network fit the data

def read_checked(data: Any, max_bytes: int, what: str, smaller: str = WEIGHTS_SMALLER) -> bytes:
    """Bytes of an upload (bytes, bytearray, memoryview or a binary file object), within max_bytes.
    smaller: how to make such a file smaller, the fix when it is too large."""
    raw = read_upload(data, max_bytes)
    if len(raw) > max_bytes:
        raise UploadError(f"{what}: the file is larger than the limit of {_size(max_bytes)}", smaller)
    if not raw:
        raise UploadError(f"{what}: the file is empty (0 bytes)", "choose the file again")
    return raw


def _size(n: int) -> str:
    return f"{n / 1024**2:,.0f} MiB" if n >= 1024**2 else f"{n:,} bytes"


def zip_names(raw: bytes) -> list[str] | None:
    if not raw.startswith(b"PK"):
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            return z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return None


def strip_root(name: str) -> str:
    """'archive/data/weights/w' -> 'data/weights/w' (torch archives nest everything under one folder)."""
    return name.split("/", 1)[1] if "/" in name else name


def looks_like_pt2(names: list[str]) -> bool:
    inner = {strip_root(n) for n in names}
    return "archive_format" in inner or any(n.startswith("models/") and n.endswith(".json") for n in inner)


def looks_like_npz(names: list[str]) -> bool:
    return bool(names) and all(n.endswith(".npy") for n in names)


def looks_like_torch_save(names: list[str]) -> bool:
    return any(strip_root(n) == "data.pkl" for n in names)


def first_few(items, n=5) -> str:
    items = list(items)
    more = f" (and {len(items) - n} more)" if len(items) > n else ""
    return ", ".join(str(i) for i in items[:n]) + more


def check_runs_on(model: nn.Module, record, what: str) -> None:
    """A dry forward on two test points: shapes, class count and finite outputs, before anything runs."""
    x = record.x_test[:2]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            out = model(x)
    except Exception as exc:
        raise UploadError(
            f"{what} cannot take this data set's inputs shaped {tuple(record.input_shape)} "
            f"(a batch of 2 failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
            "choose the data set the model was trained for"
        ) from exc
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != len(x):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UploadError(f"{what} must return logits shaped (batch, classes); it returned {shape}")
    if out.shape[1] != record.num_classes:
        raise UploadError(
            f"{what} outputs {out.shape[1]} classes but the data set {record.name!r} has {record.num_classes}; "
            "use the data set the model was trained for, or a model with one output per class"
        )
    if not torch.isfinite(out).all():
        raise UploadError(f"{what} returns NaN or infinite logits on test points; check the weights")
