"""Fault suite, storage: damaged checkpoints (cached and shipped), a read-only or full cache, and a
damaged run history (one row, or the whole file while the app runs).

Tests run as root, and root writes through chmod-based read-only folders; so a read-only folder or a
full disk is simulated by monkeypatching the calls that write (``tempfile.mkstemp``, ``os.replace``,
``torch.save``) to raise ``OSError(EROFS)`` / ``OSError(ENOSPC)`` for paths inside the folder.
"""
from __future__ import annotations

import errno
import os
import re
import sqlite3
import sys
import tempfile
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from faults import fault

from sipp_core.errors import CheckpointError, SippError, StorageError
from sipp_core.io import checkpoints
from sipp_core.io.checkpoints import (
    FORMAT,
    checkpoint_name,
    load_trained,
    read_checkpoint,
    read_manifest,
    save_checkpoint,
    write_manifest,
)
from sipp_core.jobs.history import HistoryError, RunHistory
from sipp_core.zoo.models import build_model

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the app's `ui` package, for the page tests

EPOCHS, SEED = 1, 1  # mlp on moons, one epoch: trains in well under a second
NAME = checkpoint_name("mlp", "moons", EPOCHS, SEED)
IDENT = dict(name="mlp", dataset="moons", epochs=EPOCHS, seed=SEED)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty checkpoint cache (SIPP_CACHE_DIR) and one torch thread (a busy 2-core machine)."""
    monkeypatch.setenv("SIPP_CACHE_DIR", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path / "cache" / "checkpoints"
    torch.set_num_threads(threads)


def _tiny(**kw):
    return load_trained("mlp", "moons", epochs=EPOCHS, seed=SEED, **kw)


def _cached(cache) -> Path:
    """Train mlp/moons into the cache; its checkpoint file."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean cache: no warning expected here
        assert _tiny().source == "trained"
    return cache / NAME


def _net():
    return build_model("mlp", (2,), 2, seed=SEED)


