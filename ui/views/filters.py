"""Filters: whole channels removed (PFP and filter baselines), a physically smaller network, measured."""
from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import streamlit as st

from sipp_core.jobs.compare import compare
from sipp_core.jobs.filter_retrain import retrain_filters
from sipp_core.options import STRUCTURED_METHODS, STRUCTURED_TARGETS
from sipp_core.structured.report import evaluate_filters, measure_latency
from sipp_core.zoo.train import accuracy
from ui import engine, show
from ui.charts import filters as charts
from ui.filters_core import COMPARE_COLUMNS, compare_verdict, filters_verdict, measured_table
from ui.glossary import hint
from ui.guard import obtain, show_error
from ui.links import link_number, link_shown, link_slider
from ui.results import verdict_box
from ui.sidebar import page_link_problems

INTRO = ("Weight pruning (the other pages) leaves every layer its shape, so the network is no smaller and no faster. "
         "Filter pruning removes **whole channels**: a layer's input channel goes together with the filter that "
         "produces it, and the network is rebuilt with fewer channels. **PFP** scores channel j by its "
         "sensitivity s_j, the largest share one of its weights takes of a unit's input on S, and sizes each "
         "layer from the same ε/δ sampling bound as SiPP (docs/pfp.md).")
TARGET_LABELS = {"params": "parameters", "flops": "FLOPs"}


def _axis_label(key: str) -> str:
    return charts.COMPARE_X[key][0].split(" (")[0]


METHOD_HELP = {
    "pfp": "PFP: each layer keeps its channels of largest sensitivity; counts from the sampling bound",
    "pfp-rand": "PFP, sampled: channels drawn with probability ∝ sensitivity and reweighted (what the bound covers)",
    "filter-l1": "baseline: the same share of filters in every layer, largest L1 norm first (Li et al. 2017)",
    "filter-random": "baseline: the same share of filters in every layer, chosen at random",
}
RETRAIN_EPOCHS = 3


def _key(s, method, target, ratio) -> tuple:
    return ("filters", s.heavy_key, method, target, float(ratio), float(s.delta), int(s.seed))


def _zip(result, x_check) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        result.export(Path(tmp) / "smaller", check_inputs=x_check)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted((Path(tmp) / "smaller").iterdir()):
                z.write(f, f.name)
        return buf.getvalue()


@st.fragment
def _explore(s, prepared) -> None:
    page_link_problems("filters", {"filters_method": link_shown(STRUCTURED_METHODS),
                                   "filters_target": link_shown(STRUCTURED_TARGETS, TARGET_LABELS.get),
                                   "filters_ratio": link_slider(link_number(0.05, 1.0))})
    c1, c2, c3 = st.columns([1.2, 1, 1.4])
    method = c1.selectbox("Method", STRUCTURED_METHODS, key="filters_method", format_func=lambda m: m,
                          bind="query-params", help="\n\n".join(f"**{k}**: {v}" for k, v in METHOD_HELP.items()))
    target = c2.radio("Keep ratio counts", STRUCTURED_TARGETS, key="filters_target", horizontal=True,
                      bind="query-params", format_func=TARGET_LABELS.get,
                      help="parameters (the authors' target) or multiply-accumulates per input")
    ratio = c3.slider("Keep ratio", 0.05, 1.0, 0.3, 0.05, key="filters_ratio", bind="query-params",
                      help="the share of the network's parameters (or FLOPs) to keep; the measured share lands "
                           "within 0.5% of it where whole channels allow")
    key = _key(s, method, target, ratio)
    try:
        with st.spinner("Removing channels and rebuilding the network…"):
            report = engine.derived(key, lambda: evaluate_filters(prepared, method=method, keep_ratio=ratio,
                                                                  target=target, delta=s.delta, seed=s.seed,
                                                                  latency=False))
    except Exception as exc:  # noqa: BLE001 - every engine error is shown with its fix, never raised
        show_error(exc)
        return
    r = report.result
    b1, b2, b3 = st.columns(3)
    if b1.button("Measure CPU latency", key="filters_lat_btn", help="median of 20 interleaved runs at batch 1 and 64"):
        with st.spinner("Timing the three networks (20 runs each, interleaved)…"):
            nets = {"original": prepared.model, "masked": r.masked_model, "pruned": r.model}
            st.session_state.setdefault("filters_latency", {})[key] = measure_latency(nets, prepared.record.x_test)
    if b2.button(f"Retrain {RETRAIN_EPOCHS} epochs", key="filters_rt_btn",
                 help="retrain the smaller network itself, its remaining zeros held at zero"):
        with st.spinner(f"Retraining the smaller network for {RETRAIN_EPOCHS} epochs…"):
            net, _ = retrain_filters(r.model, prepared.record, epochs=RETRAIN_EPOCHS, seed=s.seed)
            st.session_state.setdefault("filters_retrained", {})[key] = accuracy(net, prepared.record.x_test,
                                                                                 prepared.record.y_test)
    if b3.button("Prepare download", key="filters_dl_btn", help="state_dict, .pt2 program and ONNX of the smaller network"):
        try:
            with st.spinner("Exporting (ONNX is checked against PyTorch)…"):
                st.session_state["filters_zip"] = (key, _zip(r, prepared.record.x_test[:256]))
        except Exception as exc:  # noqa: BLE001
            show_error(exc)
    latency = st.session_state.get("filters_latency", {}).get(key)
    retrained = st.session_state.get("filters_retrained", {}).get(key)
    shown = report if latency is None else type(report)(**{**report.__dict__, "latency_ms": latency})
    verdict_box(filters_verdict(shown, retrained))
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Parameters kept", f"{100 * r.params['pruned'] / r.params['original']:.1f}%")
    m2.metric("FLOPs kept", f"{100 * r.flops['pruned'] / r.flops['original']:.1f}%")
    m3.metric("Accuracy", f"{100 * report.e2e.accuracy_after:.1f}%",
              f"{100 * (report.e2e.accuracy_after - report.e2e.accuracy_before):+.1f} points", delta_color="normal")
    m4.metric("Global ε", "—" if r.epsilon is None else f"{r.epsilon:.3g}", help=hint("global_eps"))
    if r.epsilon is not None and r.epsilon >= 1:
        m4.caption(":orange[ε ≥ 1 guarantees nothing useful:] the keep ratio, not the bound, set the sizes.")
    st.subheader("Measured: original, masked and smaller")
    counts = st.column_config.NumberColumn(format="localized")  # 266,610 as the verdict writes it, not 266610
    show.table(measured_table(shown), hide_index=True, width="stretch",
               column_config={"parameters": counts, "FLOPs (MACs per input)": counts, "file size (KiB)": counts})
    ready = st.session_state.get("filters_zip")
    if ready and ready[0] == key:
        st.download_button("Download the smaller network (.zip)", ready[1], f"{s.model}-{method}-{ratio:g}.zip",
                           "application/zip", key="filters_zip_dl", icon=":material/download:")
    st.subheader("The architecture before and after")
    show.chart_row([charts.widths_chart(r), charts.flops_chart(r)])
    st.subheader("Channel sensitivities per layer")
    labels = r.labels
    page_link_problems("filters-layer", {"filters_layer": link_shown(list(labels), labels.get)})
    layer = st.selectbox("Layer", list(labels), format_func=labels.get, key="filters_layer", bind="query-params")
    show.chart(charts.channel_sensitivity_bars(r, layer))
    w = next(x for x in r.widths if x.name == layer)
    conv = w.kind == "conv2d"
    ins, outs = ("input channels", "filters") if conv else ("inputs", "units")
    notes = []
    if w.gathered:  # what reaches it keeps every channel: the network's input, or a stream other layers share
        notes.append(f"what reaches it keeps all {w.in_before} {ins} (the network's input, or a residual stream that "
                     f"other layers read too), and the layer picks out the {w.in_after} it still uses")
    if w.folded:
        notes.append(f"{w.folded} removed {ins} still carried a constant; it was folded into this layer's bias")
    st.caption(f"{w.label}: {w.in_after} of {w.in_before} {ins} and {w.out_after} of {w.out_before} {outs} left."
               + (" " + "; ".join(notes)[:1].upper() + "; ".join(notes)[1:] + "." if notes else ""))


