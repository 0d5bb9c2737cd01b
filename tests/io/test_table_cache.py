"""The decoded copies of the packaged data tables (sipp_core.io.table_cache), on tiny gzipped CSVs the tests write:
parsed once, read back unchanged, and a damaged copy or an unwritable cache only costs a parse."""
from __future__ import annotations

import errno
import gzip
import os
from pathlib import Path

import numpy as np
import pytest
from faults import fault

from sipp_core.io import data, table_cache
from sipp_core.io.table_cache import cached_table, copy_prefix

SHAPE = (3, 5)


def copies(source: Path) -> list[Path]:
    folder, prefix = copy_prefix(source)
    return sorted(folder.glob(f"{prefix}-*.npy"))


def _csv(path: Path, table: np.ndarray) -> Path:
    path.write_bytes(gzip.compress("\n".join(",".join(str(v) for v in row) for row in table).encode() + b"\n"))
    return path


@pytest.fixture
def source(tmp_path, monkeypatch):
    monkeypatch.setenv("SIPP_CACHE_DIR", str(tmp_path / "cache"))
    table = np.arange(15, dtype=np.uint8).reshape(SHAPE) * 17
    return _csv(tmp_path / "tiny.csv.gz", table), table


class Parser:
    """np.loadtxt on the source, counting its calls."""

    def __init__(self, path: Path):
        self.path, self.calls = path, 0

    def __call__(self) -> np.ndarray:
        self.calls += 1
        return np.loadtxt(self.path, delimiter=",", dtype=np.uint8)


def test_parsed_once_then_read_from_the_copy(source):
    path, table = source
    parse = Parser(path)
    first = cached_table(path, SHAPE, parse)
    second = cached_table(path, SHAPE, parse)
    assert parse.calls == 1
    np.testing.assert_array_equal(first, table)
    np.testing.assert_array_equal(second, table)
    [copy] = copies(path)
    assert copy.parent == Path(os.environ["SIPP_CACHE_DIR"]) / "tables" and copy.name.startswith("tiny-")
    assert [p.name for p in copy.parent.iterdir()] == [copy.name]  # no temporary file left


def test_a_changed_source_gets_its_own_copy(source, tmp_path):
    path, table = source
    cached_table(path, SHAPE, Parser(path))
    before = copies(path)
    _csv(path, table[::-1])
    assert copies(path) == []  # the old copy is not this CSV's
    np.testing.assert_array_equal(cached_table(path, SHAPE, Parser(path)), table[::-1])
    assert len(copies(path)) == 1 and copies(path) != before


@pytest.mark.parametrize("damage", ["truncated", "other shape", "pickled objects", "not an array", "bit flip"])
@fault("damaged decoded copy of a packaged data table", surface="library", outcome="recovered")
def test_a_damaged_copy_is_parsed_again_and_replaced(source, damage):
    path, table = source
    cached_table(path, SHAPE, Parser(path))
    [copy] = copies(path)
    raw = copy.read_bytes()
    if damage == "truncated":
        copy.write_bytes(raw[:60])
    elif damage == "other shape":
        np.save(copy, table[:2])
    elif damage == "pickled objects":
        np.save(copy, np.array([{"a": 1}] * 15, dtype=object).reshape(SHAPE), allow_pickle=True)
    elif damage == "bit flip":  # a sound file of the right shape, one number changed: only the digest tells
        copy.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    else:
        copy.write_bytes(b"hello")
    parse = Parser(path)
    np.testing.assert_array_equal(cached_table(path, SHAPE, parse), table)
    assert parse.calls == 1
    assert copies(path) == [copy]
    np.testing.assert_array_equal(np.load(copy, allow_pickle=False), table)  # rewritten whole


def _refuse_replace(monkeypatch, code: int):
    def refuse(src, dst):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(table_cache.os, "replace", refuse)


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC])
@fault("read-only or full cache while copying a data table", surface="library", outcome="recovered")
def test_an_unwritable_cache_only_costs_a_parse(source, monkeypatch, code):
    path, table = source
    _refuse_replace(monkeypatch, code)
    parse = Parser(path)
    for _ in range(2):
        np.testing.assert_array_equal(cached_table(path, SHAPE, parse), table)
    assert parse.calls == 2
    tables = copy_prefix(path)[0]
    assert not tables.exists() or not list(tables.iterdir())  # no copy, no temporary file left


def test_a_cache_folder_under_a_file_only_costs_a_parse(source, tmp_path, monkeypatch):
    path, table = source
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("SIPP_CACHE_DIR", str(blocker))
    np.testing.assert_array_equal(cached_table(path, SHAPE, Parser(path)), table)


def test_a_parse_error_reaches_the_caller(source):
    path, _ = source
    path.write_bytes(gzip.compress(b"1,2,x\n"))
    with pytest.raises(ValueError):
        cached_table(path, SHAPE, Parser(path))


def test_mnist5k_comes_from_the_copy_after_the_first_load(tmp_path, monkeypatch):
    monkeypatch.setenv("SIPP_CACHE_DIR", str(tmp_path))
    X, y = data._mnist5k_arrays()
    copies = list((tmp_path / "tables").glob("mnist_5k-*.npy"))
    assert len(copies) == 1
    monkeypatch.setattr(data.np, "loadtxt", lambda *a, **k: pytest.fail("parsed again"))
    X2, y2 = data._mnist5k_arrays()
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)
    assert X2.shape == (5000, 784) and X2.dtype == np.uint8 and y2.dtype == np.int64
