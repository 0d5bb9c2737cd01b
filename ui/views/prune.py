"""Page 1, Prune (home): headline metrics, per-layer table and charts, downloads, and the speed panel.

The speed panel ("Why is the pruned model not faster?"): dense vs sparse (CSR) latency and file sizes
(sipp_core.plan.sparse_speed). Behind a button because it times things: 1 CPU thread (steadier on a shared
machine; set for the few hundred milliseconds of timing), batch sizes 1 and 256. Results are kept per
session and prune setting; timings are noisy, so they are never shared between sessions as if they were facts.
"""
from __future__ import annotations

import io
import math

import pandas as pd
import streamlit as st
import torch

from sipp_core.plan.pruning import to_json
from sipp_core.plan.sparse_speed import measure
from sipp_core.zoo.layers import left_dense
from ui import engine, show, tables
from ui import verdicts as vd
from ui.charts import layers as charts
from ui.explain import explain_expander
from ui.guard import obtain, show_error
from ui.results import export_zip, headline_metrics, verdict_box
from ui.run_store import record_prune

BATCHES = (1, 256)
INTRO = ("Pick a network, a method and a budget in the sidebar. SiPP keeps the edges whose **sensitivity** "
         "(their largest share of a unit's input signal on the sample S) is high, and reports a **bound** on "
         "the error each unit suffers, beside the error actually **measured**.")


def _download_bytes(report):
    """Callables that build each download only when clicked."""
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


# ---- the speed panel ------------------------------------------------------------------------------

def speed_report(result, threads: int = 1, repeats: int = 30):
    """measure() on a PruneResult with the panel's settings."""
    return measure(result, batch_sizes=BATCHES, repeats=repeats, threads=threads)


def verdict(rep) -> list[str]:
    """Plain sentences on what these numbers say (latency per batch size, then file size)."""
    out = []
    for t in rep.totals():
        if not t["layers"]:
            continue
        s = t["speedup"]
        how = (f"{s:.2f}× faster" if s >= 1.1 else f"{1 / s:.2f}× slower" if s <= 1 / 1.1 else "about as fast")
        out.append(f"At batch {t['batch_size']}, the sparse (CSR) kernel is **{how}** than the dense one "
                   f"({t['csr_ms']:.3g} ms vs {t['dense_ms']:.3g} ms over {t['layers']} Linear layer(s)).")
    conv = {l.name for l in rep.layers if l.kind != "linear"}
    if conv:
        out.append(f"Convolutions ({', '.join(sorted(conv))}) are not timed: PyTorch has no sparse convolution kernel.")
    f = rep.files
    dense, dzip, csr = f.get("dense", 0), f.get("dense_zip", 0), min(f.get("csr_npz", 0), f.get("csr_torch", 0))
    if dense and dzip and csr:
        gain_zip, gain_csr = dense - dzip, dense - csr
        kib = lambda b: f"{b / 1024:,.0f} KiB"  # noqa: E731
        if gain_csr <= 0 or gain_zip >= 0.8 * gain_csr:
            out.append(f"File size: **zipping the dense weights already gives most of the gain** ({kib(dense)} → "
                       f"{kib(dzip)}), because pruned weights are exact zeros, which compress well; compressed CSR "
                       f"reaches {kib(csr)}.")
        else:
            out.append(f"File size: compressed CSR ({kib(csr)}) is clearly smaller than the zipped dense weights "
                       f"({kib(dzip)}); the dense file is {kib(dense)}.")
    return out


def speed_tables(rep) -> dict:
    """The panel's tables: totals per batch size, per layer, file sizes (DataFrames), and the sentences."""
    totals = pd.DataFrame(rep.totals()).rename(columns={
        "batch_size": "batch size", "dense_ms": "dense (ms)", "csr_ms": "CSR (ms)", "speedup": "CSR speed-up",
        "layers": "Linear layers"})
    layers = rep.to_frame()
    layers = layers.assign(shape=layers["shape"].map(lambda s: " × ".join(map(str, s))))[
        ["name", "kind", "shape", "density", "batch_size", "dense_ms", "csr_ms", "speedup", "max_abs_diff", "note"]
    ].rename(columns={"name": "layer", "density": "kept share", "batch_size": "batch size", "dense_ms": "dense (ms)",
                      "csr_ms": "CSR (ms)", "speedup": "CSR speed-up", "max_abs_diff": "max |dense − CSR|"})
    files = rep.files_frame()
    files["format"] = files["format"].map(lambda k: tables.FILE_LABELS.get(k, k))
    files = files.rename(columns={"relative_to_dense": "share of dense"})
    return dict(totals=totals, layers=layers, files=files, verdict=verdict(rep), explanation=rep.explanation)