def _flip_byte_in_tensor(path: Path, tensor: torch.Tensor) -> None:
    """Flip the lowest bit of one float32's lowest byte inside `tensor`'s data in the file: the value
    stays finite and close (torch stores tensors uncompressed and does not check the zip's CRC)."""
    raw = bytearray(path.read_bytes())
    data = tensor.detach().contiguous().numpy().tobytes()
    start = raw.find(data)
    assert start > 0 and raw.find(data, start + 1) < 0, "tensor bytes not found once in the file"
    raw[start + 4 * (tensor.numel() // 2)] ^= 0x01
    path.write_bytes(bytes(raw))


def _refuse_writes(monkeypatch, folder: Path, code: int) -> None:
    """Make writes into `folder` fail as a read-only (EROFS) or full (ENOSPC) disk would: creating the
    temporary file and renaming into the folder raise OSError(code). chmod would not stop root."""
    real_mkstemp, real_replace = tempfile.mkstemp, os.replace
    folder = str(folder)

    def inside(p) -> bool:
        return p is not None and os.path.abspath(str(p)).startswith(folder)

    def mkstemp(*args, dir=None, **kwargs):
        if inside(dir):
            raise OSError(code, os.strerror(code), str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    def replace(src, dst, *args, **kwargs):
        if inside(src) or inside(dst):
            raise OSError(code, os.strerror(code), str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(os, "replace", replace)


def _corrupt_files(cache) -> list[Path]:
    return sorted(cache.glob(NAME + ".*.corrupt"))


# ---- cached checkpoints ------------------------------------------------------------------------------

@fault("truncated cached checkpoint", surface="library", outcome="recovered")
def test_truncated_cached_checkpoint_is_set_aside_and_rebuilt(cache):
    path = _cached(cache)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.warns(RuntimeWarning, match="rejected.*kept for inspection"):
        got = _tiny()
    assert got.source == "trained"
    (aside,) = _corrupt_files(cache)
    assert aside.read_bytes() == whole[: len(whole) // 2]  # kept byte for byte, not deleted
    assert read_checkpoint(path, _net(), **IDENT) == got.test_accuracy  # the rebuilt file is sound


@fault("foreign cached checkpoint (describes another model)", surface="library", outcome="recovered")
def test_foreign_cached_checkpoint_is_rejected_and_rebuilt(cache):
    other = load_trained("mlp", "moons", epochs=EPOCHS, seed=SEED + 1)  # a sound file for another seed
    path = cache / NAME
    path.write_bytes(Path(other.path).read_bytes())
    with pytest.warns(RuntimeWarning, match="describes"):
        got = _tiny()
    assert got.source == "trained" and len(_corrupt_files(cache)) == 1


@fault("NaN weights in a cached checkpoint", surface="library", outcome="recovered")
def test_nan_weights_in_cached_checkpoint_are_rejected(cache):
    net = _net()
    with torch.no_grad():
        net[1].weight[0, 0] = float("nan")
    save_checkpoint(cache / NAME, net, input_shape=(2,), num_classes=2, test_accuracy=0.5, **IDENT)
    with pytest.warns(RuntimeWarning, match="NaN"):
        got = _tiny()
    assert got.source == "trained"
    assert all(torch.isfinite(v).all() for v in got.model.state_dict().values())


@fault("bit flip in a cached checkpoint's tensor data", surface="library", outcome="recovered")
def test_bit_flip_in_cached_checkpoint_is_detected(cache):
    path = _cached(cache)
    good = _tiny()
    assert good.source == "cache"
    _flip_byte_in_tensor(path, good.model.state_dict()["fc2.weight"])
    # torch itself loads the flipped file without complaint: only the stored digest can tell.
    flipped = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]["fc2.weight"]
    assert not torch.equal(flipped, good.model.state_dict()["fc2.weight"]) and torch.isfinite(flipped).all()
    with pytest.raises(CheckpointError, match="sha256"):
        read_checkpoint(path, _net(), **IDENT)
    with pytest.warns(RuntimeWarning, match="sha256"):
        got = _tiny()
    assert got.source == "trained" and len(_corrupt_files(cache)) == 1
    assert torch.equal(got.model.state_dict()["fc2.weight"], good.model.state_dict()["fc2.weight"])  # seeded rebuild


@fault("second corruption of a cached checkpoint", surface="library", outcome="recovered")
def test_second_corruption_keeps_the_first_corrupt_file(cache):
    path = cache / NAME
    path.parent.mkdir(parents=True)
    for i, junk in enumerate((b"first damaged copy", b"second damaged copy")):
        path.write_bytes(junk)
        with pytest.warns(RuntimeWarning, match="rejected"):
            assert _tiny().source == "trained"
        assert len(_corrupt_files(cache)) == i + 1  # the same second gets a counter, never an overwrite
    assert {p.read_bytes() for p in _corrupt_files(cache)} == {b"first damaged copy", b"second damaged copy"}
    names = [p.name[len(NAME) + 1:] for p in _corrupt_files(cache)]  # <UTC time>[-n].corrupt
    assert all(re.fullmatch(r"\d{8}T\d{6}Z(-\d+)?\.corrupt", n) for n in names), names


@fault("cached checkpoint written before digests", surface="library", outcome="recovered")
def test_checkpoint_without_digest_is_loaded_and_given_one(cache):
    net = _net()
    payload = dict(format=FORMAT, model="mlp", dataset="moons", epochs=EPOCHS, seed=SEED, input_shape=[2],
                   num_classes=2, test_accuracy=0.5, state_dict=net.state_dict())  # the old layout, no sha256
    cache.mkdir(parents=True)
    torch.save(payload, cache / NAME)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = _tiny()
    assert got.source == "cache" and got.test_accuracy == 0.5
    assert "sha256" in torch.load(cache / NAME, weights_only=True)  # upgraded, so later damage is caught


@pytest.mark.parametrize("content", [
    pytest.param(kind, marks=fault(f"unreadable checkpoint ({kind}): no unsafe-loading advice", surface="library",
                                   outcome="clear error"))
    for kind in ("junk", "hostile pickle", "truncated")])
def test_load_errors_never_suggest_unsafe_loading(tmp_path, content):
    path = tmp_path / NAME
    if content == "junk":
        path.write_bytes(b"\x80\x04 this is not a checkpoint")
    elif content == "hostile pickle":
        class Boom:
            def __reduce__(self):
                return (exec, ("raise SystemExit('executed')",))

        torch.save({"format": FORMAT, "payload": Boom()}, path)
    else:
        torch.save({"format": FORMAT, "state_dict": _net().state_dict()}, path)
        path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path, _net(), **IDENT)
    text = str(info.value)
    assert "could not be read" in text and info.value.fix
    assert "weights_only" not in text and "add_safe_globals" not in text and "trust" not in text.lower()


# ---- a read-only or full cache -----------------------------------------------------------------------

@fault("read-only checkpoint cache", surface="library", outcome="recovered")
def test_read_only_cache_keeps_the_trained_model(cache, monkeypatch):
    _refuse_writes(monkeypatch, cache.parent, errno.EROFS)
    with pytest.warns(RuntimeWarning, match=r"not saved to the checkpoint cache.*SIPP_CACHE_DIR"):
        got = _tiny()
    assert got.source == "trained" and got.path == "" and 0.0 <= got.test_accuracy <= 1.0
    assert not got.model.training
    assert not list(cache.glob("*"))  # nothing written, no temporary file left


@fault("full disk while caching a checkpoint", surface="library", outcome="recovered")
def test_full_disk_while_caching_keeps_the_model_and_leaves_no_temp_file(cache, monkeypatch):
    def save_half(obj, fh, *args, **kwargs):
        fh.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # the disk filled up mid-write

    monkeypatch.setattr(checkpoints.torch, "save", save_half)
    with pytest.warns(RuntimeWarning, match="disk is full"):
        got = _tiny()
    assert got.source == "trained" and got.path == ""
    assert not list(cache.glob("*"))  # the half-written temporary file was removed


@fault("full disk while caching, as torch reports it (RuntimeError)", surface="library", outcome="recovered")
def test_torchs_own_write_failure_is_a_storage_failure_too(cache, monkeypatch):
    """On a full disk torch.save raises RuntimeError ("unexpected pos 1408 vs 1302"), not OSError: the model is
    kept and used with the cache warning, as for any full disk (it used to stop prune with 'this is a bug')."""
    def save_half(obj, fh, *args, **kwargs):
        fh.write(b"PK\x03\x04 half a checkpoint")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1408 vs 1302")

    monkeypatch.setattr(checkpoints.torch, "save", save_half)
    monkeypatch.setattr(checkpoints.shutil, "disk_usage", lambda p: SimpleNamespace(free=300 * 1024))
    with pytest.warns(RuntimeWarning, match="disk is full"):
        got = _tiny()
    assert got.source == "trained" and not list(cache.glob("*"))
    monkeypatch.setattr(checkpoints.shutil, "disk_usage", lambda p: SimpleNamespace(free=2**40))
    with pytest.warns(RuntimeWarning, match=r"torch could not write it \(.*unexpected pos 1408 vs 1302\); the disk "
                                            "may be full"):
        _tiny()


@fault("corrupt checkpoint in a read-only cache", surface="library", outcome="recovered")
def test_corrupt_checkpoint_in_read_only_cache_is_rebuilt_in_memory(cache, monkeypatch):
    path = cache / NAME
    path.parent.mkdir(parents=True)
    path.write_bytes(b"damaged")
    _refuse_writes(monkeypatch, cache.parent, errno.EROFS)
    with pytest.warns(RuntimeWarning) as record:
        got = _tiny()
    messages = [str(w.message) for w in record]
    assert any("could not be set aside" in m and "SIPP_CACHE_DIR" in m for m in messages), messages
    assert any("not saved to the checkpoint cache" in m for m in messages), messages
    assert got.source == "trained"
    assert path.read_bytes() == b"damaged"  # left in place: the folder refused every change


@fault("save a checkpoint into a read-only folder", surface="library", outcome="clear error")
def test_save_checkpoint_to_read_only_folder_raises_storage_error(tmp_path, monkeypatch):
    _refuse_writes(monkeypatch, tmp_path, errno.EROFS)
    with pytest.raises(StorageError) as info:
        save_checkpoint(tmp_path / NAME, _net(), input_shape=(2,), num_classes=2, test_accuracy=0.5, **IDENT)
    err = info.value
    assert isinstance(err, OSError) and isinstance(err, SippError) and err.errno == errno.EROFS
    assert "read-only" in err.problem and "writable" in err.fix


# ---- shipped checkpoints -----------------------------------------------------------------------------

@pytest.fixture
def shipped(tmp_path, monkeypatch, cache):
    """A stand-in assets/checkpoints folder holding mlp/moons with its SHA256SUMS (the real assets are
    never touched)."""
    folder = tmp_path / "assets" / "checkpoints"
    folder.mkdir(parents=True)
    net = _net()
    save_checkpoint(folder / NAME, net, input_shape=(2,), num_classes=2, test_accuracy=0.75, **IDENT)
    write_manifest(folder)
    monkeypatch.setattr(checkpoints, "ASSETS_DIR", folder)
    return folder / NAME


def test_real_manifest_lists_every_shipped_checkpoint():
    listed = read_manifest()
    assert sorted(listed) == sorted(p.name for p in checkpoints.ASSETS_DIR.glob("*.pt"))
    for name, digest in listed.items():
        assert checkpoints.file_sha256(checkpoints.ASSETS_DIR / name) == digest


@fault("tampered shipped checkpoint (bit flip)", surface="library", outcome="recovered")
def test_tampered_shipped_checkpoint_is_refused_not_loaded(shipped, cache):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        good = _tiny()
    assert good.source == "shipped" and good.test_accuracy == 0.75
    _flip_byte_in_tensor(shipped, good.model.state_dict()["fc2.weight"])
    flipped = shipped.read_bytes()
    with pytest.warns(RuntimeWarning, match=rf"{NAME}.*refused.*git checkout assets/checkpoints"):
        got = _tiny()
    assert got.source == "trained" and got.test_accuracy != 0.75  # trained, never the tampered weights
    assert shipped.read_bytes() == flipped and not list(shipped.parent.glob("*.corrupt"))  # assets untouched
    with pytest.warns(RuntimeWarning, match="refused"):
        assert _tiny().source == "cache"  # next time: still refused, the cache serves it


@fault("shipped checkpoint missing from SHA256SUMS", surface="library", outcome="recovered")
def test_shipped_checkpoint_not_in_manifest_is_refused(shipped, cache):
    (shipped.parent / "SHA256SUMS").write_text("")
    with pytest.warns(RuntimeWarning, match="not listed in .*SHA256SUMS"):
        got = _tiny()
    assert got.source == "trained"
    with pytest.raises(FileNotFoundError):  # refused like a missing file: no training when not allowed
        load_trained("mlp", "moons", epochs=EPOCHS, seed=SEED + 5, allow_training=False)


# ---- the run history ---------------------------------------------------------------------------------

def _runs(h: RunHistory, n: int) -> list[int]:
    return [h.add("prune", dict(model="mlp", dataset="moons", method="wt", keep_ratio=0.1 * (i + 1), seed=i),
                  dict(accuracy_after=0.8, keep_ratio=0.1 * (i + 1)), dict(total=0.1)) for i in range(n)]


def _damage_row(path: Path, run_id: int, results: str = '{"accuracy_after": 0.8') -> None:
    con = sqlite3.connect(path)
    con.execute("UPDATE runs SET results = ? WHERE id = ?", (results, run_id))
    con.commit()
    con.close()


@fault("damaged JSON row in the run history", surface="library", outcome="recovered")
def test_damaged_history_rows_are_skipped_and_set_aside(tmp_path):
    path = tmp_path / "runs.sqlite"
    h = RunHistory(path)
    a, b, c, d = _runs(h, 4)
    _damage_row(path, b)
    _damage_row(path, c, "[1, 2]")  # valid JSON, but not the object a run's results are
    with pytest.warns(RuntimeWarning, match=r"2 damaged run\(s\)"):
        runs = h.list(limit=2)
    assert [r.id for r in runs] == [d, a]  # the good rows, and a limited listing is still full
    assert h.damaged_ids == [b, c] and "damaged_runs" in h.damaged_message
    assert h.damaged_count() == 2 and h.count() == 2
    with sqlite3.connect(path) as con:  # kept, with the reason, not deleted
        kept = dict(con.execute("SELECT id, results FROM damaged_runs").fetchall())
    assert kept == {b: '{"accuracy_after": 0.8', c: "[1, 2]"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        e = _runs(h, 1)[0]
        assert [r.id for r in RunHistory(path).list()] == [e, d, a]  # new runs are shown, the rest readable
    _damage_row(path, a)
    with pytest.warns(RuntimeWarning, match="damaged"), pytest.raises(KeyError, match="damaged"):
        h.get(a)


@fault("run history corrupted while in use", surface="library", outcome="recovered")
def test_history_corrupted_while_in_use_is_set_aside_and_restarted(tmp_path):
    path = tmp_path / "runs.sqlite"
    h = RunHistory(path)
    _runs(h, 2)
    garbage = b"overwritten while the app runs " * 200
    path.write_bytes(garbage)
    with pytest.warns(RuntimeWarning, match="could not be read.*moved to runs.sqlite.corrupt-"):
        rid = _runs(h, 1)[0]  # the write goes to a fresh file instead of failing
    assert h.recovered_from is not None and h.recovered_from.read_bytes() == garbage
    assert [r.id for r in h.list()] == [rid]


@fault("unopenable history database", surface="library", outcome="recovered")
def test_unopenable_history_database_is_set_aside(tmp_path):
    path = tmp_path / "runs.sqlite"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 5000)
    with pytest.warns(RuntimeWarning, match="not deleted"):
        h = RunHistory(path)
    assert h.recovered_from.name.startswith("runs.sqlite.corrupt-") and h.count() == 0
    assert h.get(_runs(h, 1)[0]).kind == "prune"


@fault("damaged history that cannot be moved aside", surface="library", outcome="clear error")
def test_history_that_cannot_be_set_aside_is_a_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "runs.sqlite"
    path.write_bytes(b"not a database " * 100)
    _refuse_writes(monkeypatch, tmp_path, errno.EROFS)
    with pytest.raises(HistoryError) as info:
        RunHistory(path)
    assert isinstance(info.value, SippError) and "SIPP_DATA_HOME" in info.value.fix
    assert "could not be moved aside" in info.value.problem


# ---- the Run history page ----------------------------------------------------------------------------

def _history_page():
    from ui.views.history import render

    render()


def _page(monkeypatch, folder: Path):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SIPP_DATA_HOME", str(folder))  # a fresh path: the page's cached history is its own
    return AppTest.from_function(_history_page, default_timeout=60)


def _texts(elements) -> list[str]:
    return [e.value for e in elements]


@fault("damaged run-history row (Run history page)", surface="app", outcome="recovered")
def test_history_page_shows_good_rows_and_reports_damaged_ones(tmp_path, monkeypatch):
    path = tmp_path / "runs.sqlite"
    h = RunHistory(path)
    a, b, c = _runs(h, 3)
    _damage_row(path, b)
    at = _page(monkeypatch, tmp_path)
    with pytest.warns(RuntimeWarning, match="damaged"):
        at.run()
    assert not at.exception and not at.error, _texts(at.error)
    assert sorted(at.dataframe[0].value["id"]) == [a, c]
    assert any("1 damaged run(s)" in w and "damaged_runs" in w for w in _texts(at.warning)), _texts(at.warning)
    d = _runs(RunHistory(path), 1)[0]
    at.run()  # a reload: still readable, and the new run is shown
    assert not at.error and sorted(at.dataframe[0].value["id"]) == [a, c, d]


@fault("run history corrupted while the app runs (Run history page)", surface="app", outcome="recovered")
def test_history_page_reports_a_file_corrupted_after_first_render(tmp_path, monkeypatch):
    path = tmp_path / "runs.sqlite"
    _runs(RunHistory(path), 2)
    at = _page(monkeypatch, tmp_path)
    at.run()
    assert not at.exception and not at.warning and len(at.dataframe[0].value) == 2
    path.write_bytes(b"garbage written over the history " * 200)
    with pytest.warns(RuntimeWarning, match="could not be read"):
        at.run()
    assert not at.exception
    warned = " ".join(_texts(at.warning))
    assert "could not be read" in warned and "runs.sqlite.corrupt-" in warned, warned
    assert "fresh history file" in warned and str(path) in warned, warned
    assert any(tmp_path.glob("runs.sqlite.corrupt-*"))
    assert not any(i.startswith("No runs yet") for i in _texts(at.info))  # never an unexplained empty history
