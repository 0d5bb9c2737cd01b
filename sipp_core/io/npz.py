"""A user's own data set from a .npz file, checked before anything is built from it.

    record = load_npz_dataset(path_or_bytes, name="mine", preprocessing="as-given")

The file must hold x_train, y_train, x_test, y_test (and optionally class_names); it is read without
pickle, its size and every array's expanded size are bounded from the zip entries and .npy headers
before anything is decompressed, labels are checked before anything per class is built, and inputs
must be finite numbers within float32's range. The preprocessing (as given, uint8 scaled, or
standardised) is the user's choice and is recorded in the DataRecord.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from ..errors import DegenerateData, UploadError
from ..options import PREPROCESSING, check_choice
from .data import CHUNK_ROWS, DataRecord, build_record, cached_record, check_seed, stratified_split, train_stats
from .uploads import read_upload, safe_load_message

__all__ = ["NPZ_MAX_BYTES", "NPZ_MAX_CLASSES", "NPZ_MAX_EXPANDED_BYTES", "NPZ_MIN_TEST", "NPZ_MIN_TRAIN",
           "NPZ_OPTIONAL", "NPZ_REQUIRED", "dataset_from_arrays", "load_npz_dataset"]

# ---------------------------------------------------------------------------
# A user's .npz

NPZ_REQUIRED = ("x_train", "y_train", "x_test", "y_test")
NPZ_OPTIONAL = ("class_names",)
# What the arrays may take once decompressed, all together, and separately what the record's
# normalised float32 copies of x_train and x_test may take (4 bytes a value: 4x for uint8
# images). Both are checked from the zip entries and .npy headers before anything is
# decompressed, and the record is built chunk by chunk, so loading an upload peaks near
# twice this over the process's baseline, whatever its compressed size (zip bombs).
# 512 MiB holds MNIST (70,000 28x28 images: 220 MB as float32) with room to spare.
NPZ_MAX_EXPANDED_BYTES = 512 * 1024**2
NPZ_MAX_BYTES = NPZ_MAX_EXPANDED_BYTES  # the file itself: a larger one could not expand to less
NPZ_MIN_TRAIN, NPZ_MIN_TEST, NPZ_MAX_CLASSES = 20, 5, 1000
_NPZ_FIX = "save it with np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"
_NPZ_RESAVE = "the file is damaged or was not written by np.savez; " + _NPZ_FIX
_RESCALE_FIX = ("rescale the inputs before saving, e.g. standardise each feature or divide by the largest "
                "magnitude, so that they fit float32 (about 3.4e38)")
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# Errors a damaged zip member raises while it is decompressed.
_ZIP_READ_ERRORS = (ValueError, OSError, EOFError, RuntimeError, NotImplementedError, zipfile.BadZipFile, zlib.error)


def _npz_error(msg: str, fix: str = "") -> UploadError:
    return UploadError(f"Invalid .npz data set: {msg}", fix)


def _mib(n: int) -> str:
    return f"{n / 1024**2:,.0f} MiB" if n >= 1024**2 else f"{n:,} bytes"


def _open_npz(path_or_bytes: Any) -> tuple[BinaryIO, str, str]:
    """(binary stream, display name, sha256) of a path, bytes or file-like upload."""
    if isinstance(path_or_bytes, (str, os.PathLike)):
        path = Path(path_or_bytes)
        if not path.is_file():
            raise _npz_error(f"no file at {path}")
        if path.stat().st_size > NPZ_MAX_BYTES:
            raise _npz_error(f"{path} is larger than {_mib(NPZ_MAX_BYTES)}", "use fewer points or smaller images")
        data = path.read_bytes()
        label = path.name
    else:  # bytes or a binary file object (e.g. streamlit's UploadedFile)
        data = read_upload(path_or_bytes, NPZ_MAX_BYTES)
        if len(data) > NPZ_MAX_BYTES:
            raise _npz_error(f"the upload is larger than {_mib(NPZ_MAX_BYTES)}", "use fewer points or smaller images")
        label = str(getattr(path_or_bytes, "name", "upload"))
    return io.BytesIO(bytes(data)), label, hashlib.sha256(data).hexdigest()


def _open_npz_archive(stream: BinaryIO) -> np.lib.npyio.NpzFile:
    # np.load reads a lone .npy at once, allocating whatever its header claims: refuse it unread.
    head = stream.read(6)
    if head == b"\x93NUMPY":
        raise _npz_error("this is a single .npy array, not an .npz archive of named arrays", _NPZ_FIX)
    if not head.startswith(b"PK"):  # numpy would try it as a pickle and say it "contains pickled data"
        raise _npz_error("not an .npz archive: an .npz is a zip file, and this file is not one", _NPZ_FIX)
    stream.seek(0)
    try:
        npz = np.load(stream, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise _npz_error(f"not a readable .npz archive ({safe_load_message(exc)})", _NPZ_FIX) from exc
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise _npz_error("this is a single .npy array, not an .npz archive of named arrays", _NPZ_FIX)
    return npz


def _npz_members(npz: np.lib.npyio.NpzFile) -> dict[str, zipfile.ZipInfo]:
    """{array name: its zip entry}, once the names are checked (no decompression yet)."""
    members = {(i.filename[:-4] if i.filename.endswith(".npy") else i.filename): i for i in npz.zip.infolist()}
    keys = list(members)
    missing = [k for k in NPZ_REQUIRED if k not in keys]
    if missing:
        raise _npz_error(f"missing array(s) {', '.join(missing)} (found: {', '.join(keys) or 'none'})", _NPZ_FIX)
    extra = [k for k in keys if k not in NPZ_REQUIRED + NPZ_OPTIONAL]
    if extra:
        raise _npz_error(f"unexpected array(s) {', '.join(extra)}; only {', '.join(NPZ_REQUIRED + NPZ_OPTIONAL)} "
                         "are read: remove the others")
    return members


def _check_expanded_size(npz: np.lib.npyio.NpzFile) -> None:
    """Refuse archives whose entries declare more than NPZ_MAX_EXPANDED_BYTES once decompressed."""
    infos = npz.zip.infolist()
    total = sum(i.file_size for i in infos)
    if total > NPZ_MAX_EXPANDED_BYTES:
        big = max(infos, key=lambda i: i.file_size)
        raise _npz_error(
            f"its arrays expand to {_mib(total)} once decompressed ({big.filename} alone to {_mib(big.file_size)}, "
            f"from a {_mib(sum(i.compress_size for i in infos))} file); the limit is {_mib(NPZ_MAX_EXPANDED_BYTES)} "
            "for all arrays together", "use fewer points or smaller images (uint8 pixels take a quarter of float32)")


def _npy_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from a member's .npy header, checked against the size its zip entry declares,
    so that reading it allocates exactly what the archive holds (a forged header allocates nothing)."""
    try:
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f".npy format version {version}")
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
            header_len = f.tell()
    except _ZIP_READ_ERRORS as exc:
        raise _npz_error(f"{key} is not a readable .npy array ({exc})", _NPZ_RESAVE) from exc
    if dtype.hasobject:
        raise _object_error(key)
    if any(d < 0 for d in shape):
        raise _npz_error(f"{key}'s header claims the shape {shape}", _NPZ_RESAVE)
    claimed = math.prod(shape) * dtype.itemsize
    if header_len + claimed != info.file_size:
        raise _npz_error(f"{key}'s header claims shape {shape} {dtype} ({_mib(claimed)}) but the archive holds "
                         f"{_mib(info.file_size - header_len)} of data for it", _NPZ_RESAVE)
    return shape, dtype


