"""Run history: every prune, sweep and retraining run in a local SQLite file; list, filter, reopen, compare, delete.

The runs are saved by the other pages through ui/run_store.py, which also opens the database. A damaged
file (found on open, or while the app runs) is set aside by the engine, never deleted, and a fresh file
started; damaged single runs are moved to the table ``damaged_runs``. This page shows what was set aside
and where, after listing (a listing is what finds the damage).
"""
from __future__ import annotations

import math
from datetime import datetime

import pandas as pd
import streamlit as st

from sipp_core.errors import SippError, fix_of
from sipp_core.io.data import DATASETS
from sipp_core.zoo.models import MODELS
from ui import run_store, show
from ui import verdicts as vd
from ui.charts.history import overlay_chart, smp_overlay_chart
from ui.results import verdict_box
from ui.settings import DELTA_OPTIONS, EPS_OPTIONS, METHOD_LABELS, Settings, fmt_num
from ui.sweep_results import show_cascade, show_isolation, show_sweep
from ui.tables import as_float

KIND_LABELS = {"prune": "prune", "sweep": "trade-off sweep", "retrain": "prune-retrain cascade",
               "isolation": "training in isolation", "nonsmoothness": "nonsmoothness", "other": "other"}
# Settings field -> the sidebar widget key (= its query parameter), for "Reopen".
WIDGET_KEYS = {"model": "model", "dataset": "data", "method": "method", "mode": "mode", "keep_ratio": "keep",
               "epsilon": "eps", "delta": "delta", "auto_sample": "s_auto", "sample_size": "s", "seed": "seed",
               "patch_reduction": "patch", "device": "device", "allocation": "alloc", "c_prime": "cprime"}
LIST_LIMIT = 500


# ---- listing --------------------------------------------------------------------------------------

def describe_run(r) -> str:
    """One line for a run: what was asked and the headline figure."""
    s, res = r.settings, r.results
    where = f"{r.model or '?'} / {r.dataset or '?'}"
    if r.kind == "prune":
        budget = (f"κ = {as_float(s.get('keep_ratio')):.3g}" if s.get("mode", "keep ratio") == "keep ratio"
                  else f"ε = {fmt_num(as_float(s.get('epsilon')))}")
        what = f"{r.method} · {budget} · seed {s.get('seed', 0)}"
    elif r.kind == "sweep":
        what = (f"{len(s.get('methods', []))} methods × {len(s.get('ratios', []))} ratios × "
                f"{len(s.get('seeds', []))} seed(s)")
    elif r.kind == "retrain":
        what = f"{r.method} · schedule {', '.join(f'{x:g}' for x in s.get('schedule', []))} · {s.get('epochs')} ep/step"
    elif r.kind == "isolation":
        what = (f"{r.method} · κ = {as_float(s.get('keep_ratio')):.3g} · {s.get('epochs')} epochs · "
                f"rewind {s.get('rewind_epoch')} · prune at {s.get('prune_at')}")
    elif r.kind == "nonsmoothness":
        p = s.get("paths", {})
        o, q = res.get("original", {}), res.get("pruned", {})
        what = (f"{r.method} · kept {100 * as_float(res.get('keep_ratio')):.3g}% · {p.get('count')} × {p.get('points')} "
                f"{p.get('kind')} paths · SMP {as_float(o.get('smp')):.3g} → {as_float(q.get('smp')):.3g}")
    else:
        what = r.method or ""
    acc = headline_of(r)[1]
    tail = f" → accuracy {100 * acc:.2f}%" if math.isfinite(acc) else ""
    if res.get("cancelled"):
        tail += " (cancelled, partial)"
    return f"{where} · {what}{tail}"


def headline_of(r) -> tuple[float, float]:
    """(kept share, accuracy) a run ends with: a prune's, a cascade's last fine-tuned step, a trained mask's;
    NaN for a sweep (many points) and for nonsmoothness (no accuracy)."""
    res = r.results
    if r.kind == "retrain" and res.get("steps"):
        last = res["steps"][-1]
        return as_float(last.get("keep_ratio")), as_float(last.get("accuracy_finetuned"))
    if r.kind == "isolation" and res.get("ticket"):
        return as_float(res["ticket"].get("keep_ratio")), as_float(res["ticket"].get("accuracy"))
    return as_float(res.get("keep_ratio")), as_float(res.get("accuracy_after"))


