"""RunHistory: round trip, filters, compare, delete, concurrent writers, corrupted files set aside."""
import math
import multiprocessing as mp
import sqlite3
import threading
import warnings

import pytest
import torch

from sipp_core.jobs.history import HistoryError, RunHistory, default_history_path
from sipp_core.jobs.sweeps import SweepResult
from sipp_core.pipeline import evaluate_prune, prepare


def _settings(i=0, method="wt"):
    return dict(model="lenet300", dataset="mnist5k", method=method, keep_ratio=0.1, seed=i)


def test_round_trip_and_versions(tmp_path):
    h = RunHistory(tmp_path / "runs.sqlite")
    rid = h.add("prune", _settings(), dict(accuracy_after=0.9, bound=float("nan"), mask_sum=torch.tensor(3)),
                dict(prune=0.5), label="first")
    r = h.get(rid)
    assert r.kind == "prune" and r.label == "first" and r.model == "lenet300" and r.method == "wt"
    assert r.settings == _settings()
    assert r.results == dict(accuracy_after=0.9, bound=None, mask_sum=3)  # NaN -> null, tensor -> number
    assert r.timings == dict(prune=0.5)
    assert r.versions["torch"] == torch.__version__ and r.versions["python"]
    assert "sipp_core" in r.versions
    # survives a restart: a new object on the same file sees the run
    h2 = RunHistory(tmp_path / "runs.sqlite")
    assert h2.get(rid).results["accuracy_after"] == 0.9
    assert h2.recovered_from is None
    with sqlite3.connect(tmp_path / "runs.sqlite") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_list_filters_frame_compare_delete(tmp_path):
    h = RunHistory(tmp_path / "h.sqlite")
    a = h.add("prune", _settings(0, "wt"), dict(accuracy_after=0.8), {})
    b = h.add("prune", _settings(1, "sipp-hybrid"), dict(accuracy_after=0.7), {})
    c = h.add("sweep", dict(model="lenet5", dataset="mnist5k", methods=["wt", "random"]), dict(rows=[1, 2]), {})
    assert [r.id for r in h.list()] == [c, b, a]  # newest first
    assert [r.id for r in h.list("prune")] == [b, a]
    assert [r.id for r in h.list(model="lenet5")] == [c]
    assert [r.id for r in h.list(method="random")] == [c]  # a sweep matches each of its methods
    assert [r.id for r in h.list(method="wt")] == [c, a]
    assert [r.id for r in h.list(since=h.get(b).created)] == [c, b]
    assert [r.id for r in h.list(text="sipp-hybrid")] == [b]
    assert len(h.list(limit=1)) == 1
    df = h.frame("prune")
    assert list(df["id"]) == [b, a] and "accuracy_after" in df.columns and "keep_ratio" in df.columns
    cmp = h.compare([a, b])
    assert list(cmp.columns) == ["differs", f"#{a} prune", f"#{b} prune"]
    assert cmp.loc["results.accuracy_after", f"#{b} prune"] == 0.7
    assert cmp.loc["settings.method", "differs"] and not cmp.loc["settings.model", "differs"]
    mixed = h.compare([a, c])  # a setting only one run has differs, and a short list reads as text
    assert mixed.loc["settings.methods", "differs"] and mixed.loc["settings.methods", f"#{c} sweep"] == "wt, random"
    assert mixed.index[0].startswith("settings.")
    assert h.delete(a) == 1 and h.delete(a) == 0
    with pytest.raises(KeyError, match=str(a)):
        h.get(a)
    with pytest.raises(KeyError):
        h.compare([a, b])
    assert h.count() == 2 and h.count("sweep") == 1


def test_bad_arguments(tmp_path):
    h = RunHistory(tmp_path / "h.sqlite")
    with pytest.raises(ValueError, match="kind"):
        h.add("bogus", {}, {}, {})
    with pytest.raises(ValueError, match="settings"):
        h.add("prune", [1], {}, {})


def test_default_path_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SIPP_DATA_HOME", str(tmp_path / "data"))
    assert default_history_path() == tmp_path / "data" / "runs.sqlite"
    h = RunHistory()
    assert h.path == tmp_path / "data" / "runs.sqlite" and h.path.exists()


def test_two_threads_lose_nothing(tmp_path):
    path = tmp_path / "runs.sqlite"
    RunHistory(path)
    errors = []

    def writer(tag):
        try:
            h = RunHistory(path)
            for i in range(100):
                h.add("prune", dict(model="m", writer=tag, i=i), dict(x=i), {})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    runs = RunHistory(path).list()
    assert len(runs) == 200
    for tag in ("a", "b"):
        assert sorted(r.settings["i"] for r in runs if r.settings["writer"] == tag) == list(range(100))