def _object_error(key: str) -> UploadError:
    # object arrays need pickle, which we never allow
    return _npz_error(f"{key} holds Python objects (dtype=object), which would need pickle and is not allowed; "
                      f"store plain numeric arrays, e.g. {key}=np.asarray({key}, dtype=np.float32)")


def _read_member(npz: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
    try:
        return npz[key]
    except _ZIP_READ_ERRORS as exc:  # data shorter than its header says, a bad CRC, broken deflate
        raise _npz_error(f"{key} could not be read ({exc})", _NPZ_RESAVE) from exc


def _read_npz_arrays(stream: BinaryIO) -> dict[str, np.ndarray]:
    """The archive's arrays, reading no more than their headers and zip entries declare.

    A zip entry's declared size can lie: zipfile's reader stops there (and checks the CRC
    there), so a deflate stream that expands further is never expanded past it, and the
    .npy header must agree with it to the byte (_npy_header)."""
    with _open_npz_archive(stream) as npz:
        members = _npz_members(npz)
        _check_expanded_size(npz)
        shapes = {key: _npy_header(npz.zip, info, key)[0] for key, info in members.items()}
        _check_record_size(shapes)
        return {key: _read_member(npz, key) for key in members}


def _check_record_size(shapes: dict[str, tuple[int, ...]]) -> None:
    """The normalised float32 copies of x_train and x_test must fit NPZ_MAX_EXPANDED_BYTES as well:
    4 bytes a value, so uint8 images would otherwise grow fourfold past the decompression limit."""
    values = sum(math.prod(shapes[k]) for k in ("x_train", "x_test"))
    if 4 * values > NPZ_MAX_EXPANDED_BYTES:
        raise _npz_error(f"x_train and x_test hold {values:,} values, which take {_mib(4 * values)} as float32 "
                         f"once normalised; the limit is {_mib(NPZ_MAX_EXPANDED_BYTES)}",
                         "use fewer points or smaller images")


def _channels_first(x: np.ndarray, which: str) -> np.ndarray:
    """(N, D), (N, H, W), (N, H, W, C) or (N, C, H, W) -> (N, D) or (N, C, H, W)."""
    if x.ndim == 2:
        return x
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[3] in (1, 3):
            return x.transpose(0, 3, 1, 2)
        if x.shape[1] in (1, 3):
            return x
        raise _npz_error(f"{which} has shape {x.shape}: images need 1 or 3 channels, as (N, H, W, C) or (N, C, H, W)")
    raise _npz_error(f"{which} has shape {x.shape}: expected (N, D) vectors, (N, H, W) or (N, H, W, C) images")


def _check_labels(y: np.ndarray, which: str, n: int) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2:
        raise _npz_error(f"{which} has shape {y.shape}: labels must be class indices shaped (N,), "
                         f"not one-hot; use {which}.argmax(axis=1)")
    if y.ndim != 1:
        raise _npz_error(f"{which} has shape {y.shape}: labels must be shaped (N,)")
    if y.shape[0] != n:
        x = "x" + which[1:]
        raise _npz_error(f"{x} has {n} points but {which} has {y.shape[0]} labels; they must match one to one")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise _npz_error(f"{which} must hold integer class indices; found non-integer values")
    elif y.dtype.kind not in "iu":
        raise _npz_error(f"{which} has dtype {y.dtype}: labels must be integers 0..K-1")
    _check_label_range(y, which)
    return y.astype(np.int64)


def _check_label_range(y: np.ndarray, which: str) -> None:
    """Labels in 0..NPZ_MAX_CLASSES-1, checked in their own dtype: before anything is built per class,
    and before a cast to int64 could wrap a huge label round to a small or negative one."""
    if not y.size:
        return
    lo, hi = y.min(), y.max()
    if lo < 0:
        raise _npz_error(f"{which} contains the label {_label(lo)}: labels must lie in 0..K-1")
    if hi >= NPZ_MAX_CLASSES:
        raise _npz_error(f"{which} contains the label {_label(hi)}: labels must be class indices 0..K-1, "
                         f"with at most {NPZ_MAX_CLASSES} classes",
                         f"number the classes 0, 1, 2, ..., e.g. {which} = np.unique({which}, return_inverse=True)[1]")


def _label(v: Any) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def load_npz_dataset(path_or_bytes: Any, *, name: str = "custom", seed: int = 0,
                     preprocessing: str = "as-given") -> DataRecord:
    """A user's ``.npz`` (x_train, y_train, x_test, y_test) as a validated :class:`DataRecord`.

    Accepted inputs: ``x_*`` numeric, shaped (N, D) vectors, (N, H, W) images,
    (N, H, W, C) or (N, C, H, W) with C in {1, 3} (stored channels first);
    ``y_*`` integer class indices in 0..K-1, shaped (N,). An optional
    ``class_names`` string array gives K and the names; K is at most
    ``NPZ_MAX_CLASSES`` (1,000). No NaN/inf, values within float32's range, at
    least 20 train and 5 test points, and not every feature constant. Loaded
    with ``allow_pickle=False``; the file may be at most ``NPZ_MAX_BYTES`` and
    its arrays may take at most ``NPZ_MAX_EXPANDED_BYTES`` (512 MiB) together
    once decompressed, checked from the zip entries and .npy headers before
    anything is decompressed.

    The S-pool is a seeded stratified 10% of x_train (at most 1,000 points);
    x_test is the test split. ``preprocessing`` says what is done to the inputs
    (recorded in ``DataRecord.preprocessing`` and its ``source``):

    - "as-given" (default): nothing; the values exactly as stored, as float32.
      Use it for a model trained on the stored values: accuracies are then
      those plain PyTorch gives on the same arrays.
    - "scale": uint8 inputs divided by 255 (refused for other types).
    - "standardize": uint8 scaled to [0, 1], then each channel (images) or
      feature (vectors) normalised with the train split's mean and std, as
      zoo models are trained here.

    Args:
        path_or_bytes: a path, the file's bytes, or a binary file object
            (e.g. a Streamlit ``UploadedFile``).
        name: shown in the UI.
        seed: split seed.
        preprocessing: "as-given", "scale" or "standardize" (see above).

    Raises:
        UploadError (a ValueError): the file is invalid or too large; the
            message names the problem and the fix.
        DegenerateData (a ValueError): the arrays pass every check but would
            give NaN or empty results (values beyond float32, constant inputs).
    """
    seed = check_seed(seed)
    if not isinstance(name, str) or not name.strip():
        raise ValueError("name must be a non-empty string")
    check_choice(preprocessing, PREPROCESSING, "preprocessing")
    stream, label, digest = _open_npz(path_or_bytes)
    key = ("npz", digest, name, seed, preprocessing)
    return cached_record(key, lambda: _npz_record(stream, label, digest, name, seed, preprocessing))


def dataset_from_arrays(x_train, y_train, x_test, y_test, *, class_names=None, name: str = "custom", seed: int = 0,
                        preprocessing: str = "as-given") -> DataRecord:
    """Arrays in memory (numpy arrays or torch tensors) as a validated DataRecord, exactly as load_npz_dataset
    reads the same arrays from an .npz: the same checks, S-pool and preprocessing (default "as-given": the values
    as they are, so a network trained on them gets the accuracy plain PyTorch gives).

    >>> rec = dataset_from_arrays(X_tr / 16, y_tr, X_te / 16, y_te, name="digits/16")   # doctest: +SKIP
    >>> sipp_core.explore(my_net, rec)                                                   # doctest: +SKIP
    """
    seed = check_seed(seed)
    if not isinstance(name, str) or not name.strip():
        raise ValueError("name must be a non-empty string")
    check_choice(preprocessing, PREPROCESSING, "preprocessing")
    arrays = {k: _as_array(v, k) for k, v in
              dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test).items()}
    if class_names is not None:
        arrays["class_names"] = np.asarray(class_names, dtype=str)
    digest = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        digest.update(f"{k}{a.dtype.str}{a.shape}".encode())
        digest.update(a.tobytes())
    digest = digest.hexdigest()
    key = ("arrays", digest, name, seed, preprocessing)
    return cached_record(key, lambda: _arrays_record(arrays, "arrays in memory", digest, name, seed, preprocessing))