def _cell(v: float, fmt: str) -> str:
    """A table cell as text: empty where there is no figure (a missing number would show as 'None')."""
    return format(v, fmt) if math.isfinite(v) else ""


def run_row(r) -> dict:
    keep, acc = headline_of(r)
    t = r.timings.get("total") if isinstance(r.timings, dict) else None
    if not isinstance(t, (int, float)):
        t = sum(v for v in r.timings.values() if isinstance(v, (int, float)) and not isinstance(v, bool)) \
            if isinstance(r.timings, dict) else float("nan")
    return {"id": r.id, "when": datetime.fromtimestamp(r.created).strftime("%Y-%m-%d %H:%M:%S"),
            "kind": KIND_LABELS.get(r.kind, r.kind), "model": r.model, "data set": r.dataset, "method": r.method,
            "kept share": _cell(keep, ".2%"), "accuracy after": _cell(acc, ".2%"),
            "time (s)": _cell(float(t), ".2f"), "label": r.label or "", "run": describe_run(r)}


def _compare_frame(df: pd.DataFrame) -> pd.DataFrame:
    """hist.compare() as strings (its cells mix numbers, text and None)."""
    def cell(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, float):
            return f"{v:.5g}"
        return str(v)

    out = df.drop(columns=["differs"]).map(cell)
    out.insert(0, "differs", df["differs"].map(lambda b: "≠" if b else ""))
    out.index = [compare_label(k) for k in out.index]
    return out


COMPARE_PREFIXES = {"settings.": "setting: ", "results.": "result: ", "timings.": "time (s): ",
                    "versions.": "version: "}


def compare_label(key: str) -> str:
    """A compared row's name in words: "settings.keep_ratio" -> "setting: keep ratio", "timings.prepare.0" ->
    "time (s): prepare · 0"."""
    head = next((p for p in COMPARE_PREFIXES if key.startswith(p)), "")
    rest = key[len(head):].replace("_", " ").replace(".", " · ")
    return COMPARE_PREFIXES.get(head, "") + rest


# ---- reopen ---------------------------------------------------------------------------------------

def _widget_value(field: str, v):
    """A saved setting as the value its sidebar widget takes (eps and delta snap to the slider's options)."""
    if field == "epsilon":
        return min(EPS_OPTIONS, key=lambda o: abs(math.log(o) - math.log(max(float(v), 1e-30))))
    if field == "delta":
        return min(DELTA_OPTIONS, key=lambda o: abs(math.log(o) - math.log(max(float(v), 1e-300))))
    if field == "keep_ratio":
        v = min(1.0, max(0.005, round(float(v) / 0.005) * 0.005))
        return float(f"{v:.3f}")
    if field in ("sample_size", "seed"):
        return int(v)
    if field in ("c_prime",):
        return float(v)
    if field == "auto_sample":
        return bool(v)
    return v


def _unavailable(field: str, v) -> str | None:
    """Why a saved model or data set cannot be put back in the sidebar, or None."""
    if field == "model" and v not in MODELS:
        return f"model {v!r} is no longer in the zoo"
    if field == "dataset" and v not in DATASETS:
        return f"data set {v!r} is not available"
    return None


def uploaded_file_of(run) -> dict | None:
    """For an uploaded model's run: its label, the start of its file's sha256 and its data set, else None."""
    settings = run.settings
    if settings.get("source") != "upload":
        return None
    label = str(settings.get("model", ""))
    return {"run": run.id, "label": label, "sha256": label.rsplit("-", 1)[-1] if "-" in label else "",
            "dataset": settings.get("dataset"), "preprocessing": settings.get("preprocessing")}


def settings_from_run(settings: dict) -> tuple[dict, list[str]]:
    """Sidebar widget values for a saved prune run's settings, and notes on anything that could not be restored."""
    values, notes = {}, []
    defaults = Settings()
    upload = settings.get("source") == "upload"
    if upload:
        notes.append(f"this run pruned an uploaded model ({settings.get('model')}); upload it again on "
                     "'Bring your own' to prune it with these settings")
    for field, key in WIDGET_KEYS.items():
        if field not in settings or settings[field] is None:
            continue
        if upload and field in ("model", "dataset"):
            continue
        why = _unavailable(field, settings[field])
        if why is not None:
            notes.append(why)
            continue
        values[key] = _widget_value(field, settings[field])
    values.setdefault("mode", defaults.mode)
    return values, notes