def render_speed_panel(report, key: tuple) -> None:
    """The Prune page's expander."""
    box = st.expander("Why is the pruned model not faster?", icon=":material/speed:", key="speed_open",
                      on_change="rerun")
    if not box.open:  # made only while open: a slider move with it closed costs nothing
        return
    with box:
        st.markdown("Pruning zeroes weights; whether that saves **time** or **space** depends on how the weights are "
                    "stored and multiplied. Measure it for this pruned network: the pruned Linear layers with the "
                    "dense kernel (zeros included) against a sparse CSR kernel, at batch sizes 1 and 256, and the "
                    "file size dense against compressed sparse.")
        store = st.session_state.setdefault("_speed_reports", {})
        rep = store.get(key)
        if st.button("Measure latency and file size", key="speed_run", icon=":material/timer:",
                     help="Times each pruned Linear layer (median of 30 runs, 1 CPU thread); takes about a second "
                          "for small networks."):
            with st.spinner("Timing dense and sparse kernels…"):
                try:
                    rep = speed_report(report.result)
                except Exception as exc:  # noqa: BLE001
                    show_error(exc)
                    return
            store.clear()  # keep only the latest (timings are cheap to redo)
            store[key] = rep
        if rep is None:
            st.caption("Nothing measured yet for this setting.")
            return
        t = speed_tables(rep)
        for line in t["verdict"]:
            st.markdown("- " + line)
        # Imported here, not at the top: the charts' module imports Altair (0.2 s), which the first page does
        # without (ui.charts.compiled); this panel is drawn only once opened and measured.
        from ui.charts import tradeoffs as ct

        if (rep.to_frame()["kind"] == "linear").any():
            show.chart(ct.speedup_chart(rep.to_frame(), rep.totals()))
        show.chart(ct.file_size_chart(rep.files))
        num = st.column_config.NumberColumn
        left, right = st.columns(2)
        show.table(t["totals"], left, hide_index=True, width="stretch", column_config={
            "dense (ms)": num(format="%.4f"), "CSR (ms)": num(format="%.4f"), "CSR speed-up": num(format="%.2f")})
        show.table(t["files"], right, hide_index=True, width="stretch", column_config={
            "bytes": num(format="localized"), "share of dense": num(format="percent")})
        st.caption("Per layer and batch size:")
        show.table(t["layers"], hide_index=True, width="stretch", column_config={
            "kept share": num(format="percent"), "dense (ms)": num(format="%.4f"), "CSR (ms)": num(format="%.4f"),
            "CSR speed-up": num(format="%.2f"), "max |dense − CSR|": num(format="%.1e")})
        st.info(t["explanation"], icon=":material/lightbulb:")
        st.caption(f"{rep.threads} CPU thread(s), median of {rep.repeats} runs, torch {rep.torch_version}; timings on "
                   "a shared machine are noisy: press the button again to repeat.")


# ---- downloads ------------------------------------------------------------------------------------

def render_downloads(s, report) -> None:
    """The Prune page's downloads, in an expander whose buttons are made only while it is open: they were 7 of the
    page's elements, re-sent and redrawn on every slider move (a keep-ratio step took 260 ms with them shown and
    240 ms without, median of 48 steps each on a 2-core laptop; BENCHMARKS.md)."""
    box = st.expander("Downloads: the pruned network, its masks, the report (JSON, CSV), deployable .pt2 and ONNX",
                      icon=":material/download:", key="downloads_open", on_change="rerun")
    if not box.open:
        return
    with box:
        sd, mk, js, csv = _download_bytes(report)
        stem = f"{s.model}-{s.dataset}-{s.method}"
        d1, d2, d3, d4, d5 = st.columns(5)
        d1.download_button("Pruned state_dict (.pt)", sd, f"{stem}-pruned.pt", "application/octet-stream",
                           on_click="ignore", icon=":material/download:")
        d2.download_button("Masks (.pt)", mk, f"{stem}-masks.pt", "application/octet-stream", on_click="ignore",
                           icon=":material/download:")
        d3.download_button("Report (JSON)", js, f"{stem}-report.json", "application/json", on_click="ignore",
                           icon=":material/download:")
        d4.download_button("Per-layer table (CSV)", csv, f"{stem}-layers.csv", "text/csv", on_click="ignore",
                           icon=":material/download:")
        d5.download_button("Deployable: .pt2, ONNX (.zip)", lambda: export_zip(report), f"{stem}-pruned.zip",
                           "application/zip", on_click="ignore", icon=":material/download:", key="prune_download_zip")
        st.caption("Load the state_dict into the same architecture with "
                   "`model.load_state_dict(torch.load(path))`; pruned weights are exact zeros, sampled weights are "
                   "reweighted. The .zip adds model.pt2 (runs without this project's classes: "
                   "`torch.export.load(path).module()(x)`) and model.onnx (checked with onnxruntime against PyTorch on "
                   "the test split before it is written); all open in Netron.")


# ---- the page -------------------------------------------------------------------------------------

def render() -> None:
    s, prepared, report = obtain("Prune", INTRO)
    h = tables.headline(report)
    headline_metrics(h)
    verdict_box(vd.prune_verdict(h))
    t = h["timings"]
    st.caption("Time per stage: " + " · ".join(
        f"{k} {v * 1000:.0f} ms" if v < 1 else f"{k} {v:.2f} s" for k, v in t.items() if not math.isnan(v))
        + " (load and sensitivities are computed once and cached; moving ε or κ re-runs prune and evaluate only)")
    if h["has_bound"] and h["bound_max"] >= 1:
        st.caption(":orange[A bound ≥ 1 is loose:] for a deterministic row it says nothing (its error is at most 1 "
                   "anyway); for a sampled row it allows the estimate to be off by more than the signal. "
                   "See the Guarantees page for where and by how much.")

    # Figures: a slider move sends new data, not new charts
    show.chart_row([charts.density_figure(report), charts.bound_figure(report)])

    st.subheader("Per layer")
    show.layer_table(engine.layer_table(engine.report_key(s), report))
    dense = report.result.dense
    if dense:
        st.caption(left_dense(dense))

    render_downloads(s, report)
    explain_expander(s, prepared, report, expanded=st.query_params.get("lesson") == "eps-delta")
    render_speed_panel(report, engine.report_key(s))
    record_prune(s, report)  # the run history: once per distinct setting, not on every rerun