def _as_array(v, key: str) -> np.ndarray:
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().numpy()
    if isinstance(v, np.ndarray):
        return v
    raise _npz_error(f"{key} is a {type(v).__name__}", "give numpy arrays or torch tensors")


_PREPROCESSING_WORDS = {"as-given": "inputs as given (no preprocessing)", "scale": "uint8 inputs scaled to [0, 1]",
                        "standardize": "standardised with train statistics"}


def _npz_record(stream: BinaryIO, label: str, digest: str, name: str, seed: int, preprocessing: str) -> DataRecord:
    return _arrays_record(_read_npz_arrays(stream), label, digest, name, seed, preprocessing)


def _arrays_record(arrays: dict, label: str, digest: str, name: str, seed: int, preprocessing: str) -> DataRecord:
    xs = {which: _check_inputs(arrays[which], which) for which in ("x_train", "x_test")}
    x_train, x_test = xs["x_train"], xs["x_test"]
    if x_train.shape[1:] != x_test.shape[1:]:
        raise _npz_error(f"x_train points are shaped {arrays['x_train'].shape[1:]} but x_test points "
                         f"{arrays['x_test'].shape[1:]}; both must have the same shape")
    y_train = _check_labels(arrays["y_train"], "y_train", x_train.shape[0])
    y_test = _check_labels(arrays["y_test"], "y_test", x_test.shape[0])
    if x_train.shape[0] < NPZ_MIN_TRAIN or x_test.shape[0] < NPZ_MIN_TEST:
        raise _npz_error(f"too few points ({x_train.shape[0]} train, {x_test.shape[0]} test); "
                         f"need at least {NPZ_MIN_TRAIN} train and {NPZ_MIN_TEST} test points")
    k = int(max(y_train.max(), y_test.max())) + 1  # at most NPZ_MAX_CLASSES: _check_labels
    if k > 2 and not (y_train == 0).any() and not (y_test == 0).any() and (y_train == 1).any():
        # labels 1..K: class 0 would be a class with no example, and a K-output model would be told it has one
        # output too few (the mismatch named the model, not the labels)
        raise _npz_error(f"the labels run from 1 to {k - 1}, so class 0 has no example",
                         "number the classes from 0: y_train - 1 and y_test - 1")
    class_names = _class_names(arrays.get("class_names"), k)
    if len(np.unique(y_train)) < 2:
        raise _npz_error("y_train holds a single class; a classifier needs at least 2")
    image = x_train.ndim == 4
    if preprocessing == "standardize":
        _check_not_constant(x_train, image)

    n = x_train.shape[0]
    n_pool = min(1000, max(2, int(round(0.1 * n))))
    tr, po, _ = stratified_split(y_train, n_pool, 0, np.random.default_rng(seed))
    scale, mean, std = _preprocessing_stats(preprocessing, x_train, x_test, image, tr)
    rec = build_record(
        name, x_train, y_train, (tr, po, np.arange(0)), class_names=class_names, mean=mean, std=std,
        scale=scale, seed=seed, x_test=x_test, y_test=y_test,
        key=f"npz:{digest[:16]}?name={name}&seed={seed}&pre={preprocessing}",
        source=f"user file {label} (sha256 {digest[:12]}); S-pool: stratified {n_pool} of x_train "
        f"(seed {seed}); {_PREPROCESSING_WORDS[preprocessing]}",
        preprocessing=preprocessing,
    )
    _check_normalised(rec)
    return rec