def _reopen_prune(values: dict, upload: dict | None = None) -> None:
    """Callback (runs before the script, so the sidebar is drawn with these values). An uploaded model's
    run reopens on Bring your own, which asks for the same file (matched by its sha256) instead of
    pruning the sidebar's zoo model."""
    for key, v in values.items():
        st.session_state[key] = v
    if upload is not None:
        st.session_state[run_store.REOPENED_UPLOAD] = upload
    st.session_state["_history_goto"] = "pages/bring_your_own.py" if upload is not None else "pages/prune.py"


def _show_stored(r) -> None:
    """A sweep's or retraining run's stored table and chart."""
    if r.kind == "sweep":
        frame = pd.DataFrame(r.results.get("rows", []))
        show_sweep(frame, r.settings, key=f"hist_{r.id}", cancelled=bool(r.results.get("cancelled")))
    elif r.kind == "retrain":
        show_cascade(r.results.get("steps", []), as_float(r.results.get("dense_accuracy")), r.settings,
                     cancelled=bool(r.results.get("cancelled")), key=f"hist_{r.id}")
    elif r.kind == "isolation":
        show_isolation(r.results.get("ticket", {}), r.results.get("random", {}),
                       as_float(r.results.get("dense_accuracy")), r.settings,
                       cancelled=bool(r.results.get("cancelled")), key=f"hist_{r.id}")
    elif r.kind == "nonsmoothness":
        _stored_nonsmoothness(r)
    else:
        st.json(r.to_dict(), expanded=False)


NS_MEASURES = {"smp": "SMP of the output (mean over paths)", "relative_smp": "relative SMP (SMP ÷ logit variation)",
               "logit_variation": "logit variation along the path", "region_transitions": "linear-region transitions",
               "flipped_units": "ReLU sign flips", "output_trajectory": "trajectory length of the logits"}


def _stored_nonsmoothness(r) -> None:
    res = r.results
    o, p = res.get("original", {}), res.get("pruned", {})
    verdict_box(vd.smp_verdict(o, p, as_float(res.get("keep_ratio"))))
    rows = [dict(measure=label, original=as_float(o.get(k)), pruned=as_float(p.get(k))) for k, label in NS_MEASURES.items()
            if k in o]
    show.table(pd.DataFrame(rows), hide_index=True, width="stretch")
    paths = r.settings.get("paths", {})
    st.caption(f"{paths.get('count')} {paths.get('kind')} paths × {paths.get('points')} points, path seed "
               f"{paths.get('seed')}; open the Nonsmoothness page with these sidebar settings to see the charts.")


# ---- overlaid comparison ---------------------------------------------------------------------------

def overlay_frame(records) -> pd.DataFrame:
    """Accuracy against the kept share for every selected run that has both, one series per run (and method):
    a prune run is one point, a sweep one line per method (mean over seeds), a cascade its steps after
    fine-tuning, training in isolation its mask."""
    out = []

    def add(r, series, keep, acc, asked=None):
        k, a = as_float(keep), as_float(acc)
        if math.isfinite(k) and math.isfinite(a) and k > 0:
            q = as_float(asked)
            out.append(dict(run=f"#{r.id} {series}", kind=KIND_LABELS.get(r.kind, r.kind), keep_pct=100 * k,
                            acc_pct=100 * a, ratio=q if math.isfinite(q) else float(f"{k:.3g}")))

    for r in records:
        res = r.results
        if r.kind == "prune":
            add(r, f"{r.method} (prune)", res.get("keep_ratio"), res.get("accuracy_after"), r.settings.get("keep_ratio"))
        elif r.kind == "sweep":
            frame = pd.DataFrame(res.get("rows", []))
            if frame.empty:
                continue
            for c in ("keep_ratio", "accuracy_after"):
                frame[c] = pd.to_numeric(frame[c], errors="coerce")
            for (method, asked), g in frame.groupby(["method", "keep_ratio_requested"], sort=False):
                add(r, f"{method} (sweep)", g["keep_ratio"].mean(), g["accuracy_after"].mean(), asked)
        elif r.kind == "retrain":
            for step in res.get("steps", []):
                add(r, f"{r.method} (fine-tuned)", step.get("keep_ratio"), step.get("accuracy_finetuned"),
                    step.get("keep_ratio_requested"))
        elif r.kind == "isolation":
            t = res.get("ticket", {}) or {}
            add(r, f"{r.method} (trained mask)", t.get("keep_ratio"), t.get("accuracy"), r.settings.get("keep_ratio"))
    return pd.DataFrame(out, columns=["run", "kind", "keep_pct", "acc_pct", "ratio"])


