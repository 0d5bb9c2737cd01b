"""Why is the pruned model not faster? Dense vs sparse (CSR) latency and file sizes (sipp_core.plan.sparse_speed).

Behind a button because it times things: 1 CPU thread (steadier on a shared machine; set for the few
hundred milliseconds of timing), batch sizes 1 and 256. Results are kept per session and prune
setting; timings are noisy, so they are never shared between sessions as if they were facts.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from ui import charts_tradeoffs as ct
from ui import show

BATCHES = (1, 256)


def speed_report(result, threads: int = 1, repeats: int = 30):
    """measure() on a PruneResult with the panel's settings."""
    from sipp_core.plan.sparse_speed import measure

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
    files["format"] = files["format"].map(lambda k: ct.FILE_LABELS.get(k, k))
    files = files.rename(columns={"relative_to_dense": "share of dense"})
    return dict(totals=totals, layers=layers, files=files, verdict=verdict(rep), explanation=rep.explanation)


def render_panel(report, key: tuple) -> None:
    """The Prune page's expander."""
    with st.expander("Why is the pruned model not faster?", icon=":material/speed:"):
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
                    from ui.view_common import show_error

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
        if (rep.to_frame()["kind"] == "linear").any():
            show.chart(ct.speedup_chart(rep.to_frame(), rep.totals()))
        show.chart(ct.file_size_chart(rep.files))
        num = st.column_config.NumberColumn
        left, right = st.columns(2)
        left.dataframe(t["totals"], hide_index=True, width="stretch", column_config={
            "dense (ms)": num(format="%.4f"), "CSR (ms)": num(format="%.4f"), "CSR speed-up": num(format="%.2f")})
        right.dataframe(t["files"], hide_index=True, width="stretch", column_config={
            "bytes": num(format="localized"), "share of dense": num(format="percent")})
        st.caption("Per layer and batch size:")
        st.dataframe(t["layers"], hide_index=True, width="stretch", column_config={
            "kept share": num(format="percent"), "dense (ms)": num(format="%.4f"), "CSR (ms)": num(format="%.4f"),
            "CSR speed-up": num(format="%.2f"), "max |dense − CSR|": num(format="%.1e")})
        st.info(t["explanation"], icon=":material/lightbulb:")
        st.caption(f"{rep.threads} CPU thread(s), median of {rep.repeats} runs, torch {rep.torch_version}; timings on "
                   "a shared machine are noisy: press the button again to repeat.")
