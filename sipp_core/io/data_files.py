"""Readers and downloads for the data sets that live in files (MNIST, Fashion-MNIST, CIFAR-10).

The files use the layout torchvision's own dataset classes write, so a folder
filled by torchvision (or by hand) works as is::

    <data_dir>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    <data_dir>/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    <data_dir>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}

The readers are our own (IDX, gzipped or not; CIFAR-10 python batches through
a restricted unpickler), so they can be tested on tiny files and never run
arbitrary pickled code. torchvision is used only for the download step, in
:func:`_torchvision_fetch`, the one function here that touches the network;
any failure there becomes a :class:`DatasetUnavailableError` that names the
folder, the files expected and the offline alternative ``mnist5k``.

``<data_dir>`` is, in order: the ``data_dir`` argument, the environment
variable ``SIPP_DATA_DIR``, or ``sipp-studio/data`` under the user's cache
folder (``$XDG_CACHE_HOME`` or ``~/.cache``; ``%LOCALAPPDATA%`` on Windows).
"""
from __future__ import annotations

import codecs
import gzip
import importlib
import os
import pickle
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import DataUnavailable

__all__ = [
    "DATA_DIR_ENV",
    "DatasetUnavailableError",
    "FILE_DATASETS",
    "RawSplits",
    "default_data_dir",
    "expected_files",
    "load_raw",
    "missing_files",
    "read_cifar_batch",
    "read_cifar_meta",
    "read_idx",
    "resolve_data_dir",
    "restricted_unpickle",
]

DATA_DIR_ENV = "SIPP_DATA_DIR"

# A hostile or truncated header must not make us allocate gigabytes.
_MAX_IDX_ELEMENTS = 400_000_000
_MAX_PICKLE_BYTES = 512 * 1024 * 1024


class DatasetUnavailableError(DataUnavailable):
    """A file-backed data set is neither on disk nor downloadable right now.

    The message names the folder searched, the files expected there, and the
    offline data set (``mnist5k``) to use instead.
    """


# ---------------------------------------------------------------------------
# Where the files live


def default_data_dir() -> Path:
    """``$SIPP_DATA_DIR`` if set, else ``sipp-studio/data`` under the user's cache folder."""
    env = os.environ.get(DATA_DIR_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        base = Path(os.environ["LOCALAPPDATA"])
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
        base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "sipp-studio" / "data"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder file-backed data sets are read from (argument > SIPP_DATA_DIR > cache folder)."""
    if data_dir is None:
        return default_data_dir()
    if not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"data_dir must be a str or os.PathLike, got {type(data_dir).__name__}")
    return Path(data_dir).expanduser()


@dataclass(frozen=True)
class _FileSet:
    folder: str  # relative to data_dir, exactly as torchvision writes it
    files: tuple[str, ...]
    kind: str  # "idx" or "cifar"
    torchvision_class: str
    class_names: tuple[str, ...]


_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)

FILE_DATASETS: dict[str, _FileSet] = {
    "mnist": _FileSet(
        folder="MNIST/raw",
        files=_MNIST_FILES,
        kind="idx",
        torchvision_class="MNIST",
        class_names=tuple(str(d) for d in range(10)),
    ),
    "fashion-mnist": _FileSet(
        folder="FashionMNIST/raw",
        files=_MNIST_FILES,
        kind="idx",
        torchvision_class="FashionMNIST",
        class_names=(
            "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
        ),
    ),
    "cifar10": _FileSet(
        folder="cifar-10-batches-py",
        files=tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta"),
        kind="cifar",
        torchvision_class="CIFAR10",
        class_names=_CIFAR10_CLASSES,
    ),
}


def _fileset(name: str) -> _FileSet:
    try:
        return FILE_DATASETS[name]
    except KeyError:
        raise ValueError(
            f"{name!r} is not a file-backed data set; choose one of {', '.join(FILE_DATASETS)}"
        ) from None


def _find(folder: Path, filename: str, kind: str) -> Path | None:
    """The file itself, or for IDX files its gzipped twin."""
    candidates = [filename, filename + ".gz"] if kind == "idx" else [filename]
    for cand in candidates:
        p = folder / cand
        if p.is_file():
            return p
    return None


def expected_files(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The paths ``name`` is read from (IDX files may also be gzipped: ``<path>.gz``)."""
    fs = _fileset(name)
    folder = resolve_data_dir(data_dir) / fs.folder
    return [folder / f for f in fs.files]


def missing_files(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The expected files that are not on disk (neither plain nor gzipped)."""
    fs = _fileset(name)
    folder = resolve_data_dir(data_dir) / fs.folder
    return [folder / f for f in fs.files if _find(folder, f, fs.kind) is None]


# ---------------------------------------------------------------------------
# IDX (the MNIST file format)

# IDX type byte -> big-endian numpy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_exact(f: BinaryIO, n: int, path: Path, what: str) -> bytes:
    buf = f.read(n)
    if len(buf) != n:
        raise ValueError(f"{path}: truncated IDX file ({what}: expected {n} bytes, found {len(buf)})")
    return buf


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzipped or not; told apart by content, not name).

    Returns:
        A native-endian numpy array with the shape stored in the header.

    Raises:
        ValueError: the file is not IDX, is truncated, or has trailing bytes.
    """
    path = Path(path)
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
    opener = gzip.open if gz else open
    try:
        with opener(path, "rb") as f:
            magic = _read_exact(f, 4, path, "header")
            if magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_DTYPES or not 1 <= magic[3] <= 4:
                raise ValueError(f"{path}: not an IDX file (bad magic number {magic.hex()})")
            dtype = _IDX_DTYPES[magic[2]]
            ndim = magic[3]
            shape = tuple(int(d) for d in np.frombuffer(_read_exact(f, 4 * ndim, path, "dimensions"), ">u4"))
            count = int(np.prod(shape, dtype=np.int64))
            if count > _MAX_IDX_ELEMENTS:
                raise ValueError(f"{path}: IDX header claims {count} elements; refusing to read that many")
            data = _read_exact(f, count * dtype.itemsize, path, "data")
            if f.read(1):
                raise ValueError(f"{path}: IDX file has bytes after the {shape} array its header describes")
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ValueError(f"{path}: cannot read IDX file ({exc})") from exc
    return np.frombuffer(data, dtype=dtype).astype(dtype.newbyteorder("="), copy=True).reshape(shape)


# ---------------------------------------------------------------------------
# CIFAR-10 python batches, unpickled without running arbitrary code


def _np_global(module: str, name: str) -> Any:
    # numpy 2 moved numpy.core to numpy._core; resolve both spellings without
    # touching the deprecated alias (which warns).

    for mod in (module.replace("numpy.core", "numpy._core"), module.replace("numpy._core", "numpy.core")):
        try:
            return getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"cannot resolve {module}.{name}")


# Exactly what a CIFAR batch (Python 2 cPickle, or a numpy array pickled by
# Python 3) needs: rebuilding ndarrays and dtypes. Nothing that calls out.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol-2 pickles from Python 3 spell bytes
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: only numpy arrays, lists, dicts, "
                "numbers and strings are allowed in a data file"
            )
        if module == "_codecs":
            return codecs.encode
        if module == "numpy":
            return getattr(np, name)
        return _np_global(module, name)