def _process_writer(path, tag, n):
    h = RunHistory(path)
    for i in range(n):
        h.add("sweep", dict(model="m", writer=tag, i=i), dict(x=i), {})


def test_two_processes_lose_nothing(tmp_path):
    path = tmp_path / "runs.sqlite"
    RunHistory(path)
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_process_writer, args=(str(path), t, 100)) for t in ("p", "q")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    runs = RunHistory(path).list("sweep")
    assert len(runs) == 200
    assert len({(r.settings["writer"], r.settings["i"]) for r in runs}) == 200


@pytest.mark.parametrize("content", [b"this is not a database at all" * 100, b"SQLite format 3\x00" + b"\xff" * 5000])
def test_corrupted_file_is_set_aside_not_deleted(tmp_path, content):
    path = tmp_path / "runs.sqlite"
    path.write_bytes(content)
    with pytest.warns(RuntimeWarning, match="moved to runs.sqlite.corrupt-"):
        h = RunHistory(path)
    assert h.recovered_from is not None and h.recovered_from.name.startswith("runs.sqlite.corrupt-")
    assert h.recovered_from.read_bytes() == content  # kept byte for byte
    assert "could not be read" in h.recovery_message
    rid = h.add("prune", _settings(), {}, {})  # the fresh database works
    assert h.get(rid).kind == "prune"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert RunHistory(path).recovered_from is None  # and is fine on the next open


def test_damaged_pages_detected(tmp_path):
    path = tmp_path / "runs.sqlite"
    h = RunHistory(path)
    for i in range(100):
        h.add("prune", dict(model="m", i=i, pad="x" * 600), dict(), {})
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    raw = bytearray(path.read_bytes())
    page = 4096
    for off in range(2 * page, min(len(raw), 6 * page)):
        raw[off] = 0xA5  # scribble over b-tree pages
    path.write_bytes(bytes(raw))
    with pytest.warns(RuntimeWarning, match="could not be read"):
        h2 = RunHistory(path)
    assert h2.recovered_from is not None and h2.count() == 0


def test_foreign_sqlite_file_is_set_aside(tmp_path):
    path = tmp_path / "runs.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE other(x)")
    con.commit()
    con.close()
    with pytest.warns(RuntimeWarning, match="not a run history"):
        h = RunHistory(path)
    assert h.recovered_from is not None


def test_nan_never_written_as_invalid_json(tmp_path):
    h = RunHistory(tmp_path / "h.sqlite")
    rid = h.add("prune", dict(eps=float("inf")), dict(v=[1.0, float("nan")], nested=dict(a=math.nan)), {})
    r = h.get(rid)
    assert r.settings["eps"] is None and r.results == dict(v=[1.0, None], nested=dict(a=None))


def test_add_entry_from_engine_records(tmp_path):
    h = RunHistory(tmp_path / "h.sqlite")
    report = evaluate_prune(prepare("lenet300", "mnist5k", sample_size=8, heldout=16), method="wt", keep_ratio=0.1)
    rid = h.add_entry(report, label="from a report")
    r = h.get(rid)
    assert r.kind == "prune" and r.method == "wt" and r.settings["keep_ratio_requested"] == 0.1
    assert r.results["accuracy_after"] == report.end_to_end.accuracy_after and r.results["layers"]
    sw = SweepResult(rows=(dict(method="wt", accuracy_after=0.5),), settings=dict(model="m", methods=["wt"]))
    assert h.get(h.add_entry(sw)).kind == "sweep"
    with pytest.raises(TypeError):
        h.add_entry(object())


def test_find_gives_the_newest_run_with_the_same_settings_and_results(tmp_path):
    h = RunHistory(tmp_path / "h.sqlite")
    first = h.add("prune", _settings(0, "wt"), dict(accuracy_after=0.8), dict(prune=0.1))
    again = h.add("prune", _settings(0, "wt"), dict(accuracy_after=0.8), dict(prune=0.2))  # other timings only
    h.add("prune", _settings(0, "wt"), dict(accuracy_after=0.7), {})
    assert first < again and h.find("prune", _settings(0, "wt"), dict(accuracy_after=0.8)) == again
    assert h.find("prune", _settings(1, "wt"), dict(accuracy_after=0.8)) is None  # other settings
    assert h.find("prune", _settings(0, "wt"), dict(accuracy_after=0.75)) is None  # other results
    assert h.find("sweep", _settings(0, "wt"), dict(accuracy_after=0.8)) is None  # other kind
    h.delete(again)
    assert h.find("prune", _settings(0, "wt"), dict(accuracy_after=0.8)) == first
