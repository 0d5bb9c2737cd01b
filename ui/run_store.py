"""The run history as a service for the pages: open it, save prune runs and finished jobs to it.

The database is sipp_core.jobs.history.RunHistory at its default place (``$SIPP_DATA_HOME/runs.sqlite``, else
``~/.local/share/sipp-studio/runs.sqlite``): one object per path per process (it opens a fresh SQLite
connection per call, so sessions share it safely). A damaged file (found on open, or while the app
runs) is set aside by the engine, never deleted, and a fresh file started; damaged single runs are
moved to the table ``damaged_runs``. Saving never breaks a page: a failure becomes a short warning.

Prune runs are saved from the Prune page (``record_prune``) once per distinct setting, not on every rerun
(nor again by a later server when the history holds the same settings and results already), and from Bring
your own (``record_upload_prune``); nonsmoothness comparisons from their page (``record_nonsmoothness``),
likewise once per setting; sweeps and retraining runs are saved
by their background job when they finish (``saver``; a cancelled run is saved too, marked cancelled).
The Run history page (ui/views/history.py) lists, reopens, compares and deletes them.
"""
from __future__ import annotations

import re
import threading

import streamlit as st

from sipp_core.errors import SippError, fix_of
from sipp_core.jobs.history import HistoryError, RunHistory, default_history_path
from ui import engine, tables
from ui.settings import Settings
from ui.warmup import is_warmup

REOPENED_UPLOAD = "_reopened_upload"  # session_state: the uploaded file a reopened run asks for


@st.cache_resource(show_spinner=False)
def _open(path: str):
    return RunHistory(path)


@st.cache_resource(show_spinner=False)
def _saved() -> dict:
    """Process-wide: which prune settings were saved already (path, report key) -> run id."""
    return {"lock": threading.Lock(), "keys": {}}


def history(reopen: bool = False):
    """The RunHistory at the default path (None, with the reason in session_state, when it cannot be opened)."""
    path = str(default_history_path())
    try:
        if reopen:
            _open.clear()
        return _open(path)
    except Exception as exc:  # noqa: BLE001 - a history problem must never break a page
        st.session_state["_history_error"] = (exc.problem if isinstance(exc, SippError)
                                              else f"{type(exc).__name__}: {exc}")
        st.session_state["_history_fix"] = fix_of(exc)
        return None


def safe(fn, *args, **kwargs):
    """Run a history call; on a database error reopen once (the engine then checks and sets aside the file)."""
    try:
        return fn(*args, **kwargs)
    except HistoryError:
        h = history(reopen=True)
        if h is None:
            raise
        return getattr(h, fn.__name__)(*args, **kwargs)


def prune_entry(s: Settings, report) -> tuple[dict, dict, dict]:
    """(settings, results, timings) of one prune run, as the history stores it."""
    h = tables.headline(report)
    settings = s.as_dict()
    settings.pop("epsilon" if s.mode == "keep ratio" else "keep_ratio")
    settings.update(sample_size_used=h["sample_size"], sample_size_formula=h["sample_size_formula"])
    results = {k: v for k, v in h.items() if k not in ("timings", "method", "sample_size", "sample_size_formula")}
    results["layers"] = tables.layer_table(report).to_dict(orient="records")
    results["dense_layers"] = [dict(name=n, reason=why) for n, why in report.result.dense]
    return settings, results, dict(h["timings"])


def record_upload_prune(s: Settings, report, label: str) -> int | None:
    """Save a prune of an uploaded model (Bring your own); called once per new report of the session.

    The run is marked as an upload and names the files, so reopening it cannot pretend to rebuild
    a zoo model from the sidebar.
    """
    hist = history()
    if hist is None:
        return None
    settings, results, timings = prune_entry(s, report)
    settings.update(source="upload", model=label, dataset=report.prepared.record.name,
                    preprocessing=report.prepared.record.preprocessing)
    try:
        return safe(hist.add, "prune", settings, results, timings, label=f"upload: {label}")
    except Exception as exc:  # noqa: BLE001 - a history problem must never break a page
        st.caption(f":orange[This run was not saved to the run history: {exc}]")
        return None