def restricted_unpickle(f: BinaryIO) -> Any:
    """Unpickle with only builtins and numpy array reconstruction allowed.

    ``encoding="latin1"`` is what Python-2 pickles of numpy arrays need (as in
    torchvision); Python-2 ``str`` keys then come back as ``str``.
    """
    return _RestrictedUnpickler(f, encoding="latin1").load()


def _load_pickle_file(path: Path) -> Any:
    size = path.stat().st_size
    if size > _MAX_PICKLE_BYTES:
        raise ValueError(f"{path}: {size} bytes is too large for a CIFAR batch")
    try:
        with open(path, "rb") as f:
            return restricted_unpickle(f)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise ValueError(f"{path}: not a readable CIFAR python batch ({exc})") from exc


def _key(d: dict, key: str, path: Path) -> Any:
    for k in (key, key.encode("latin1")):
        if k in d:
            return d[k]
    raise ValueError(f"{path}: CIFAR batch has no {key!r} entry (found {sorted(map(str, d))})")


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch.

    Returns:
        (images uint8 (N, 3, 32, 32), labels int64 (N,)). A batch row holds
        1024 red, then 1024 green, then 1024 blue values, each 32x32 row-major.

    Raises:
        ValueError: the file is not a CIFAR batch, or asks to load anything
        but plain data (see :func:`restricted_unpickle`).
    """
    path = Path(path)
    d = _load_pickle_file(path)
    if not isinstance(d, dict):
        raise ValueError(f"{path}: a CIFAR batch is a dict, found {type(d).__name__}")
    data = _key(d, "data", path)
    labels = _key(d, "labels", path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), found {desc}")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: 'labels' must be a list of integers ({exc})") from exc
    if y.shape != (data.shape[0],):
        raise ValueError(f"{path}: {data.shape[0]} images but labels of shape {y.shape}")
    return data.reshape(-1, 3, 32, 32), y


def read_cifar_meta(path: str | os.PathLike) -> tuple[str, ...]:
    """Class names from ``batches.meta`` (its ``label_names`` list)."""
    path = Path(path)
    d = _load_pickle_file(path)
    if not isinstance(d, dict):
        raise ValueError(f"{path}: batches.meta is a dict, found {type(d).__name__}")
    names = _key(d, "label_names", path)
    out = []
    for n in names:
        if isinstance(n, bytes):
            n = n.decode("utf-8", "replace")
        if not isinstance(n, str):
            raise ValueError(f"{path}: label_names must be strings, found {type(n).__name__}")
        out.append(n)
    return tuple(out)


# ---------------------------------------------------------------------------
# Loading a whole data set (downloading first when allowed)


@dataclass(frozen=True, eq=False)
class RawSplits:
    """Official splits as stored: images uint8 (N, C, H, W), labels int64 (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    folder: Path


def _unavailable(name: str, root: Path, why: str) -> DatasetUnavailableError:
    fs = FILE_DATASETS[name]
    folder = root / fs.folder
    missing = missing_files(name, root)
    listed = "\n".join(f"  {p}" + (" (or .gz)" if fs.kind == "idx" else "") for p in missing)
    return DatasetUnavailableError(
        f"Data set {name!r} is not available: {why}\n"
        f"Looked in the folder {folder} for these files, which are missing:\n{listed}\n"
        f"Fix: connect to the internet and load it again with download=True, copy the files "
        f"into {folder} (the layout torchvision.datasets.{fs.torchvision_class} writes), "
        f"point the environment variable {DATA_DIR_ENV} or data_dir at a folder that has them, "
        f"or use the offline data set 'mnist5k' (5,000 real MNIST digits, no download needed)."
    )


def _torchvision_fetch(name: str, root: Path) -> None:
    """Download ``name`` into ``root`` with torchvision (the only network access here)."""
    import torchvision.datasets as tvd  # late: slow to import and only needed here

    cls = getattr(tvd, FILE_DATASETS[name].torchvision_class)
    # train=False: download() fetches every file either way; loading the
    # smaller test split afterwards keeps the check cheap.
    cls(root=str(root), train=False, download=True)


_download_lock = threading.Lock()


def _ensure_files(name: str, root: Path, download: bool) -> None:
    if not missing_files(name, root):
        return
    if not download:
        raise _unavailable(name, root, "its files are not on disk and download=False.")
    with _download_lock:
        if not missing_files(name, root):  # another thread fetched it meanwhile
            return
        try:
            root.mkdir(parents=True, exist_ok=True)
            _torchvision_fetch(name, root)
        except ImportError as exc:
            raise _unavailable(name, root, f"torchvision is needed to download it ({exc}).") from exc
        except Exception as exc:  # noqa: BLE001 - any network/disk failure means "not available"
            raise _unavailable(
                name, root, f"the download failed ({type(exc).__name__}: {exc}); are you offline?"
            ) from exc
    if missing_files(name, root):
        raise _unavailable(name, root, "the download finished but some files are still missing.")


def _read_idx_set(name: str, folder: Path) -> RawSplits:
    fs = FILE_DATASETS[name]

    def images(fname: str) -> np.ndarray:
        p = _find(folder, fname, "idx")
        x = read_idx(p)
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28):
            raise ValueError(f"{p}: expected uint8 images of shape (N, 28, 28), found {x.dtype} {x.shape}")
        return x[:, None]  # (N, 1, 28, 28)

    def labels(fname: str, n: int) -> np.ndarray:
        p = _find(folder, fname, "idx")
        y = read_idx(p)
        if y.ndim != 1 or y.shape[0] != n:
            raise ValueError(f"{p}: expected {n} labels (one per image), found shape {y.shape}")
        y = y.astype(np.int64)
        if y.size and (y.min() < 0 or y.max() >= len(fs.class_names)):
            raise ValueError(f"{p}: labels must lie in 0..{len(fs.class_names) - 1}")
        return y

    x_train = images("train-images-idx3-ubyte")
    x_test = images("t10k-images-idx3-ubyte")
    return RawSplits(
        x_train=x_train,
        y_train=labels("train-labels-idx1-ubyte", len(x_train)),
        x_test=x_test,
        y_test=labels("t10k-labels-idx1-ubyte", len(x_test)),
        class_names=fs.class_names,
        folder=folder,
    )