COMPARE_METHODS = ("pfp", "filter-l1", "sipp-hybrid", "wt")
COMPARE_RATIOS = (0.5, 0.3, 0.1)


@st.fragment
def _compare(s, prepared) -> None:
    st.subheader("Weights or channels: SiPP and PFP on one chart")
    st.markdown(f"{', '.join(COMPARE_METHODS)} at keep ratios {', '.join(map(str, COMPARE_RATIOS))} of the parameters. "
                "The weight methods are pruned to the same parameter count as PFP at each ratio; every point's "
                "latency is measured (median of 20 runs at batch 64).")
    # checked before the comparison runs: its x-axis control appears only then, and a link's bad value was named
    # only after a click, long after the link was opened
    page_link_problems("filters-compare", {"filters_cmp_x": link_shown(list(charts.COMPARE_X), _axis_label)})
    key = ("filters-compare", s.heavy_key, float(s.delta), int(s.seed))
    frame = st.session_state.get("filters_compare", {}).get(key)
    if frame is None:
        if not st.button("Run the comparison", key="filters_cmp_btn", type="primary"):
            return
        bar = st.progress(0.0, text="starting…")
        try:
            frame = compare(prepared, methods=COMPARE_METHODS, ratios=COMPARE_RATIOS, seed=s.seed,
                            progress=lambda f, m: bar.progress(min(1.0, f), text=m))
        except Exception as exc:  # noqa: BLE001
            bar.empty()
            show_error(exc)
            return
        bar.empty()
        st.session_state.setdefault("filters_compare", {})[key] = frame
    verdict_box(compare_verdict(frame))
    axis = st.radio("x-axis", list(charts.COMPARE_X), key="filters_cmp_x", horizontal=True, bind="query-params",
                    format_func=_axis_label)
    show.chart(charts.compare_chart(frame, axis))
    num = st.column_config.NumberColumn
    show.table(frame[[c for c in COMPARE_COLUMNS if c in frame]].rename(columns=COMPARE_COLUMNS), hide_index=True,
               width="stretch", column_config={
                   # pinned: 11 columns scroll sideways at 1280 px, and a row lost its method's name
                   "method": st.column_config.TextColumn(pinned=True),
                   "parameters": num(format="localized"), "FLOPs": num(format="localized"),
                   "parameter share": num(format="percent"), "FLOP share": num(format="percent"),
                   "accuracy": num(format="percent"), "latency (ms)": num(format="%.3f"),
                   "dense latency (ms)": num(format="%.3f"), "speed-up": num(format="%.2f×")})


def render() -> None:
    s, prepared, _ = obtain("Filters", INTRO, own_budget=True)  # its method and keep ratio are the page's own
    _explore(s, prepared)
    _compare(s, prepared)