def _preprocessing_stats(preprocessing: str, x_train: np.ndarray, x_test: np.ndarray, image: bool,
                         rows: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(scale, mean, std) that turn stored inputs into the network's: x * scale - mean, divided by std."""
    uint8 = x_train.dtype == np.uint8 and x_test.dtype == np.uint8
    if preprocessing == "standardize":
        scale = 1 / 255 if uint8 else 1.0
        mean, std = train_stats(x_train, scale, image, rows=rows)
        return scale, mean, std
    if preprocessing == "scale" and not uint8:
        raise UploadError(f"preprocessing 'scale' divides uint8 inputs by 255, but x_train is {x_train.dtype} and "
                          f"x_test {x_test.dtype}",
                          "choose 'as-given' (the values as stored) or 'standardize' (train mean and std)")
    shape = (x_train.shape[1],) if image else x_train.shape[1:]
    return (1 / 255 if preprocessing == "scale" else 1.0), np.zeros(shape), np.ones(shape)


def _check_inputs(x: np.ndarray, which: str) -> np.ndarray:
    """x_train or x_test checked (numbers, finite, within float32, not empty) and channels first."""
    if x.dtype.kind not in "iuf":
        raise _npz_error(f"{which} has dtype {x.dtype}: inputs must be numbers (use {which}.astype(np.float32))")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise _npz_error(f"{which} contains {bad} NaN or infinite value(s); remove or impute them")
    _check_magnitude(x, which)
    x = _channels_first(x, which)
    if 0 in x.shape[1:]:
        raise _npz_error(f"{which} has shape {x.shape}: each point must hold at least one value")
    return x


def _check_magnitude(x: np.ndarray, which: str) -> None:
    """float64 inputs beyond float32's range would become inf, and then NaN once normalised."""
    if x.dtype.kind != "f" or x.dtype.itemsize <= 4 or not x.size:
        return
    peak = max(float(x.max()), -float(x.min()))  # two passes, no |x| copy
    if peak > _FLOAT32_MAX:
        raise DegenerateData(f"{which} holds values as large as {peak:.3g} in magnitude, beyond what float32 "
                             "(the networks' number type) can hold; normalised, they would be NaN or infinite",
                             _RESCALE_FIX)


def _class_names(cn: np.ndarray | None, k: int) -> tuple[str, ...]:
    if cn is None:
        return tuple(str(i) for i in range(k))
    if cn.dtype.kind not in "US" or cn.ndim != 1:
        raise _npz_error("class_names must be a 1-D array of strings, e.g. np.array(['cat', 'dog'])")
    if len(cn) > NPZ_MAX_CLASSES:
        raise _npz_error(f"class_names has {len(cn)} names; at most {NPZ_MAX_CLASSES} classes are supported")
    if len(cn) < k:
        raise _npz_error(f"labels go up to {k - 1} but class_names has only {len(cn)} names; "
                         f"labels must lie in 0..{len(cn) - 1}")
    return tuple(c.decode("utf-8", "replace") if isinstance(c, bytes) else str(c) for c in cn.tolist())


def _check_not_constant(x: np.ndarray, image: bool) -> None:
    """Refuse x_train whose every feature (or channel) holds one value: normalised, every input
    would be 0, so nothing could be learned and SiPP's S would be all zero."""
    axes = (0, 2, 3) if image else 0
    if np.array_equal(x.max(axis=axes), x.min(axis=axes)):
        what = "channel" if image else "feature"
        raise DegenerateData(f"x_train is constant: every {what} has the same value at every training point, so "
                             "after normalisation every input is 0 and there is nothing to learn or prune",
                             "check that the file holds the real inputs (not a placeholder array)")


def _check_normalised(rec: DataRecord) -> None:
    """Normalised inputs must be finite: the train mean/std can overflow float32 arithmetic even when
    every value fits, and the engine would then blame the model for NaN outputs."""
    for which, x in (("x_train", rec.x_train), ("x_train", rec.x_pool), ("x_test", rec.x_test)):
        # in chunks: torch.isfinite of a whole split allocates more than the split itself
        if not all(bool(torch.isfinite(x[i : i + CHUNK_ROWS]).all()) for i in range(0, len(x), CHUNK_ROWS)):
            raise DegenerateData(f"{which} holds values too large for float32 arithmetic: normalised with the "
                                 f"train split's mean and std, {which} becomes NaN or infinite", _RESCALE_FIX)