def _read_cifar_set(name: str, folder: Path) -> RawSplits:
    fs = FILE_DATASETS[name]
    parts = [read_cifar_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = read_cifar_batch(folder / "test_batch")
    class_names = read_cifar_meta(folder / "batches.meta") or fs.class_names
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    for y, which in ((y_train, "data_batch_*"), (y_test, "test_batch")):
        if y.size and (y.min() < 0 or y.max() >= len(class_names)):
            raise ValueError(f"{folder / which}: labels must lie in 0..{len(class_names) - 1}")
    return RawSplits(x_train, y_train, x_test, y_test, class_names, folder)


def load_raw(name: str, data_dir: str | os.PathLike | None = None, download: bool = True) -> RawSplits:
    """Official train/test arrays of a file-backed data set, downloading them if needed and allowed.

    Raises:
        DatasetUnavailableError: files missing and download disabled or failing.
        ValueError: a file is there but malformed (delete it to download it again).
    """
    fs = _fileset(name)
    root = resolve_data_dir(data_dir)
    _ensure_files(name, root, download)
    folder = root / fs.folder
    try:
        return _read_idx_set(name, folder) if fs.kind == "idx" else _read_cifar_set(name, folder)
    except ValueError as exc:
        raise ValueError(
            f"{exc}\nThe {name!r} files in {folder} look damaged or incomplete: delete that folder "
            f"and load again to download them afresh, or use the offline data set 'mnist5k'."
        ) from exc