def overlay_verdict(df: pd.DataFrame) -> list[str]:
    """The compare_methods verdict over the runs' series, at the keep ratios they share (a sentence when none)."""
    if df["run"].nunique() < 2:
        return []
    out = vd.compare_methods(df.rename(columns={"run": "method", "ratio": "keep_ratio_requested"}))
    return out or ["These runs share no keep ratio, so no verdict compares them point by point: read them on the "
                   "chart, or add a run at a keep ratio the others ran."]


def smp_overlay_frame(records) -> pd.DataFrame:
    """Relative SMP before and after pruning, per selected nonsmoothness run."""
    out = []
    for r in records:
        if r.kind != "nonsmoothness":
            continue
        for tag in ("original", "pruned"):
            v = as_float(r.results.get(tag, {}).get("relative_smp"))
            if math.isfinite(v):
                out.append(dict(run=f"#{r.id} {r.method}, kept {100 * as_float(r.results.get('keep_ratio')):.3g}%",
                                network=tag, relative_smp=v))
    return pd.DataFrame(out, columns=["run", "network", "relative_smp"])


# ---- the page -------------------------------------------------------------------------------------

def _open_or_stop():
    """The history and its runs, newest first; stops the page with the fix when it cannot be opened or read."""
    hist = run_store.history()
    if hist is None:
        fix = st.session_state.get("_history_fix") or ("check that the data folder is writable, or set "
                                                       "SIPP_DATA_HOME to a writable folder and restart the app")
        st.error(f"The run history could not be opened ({st.session_state.get('_history_error')}). Fix: {fix}.",
                 icon=":material/error:")
        st.stop()
    try:
        records = run_store.safe(hist.list, limit=LIST_LIMIT)
    except Exception as exc:  # noqa: BLE001
        fix = fix_of(exc) or ("set SIPP_DATA_HOME to a writable folder and restart the app; a damaged file is "
                              "set aside automatically when the history is reopened")
        problem = exc.problem if isinstance(exc, SippError) else str(exc)
        st.error(f"The run history could not be read: {problem}. Fix: {fix}.", icon=":material/error:")
        st.stop()
    # Listing is what finds a file damaged while the app ran (and safe() may have reopened it):
    # report from the history now in use, so damage is never shown as an empty history.
    return run_store.history() or hist, records


def _notices(hist) -> None:
    """Where the history lives, and what was set aside as damaged."""
    st.caption(f"Every prune, sweep and retraining run is saved to `{hist.path}` (SQLite; survives restarts; "
               "several app sessions can write at once). Set SIPP_DATA_HOME to keep it elsewhere.")
    if hist.recovery_message:
        kept = (f" Nothing was deleted: the old file is kept at `{hist.recovered_from}` for inspection."
                if hist.recovered_from is not None else "")
        st.warning(f"The run history was damaged: {hist.recovery_message}.{kept} New runs are saved to a fresh "
                   f"history file at `{hist.path}`.", icon=":material/warning:")
    if hist.damaged_message:
        st.warning(f"Some runs were damaged: {hist.damaged_message}. Fix: nothing to do; inspect them with "
                   f"`sqlite3 {hist.path} 'SELECT * FROM damaged_runs'` if you need them.",
                   icon=":material/warning:")


