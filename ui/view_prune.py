"""Page 1, Prune (home): headline metrics, per-layer table and charts, downloads."""
from __future__ import annotations

import io
import math

import streamlit as st

from ui import charts, engine, show, tables
from ui.explain import explain_expander
from ui.view_common import headline_metrics, obtain
from ui.view_history import record_prune
from ui.view_speed import render_panel as render_speed_panel

INTRO = ("Pick a network, a method and a budget in the sidebar. SiPP keeps the edges whose **sensitivity** "
         "(their largest share of a unit's input signal on the sample S) is high, and reports a **bound** on "
         "the error each unit suffers, beside the error actually **measured**.")


def _download_bytes(report):
    """Callables that build each download only when clicked."""
    import torch

    from sipp_core.plan.pruning import to_json

    def state_dict():
        buf = io.BytesIO()
        torch.save(report.result.state_dict(), buf)
        return buf.getvalue()

    def masks():
        buf = io.BytesIO()
        torch.save(report.result.masks_state(), buf)
        return buf.getvalue()

    def json_report():
        return to_json(report.to_dict())

    def csv_table():
        return tables.layer_table(report).to_csv(index=False)

    return state_dict, masks, json_report, csv_table


def render() -> None:
    s, prepared, report = obtain("Prune", INTRO)
    h = tables.headline(report)
    headline_metrics(h)
    t = h["timings"]
    st.caption("Time per stage: " + " · ".join(
        f"{k} {v * 1000:.0f} ms" if v < 1 else f"{k} {v:.2f} s" for k, v in t.items() if not math.isnan(v))
        + " (load and sensitivities are computed once and cached; moving ε or κ re-runs prune and evaluate only)")
    if h["has_bound"] and h["bound_max"] >= 1:
        st.caption(":orange[A bound ≥ 1 is loose:] for a deterministic row it says nothing (its error is at most 1 "
                   "anyway); for a sampled row it allows the estimate to be off by more than the signal. "
                   "See the Guarantees page for where and by how much.")

    left, right = st.columns(2)
    show.chart(charts.density_chart(report), left)
    show.chart(charts.bound_vs_measured(report), right)

    st.subheader("Per layer")
    df = engine.layer_table(engine.report_key(s), report).rename(columns=tables.LAYER_TABLE_LABELS)
    num = st.column_config.NumberColumn
    st.dataframe(df, hide_index=True, width="stretch", column_config={
        "kept": num(format="localized"), "weights": num(format="localized"),
        "kept share": num(format="percent"), "largest bound": num(format="%.3g"), "mean bound": num(format="%.3g"),
        "max error on S": num(format="%.3g"), "max error held-out": num(format="%.3g"),
        "p95 error held-out": num(format="%.3g"), "mean error held-out": num(format="%.3g"),
        "failure rate on S": num(format="percent"), "failure rate held-out": num(format="percent"),
    })
    dense = report.result.dense
    if dense:
        st.caption("Left dense: " + "; ".join(f"{n} ({why})" for n, why in dense))

    st.subheader("Downloads")
    sd, mk, js, csv = _download_bytes(report)
    stem = f"{s.model}-{s.dataset}-{s.method}"
    d1, d2, d3, d4 = st.columns(4)
    d1.download_button("Pruned state_dict (.pt)", sd, f"{stem}-pruned.pt", "application/octet-stream",
                       on_click="ignore", icon=":material/download:")
    d2.download_button("Masks (.pt)", mk, f"{stem}-masks.pt", "application/octet-stream", on_click="ignore",
                       icon=":material/download:")
    d3.download_button("Report (JSON)", js, f"{stem}-report.json", "application/json", on_click="ignore",
                       icon=":material/download:")
    d4.download_button("Per-layer table (CSV)", csv, f"{stem}-layers.csv", "text/csv", on_click="ignore",
                       icon=":material/download:")
    st.caption("Load the state_dict into the same architecture with `model.load_state_dict(torch.load(path))`; "
               "pruned weights are exact zeros, sampled weights are reweighted.")
    explain_expander(s, prepared, report)
    render_speed_panel(report, engine.report_key(s))
    record_prune(s, report)  # the run history: once per distinct setting, not on every rerun
