"""Page 2, Sensitivity: distributions, s vs |w|, totals per unit, top edges, one edge's formula live (in an
expander)."""
from __future__ import annotations

import streamlit as st
import torch

from sipp_core.zoo.layers import capture_inputs, prunable_layers
from ui import engine, show, tables
from ui import formulas as fx
from ui import verdicts as vd
from ui.charts import sensitivity as charts
from ui.guard import obtain
from ui.results import verdict_box

INTRO = ("An edge's **sensitivity** s is the largest share of its unit's (one-signed) input signal it ever "
         "carried on the sample S. SiPP keeps high-s edges; magnitude pruning keeps high-|w| edges.")


def layer_inputs(s, prepared, name: str):
    """The layer's input on S as the ORIGINAL network feeds it (cached; computed under the model lock)."""

    def build():
        with engine.model_lock(prepared), capture_inputs(prepared.model, [name]) as got:
            with torch.no_grad():
                prepared.model.eval()
                prepared.model(prepared.s_x)
        return got[name].detach().cpu().clone()

    return engine.derived(("layer_inputs", s.heavy_key, name), build)


@st.fragment
def _per_layer(s, prepared, report) -> None:
    names = list(prepared.infos)
    layer = st.columns([1, 2])[0].selectbox("Layer", names, index=0, key="sens_layer", help="Layers by module name and shape",
                                            format_func=tables.layer_labels(prepared).get)
    mod = prunable_layers(prepared.model)[layer]
    w, sens = mod.weight.detach().cpu().numpy(), prepared.sensitivities[layer].cpu().numpy()
    ranks = engine.derived(("rank_verdict", s.heavy_key, layer),  # no mask in it: once per layer
                           lambda: vd.rank_verdict(prepared.infos[layer].label, w, sens))
    verdict_box(ranks + vd.kept_verdict(w, sens, report.result.masks[layer].cpu().numpy(), s.method))
    label = prepared.infos[layer].label
    # the scatter's points are fixed per layer (cached); only their kept/pruned colour follows the slider, and the
    # chart is a Figure: a slider move sends that column, not a new chart
    pts = engine.derived(("sensitivity_points", s.heavy_key, layer), lambda: tables.weight_sensitivity_points(
        mod.weight, prepared.sensitivities[layer], None))
    # built once per setting and layer (engine.chart): a page switch redraws it without rebuilding
    c, spec = engine.chart(("row_totals", s.heavy_key, layer), lambda: charts.row_totals(
        tables.row_totals_frame(mod.weight, prepared.sensitivities[layer]), label))
    show.chart_row([charts.sensitivity_figure(tables.with_kept(pts, mod.weight, report.result.masks[layer]), label),
                    (c, spec)])


@st.fragment
def _one_edge(s, prepared, report) -> None:
    names = list(prepared.infos)
    c1, c2, c3 = st.columns(3)
    layer = c1.selectbox("Layer of the edge", names, index=len(names) - 1, key="edge_layer",
                         format_func=tables.layer_labels(prepared).get)
    info = prepared.infos[layer]
    top = tables.top_edges(prepared, report, k=1, layer=layer).iloc[0]
    f = c2.number_input(f"Unit f (0 … {info.out_units - 1})", 0, info.out_units - 1, int(top["unit"]), key=f"edge_f_{layer}")
    j = c3.number_input(f"Input j (0 … {info.fan_in - 1})", 0, info.fan_in - 1, int(top["input"]), key=f"edge_j_{layer}")
    st.caption("Starts at the layer's most sensitive edge; type any unit and input.")
    mod = prunable_layers(prepared.model)[layer]
    a = layer_inputs(s, prepared, layer)
    tr = fx.edge_sensitivity_trace(mod, a, int(f), int(j), prepared.patch_reduction)
    st.latex(fx.TEX_Z)
    st.latex(fx.TEX_G)
    st.latex(fx.TEX_S[prepared.patch_reduction])
    st.latex(fx.tex_edge_live(tr, int(f), int(j), prepared.patch_reduction))
    engine_s = float(prepared.sensitivities[layer].reshape(info.out_units, -1)[int(f), int(j)])
    kept = bool(report.result.masks[layer].reshape(info.out_units, -1)[int(f), int(j)])
    agree = abs(engine_s - tr["s"]) <= 1e-4 * max(1.0, abs(engine_s))
    st.markdown(
        f"w = {tr['w']:.5g}; recomputed s = **{tr['s']:.6g}**, engine's s = **{engine_s:.6g}** "
        + ("(agree)" if agree else ":red[(differ: please report this)]")
        + f"; at {fx.point_label(tr)}; this edge is **{'kept' if kept else 'pruned'}** by {s.method}."
    )
    if tr["sign"] != 0:  # the edge's profile does not depend on the slider: built once per edge
        c, spec = engine.chart(("edge_profile", s.heavy_key, layer, int(f), int(j)),
                               lambda: charts.edge_profile(tr["g"], tr["n_images"], tr["point"]))
        show.chart(c, spec=spec)
        if tr["signed"]:
            st.caption("This layer's input has negative entries, so every point x is split into the non-negative "
                       "pseudo-points a⁺ = max(a, 0) and a⁻ = max(−a, 0) (docs/sipp.md §2.1).")


def render() -> None:
    s, prepared, report = obtain("Sensitivity", INTRO)
    st.latex(fx.TEX_S[prepared.patch_reduction])
    if prepared.patch_reduction == "mean":
        st.warning("Patch reduction 'mean' is the authors' deterministic variant: it carries no bound (docs/sipp.md §8.11).")
    c, spec = engine.chart(("sensitivity_histogram", s.heavy_key), lambda: charts.sensitivity_histogram(prepared))
    show.chart(c, spec=spec)
    _per_layer(s, prepared, report)
    st.subheader("Most sensitive edges")
    top = engine.top_edges(engine.report_key(s), prepared, report)
    show.table(top, hide_index=True, width="stretch", column_config={
        "unit": st.column_config.NumberColumn("unit f"), "input": st.column_config.NumberColumn("input j"),
        "w": st.column_config.NumberColumn("w", format="%.4f"), "s": st.column_config.NumberColumn("s", format="%.4g"),
        "kept": st.column_config.CheckboxColumn("kept")})
    # Made only while open, as the Prune page's formulas are: its four formulas, three inputs and chart took about
    # a fifth of a switch to this page (688 -> 545 ms median without them, 20 switches each on a 2-core laptop)
    box = st.expander("One edge, by the definition: its sensitivity recomputed step by step with this network's "
                      "numbers", icon=":material/function:", key="edge_open", on_change="rerun")
    if box.open:
        with box:
            _one_edge(s, prepared, report)