def _filtered(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows the kind pills, the model and data set boxes and the search field let through."""
    kinds = [v for k, v in KIND_LABELS.items() if k != "other"] + (["other"] if "other" in set(rows["kind"]) else [])
    pick_kinds = st.pills("Kind", kinds, default=kinds, selection_mode="multi", key="hist_kinds") or []
    f2, f3, f4 = st.columns([1, 1, 2])
    models = ["any"] + sorted(m for m in rows["model"].dropna().unique())
    model = f2.selectbox("Model", models, key="hist_model")
    datasets = ["any"] + sorted(d for d in rows["data set"].dropna().unique())
    dataset = f3.selectbox("Data set", datasets, key="hist_data")
    text = f4.text_input("Search (method, settings, label)", key="hist_text", placeholder="e.g. sipp-det or wt")
    shown = rows[rows["kind"].isin(pick_kinds)]
    if model != "any":
        shown = shown[shown["model"] == model]
    if dataset != "any":
        shown = shown[shown["data set"] == dataset]
    if text.strip():
        t = text.strip().lower()
        shown = shown[shown["run"].str.lower().str.contains(t, regex=False)
                      | shown["label"].str.lower().str.contains(t, regex=False)
                      | shown["method"].fillna("").str.lower().str.contains(t, regex=False)]
    return shown


def _table(shown: pd.DataFrame, total: int, listed: int) -> pd.DataFrame:
    more = f" (the newest {LIST_LIMIT})" if listed == LIST_LIMIT else ""
    st.caption(f"{len(shown)} of {total} runs{more}, newest first.")
    num = st.column_config.NumberColumn
    shown = shown[["id", "when", "kind", "accuracy after", "kept share", "run", "time (s)", "label", "model",
                   "data set", "method"]]
    show.table(shown, hide_index=True, width="stretch", column_config={
        "id": num(format="%d", width="small", pinned=True),  # kept in view when the wide table scrolls sideways
        "kept share": st.column_config.TextColumn(help="a cascade's last step; empty for sweeps (many points)"),
        "accuracy after": st.column_config.TextColumn(help="after pruning; a cascade's last step after fine-tuning; "
                                                           "empty for sweeps and nonsmoothness runs"),
        "run": st.column_config.TextColumn(width="large", help="what was asked, and the headline figure")})
    st.download_button("History as CSV", shown.to_csv(index=False), "sipp-run-history.csv", "text/csv",
                       on_click="ignore", icon=":material/download:")
    return shown


def _actions(picked: list, by_id: dict) -> tuple[bool, bool]:
    """The Reopen, Compare and Delete buttons for the selection: (compare pressed, delete pressed)."""
    b1, b2, b3, _ = st.columns([1, 1, 1, 2])
    reopen_values, upload = None, None
    if len(picked) == 1 and by_id[picked[0]].kind == "prune":
        reopen_values, notes = settings_from_run(by_id[picked[0]].settings)
        upload = uploaded_file_of(by_id[picked[0]])
        for n in notes:
            st.warning(f"Run #{picked[0]}: {n}; the sidebar keeps its current value there.", icon=":material/warning:")
    b1.button("Reopen", key="hist_reopen", disabled=reopen_values is None, icon=":material/open_in_new:",
              on_click=_reopen_prune if reopen_values is not None else None,
              args=(reopen_values, upload) if reopen_values is not None else None,
              help="Select one prune run: its settings go back into the sidebar (and the URL) and the Prune page "
                   "opens (Bring your own for an uploaded model, which asks for the same file again). A selected "
                   "sweep or retraining run shows its stored table and chart below.")
    compare = b2.button("Compare", key="hist_compare", disabled=len(picked) < 2, icon=":material/compare_arrows:")
    delete = b3.button(f"Delete {len(picked)} run(s)" if picked else "Delete", key="hist_delete",
                       disabled=not picked, icon=":material/delete:")
    return compare, delete


def _confirm_delete(hist) -> None:
    confirm = st.session_state.get("_hist_confirm")
    if not confirm:
        return
    st.warning(f"Delete run(s) {', '.join(f'#{i}' for i in confirm)} from the history? This cannot be undone.",
               icon=":material/delete:")
    c1, c2, _ = st.columns([1, 1, 3])
    if c1.button("Yes, delete", key="hist_confirm_delete", type="primary"):
        n = run_store.safe(hist.delete, confirm)
        run_store.forget(set(confirm))
        st.session_state.pop("_hist_confirm", None)
        st.session_state.pop("hist_pick", None)
        st.toast(f"Deleted {n} run(s).", icon=":material/delete:")
        st.rerun()
    if c2.button("Keep them", key="hist_cancel_delete"):
        st.session_state.pop("_hist_confirm", None)
        st.rerun()


def _compare(hist, picked: list) -> None:
    st.subheader("Compare")
    try:
        df = run_store.safe(hist.compare, picked)
    except KeyError as exc:
        st.error(f"{exc}. Fix: reload the page; the run was deleted meanwhile.", icon=":material/error:")
    else:
        records = [run_store.safe(hist.get, i) for i in picked]
        acc = overlay_frame(records)
        if len(acc):
            show.chart(overlay_chart(acc))
            verdict_box(overlay_verdict(acc))
        ns = smp_overlay_frame(records)
        if len(ns):
            show.chart(smp_overlay_chart(ns))
        if not len(acc) and not len(ns):
            st.caption("These runs share no figure to draw on one chart; the table lists every setting and result.")
        st.caption("One column per run; rows that differ between the runs first (marked ≠).")
        show.table(_compare_frame(df), width="stretch", height=min(600, 36 + 35 * len(df)))


def _stored_prune(r) -> None:
    res = r.results
    c = st.columns(4)
    c[0].metric("Weights kept", f"{100 * as_float(res.get('keep_ratio')):.2f}%")
    c[1].metric("Accuracy after", f"{100 * as_float(res.get('accuracy_after')):.1f}%")
    c[2].metric("Largest bound", f"{as_float(res.get('bound_max')):.3g}" if res.get("has_bound") else "none")
    c[3].metric("Largest measured error", f"{as_float(res.get('measured_max_heldout')):.3g}")
    st.caption(f"Method: {METHOD_LABELS.get(r.method, r.method)}. Press **Reopen** to put these settings back "
               "in the sidebar and open the Prune page (recomputed with the cached sensitivities).")
    rows, renamed = run_store.named_layer_rows(res.get("layers", []), r.settings)
    layers = pd.DataFrame(rows)
    if not layers.empty:
        show.layer_table(layers)
    if renamed:
        st.caption("This run was saved before the layers had names; they are shown with today's names (the layer "
                   "with the same place and shape).")


def _one_run(r) -> None:
    st.subheader(f"Run #{r.id}: {KIND_LABELS.get(r.kind, r.kind)}")
    st.caption(f"{describe_run(r)} · saved {run_row(r)['when']} · versions: "
               + ", ".join(f"{k} {v}" for k, v in r.versions.items() if v and k in ("sipp_core", "torch", "git")))
    if r.kind == "prune":
        _stored_prune(r)
    else:
        _show_stored(r)


def render() -> None:
    st.title("Run history")
    goto = st.session_state.pop("_history_goto", None)
    if goto:
        st.switch_page(goto, query_params={})
    hist, records = _open_or_stop()
    _notices(hist)
    if not records:
        st.info(("No runs in the fresh history yet. " if hist.recovery_message else "No runs yet. ")
                + "Prune on the Prune page, or run a sweep or retraining on the Trade-offs and "
                "Retraining pages; each run appears here.", icon=":material/history:")
        return

    rows = pd.DataFrame([run_row(r) for r in records])
    shown = _table(_filtered(rows), len(rows), len(records))
    by_id = {r.id: r for r in records}
    options = [int(i) for i in shown["id"]]
    picked = st.multiselect("Select runs to reopen, compare or delete", options, key="hist_pick",
                            format_func=lambda i: f"#{i} {KIND_LABELS.get(by_id[i].kind, by_id[i].kind)}: "
                                                  f"{describe_run(by_id[i])}",
                            placeholder="choose one run to reopen, two or more to compare")
    compare, delete = _actions(picked, by_id)
    if delete:
        st.session_state["_hist_confirm"] = list(picked)
    _confirm_delete(hist)
    if compare and len(picked) >= 2:
        st.session_state["_hist_comparing"] = list(picked)
    # a comparison stays until the selection changes: a rerun (presentation mode turned on, a theme) keeps it
    if len(picked) >= 2 and st.session_state.get("_hist_comparing") == list(picked):
        _compare(hist, picked)
    if len(picked) == 1:
        _one_run(by_id[picked[0]])