def _record_once(key: tuple, kind: str, entry) -> int | None:
    """Save one run of `kind` once per `key` (per process): entry() gives its (settings, results, timings).
    Returns the new id, or None if it was not saved now (already saved, no history, or a history problem, which
    is shown as a caption and never breaks the page). The server's warm-up run is no one's run: not saved."""
    if is_warmup():
        return None
    hist = history()
    if hist is None:
        return None
    key = (str(hist.path), *key)
    saved = _saved()
    with saved["lock"]:
        if key in saved["keys"]:
            return None
        saved["keys"][key] = None
    try:
        settings, results, timings = entry()
        existing = safe(hist.find, kind, settings, results)
        if existing is not None:  # saved by an earlier server: no second copy (deleting it lets this one be saved)
            with saved["lock"]:
                saved["keys"][key] = existing
            return None
        run_id = safe(hist.add, kind, settings, results, timings)
    except Exception as exc:  # noqa: BLE001 - a history problem must never break a page
        with saved["lock"]:
            saved["keys"].pop(key, None)
        st.caption(f":orange[This run was not saved to the run history: {exc}]")
        return None
    with saved["lock"]:
        saved["keys"][key] = run_id
    return run_id


def record_prune(s: Settings, report) -> int | None:
    """Save a prune run once per distinct setting (per process); returns the new id, or None if not saved now."""
    return _record_once((engine.report_key(s),), "prune", lambda: prune_entry(s, report))


def nonsmoothness_entry(s: Settings, opts: dict, comp, keep_ratio: float) -> tuple[dict, dict, dict]:
    """(settings, results, timings) of a nonsmoothness comparison: the sidebar's prune settings, the paths, and
    both networks' summaries and per-stage rows (no signals)."""
    settings = s.as_dict()
    settings.pop("epsilon" if s.mode == "keep ratio" else "keep_ratio")
    settings.update(paths=dict(opts))
    results = dict(keep_ratio=float(keep_ratio), original=comp.original.summary(), pruned=comp.pruned.summary(),
                   layers=comp.layer_rows())
    timings = dict(original=comp.original.timings_s.get("sweep"), pruned=comp.pruned.timings_s.get("sweep"))
    return settings, results, timings


def record_nonsmoothness(s: Settings, opts: dict, comp, keep_ratio: float) -> int | None:
    """Save a nonsmoothness comparison once per distinct setting (per process), as record_prune does."""
    return _record_once(("nonsmoothness", engine.report_key(s), tuple(sorted(opts.items()))), "nonsmoothness",
                        lambda: nonsmoothness_entry(s, opts, comp, keep_ratio))


def saver(hist):
    """on_done for a background job: save job.result to `hist` (resolved in the script thread)."""
    def on_done(job) -> None:
        if hist is not None and job.result is not None:
            job.run_id = hist.add_entry(job.result)

    return on_done


def forget(ids) -> None:
    """Deleted runs: a later prune with the same settings is saved again."""
    saved = _saved()
    with saved["lock"]:
        for k, v in list(saved["keys"].items()):
            if v in ids:
                saved["keys"].pop(k, None)


_POSITIONAL = re.compile(r"^(\d+) · (.+)$")  # "1 · Linear 784→300": a layer label from before layers had names


def named_layer_rows(rows: list[dict], settings: dict) -> tuple[list[dict], bool]:
    """A saved prune run's layer rows, with today's layer names where the run was saved before the built-in
    networks named their layers: "1 · Linear 784→300" becomes "fc1 · Linear 784→300". Only for a built-in network
    (an upload keeps the names of its own file) whose prunable layers today are the same in number and kind;
    anything else is shown as saved. Returns (rows, whether they were renamed)."""
    matches = [_POSITIONAL.match(str(r.get("label", ""))) for r in rows]
    if not rows or not all(matches) or settings.get("source") == "upload":
        return rows, False
    try:
        layers = engine.model_facts(str(settings.get("model")), str(settings.get("dataset")))["layers"]
    except Exception:  # noqa: BLE001 - a network or data set this version cannot build: as saved
        return rows, False
    if len(layers) != len(rows) or any(layer["kind"] != row.get("kind") for layer, row in zip(layers, rows)):
        return rows, False
    return [{**row, "label": f"{layer['name']} · {m.group(2)}", "name": layer["name"]}
            for layer, row, m in zip(layers, rows, matches)], True

