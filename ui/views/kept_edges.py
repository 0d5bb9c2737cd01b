"""Page 3, Kept edges: per-layer heatmaps, kept counts per unit, input pixels, conv filters."""
from __future__ import annotations

import streamlit as st

from ui import engine, show, tables
from ui import verdicts as vd
from ui.charts import images as charts_images
from ui.charts import kept_edges as charts
from ui.guard import obtain
from ui.results import verdict_box

INTRO = "Which edges survived. Small layers are interactive (hover an edge); large layers are drawn as images."
SMALL_LAYER = 4000  # edges; above this a layer is drawn as an image (a chart would freeze the browser)


def _image(key: tuple, build):
    return engine.derived(key, build)


@st.fragment
def _layer_view(s, report) -> None:
    names = tables.layer_names(report)
    layer = st.columns([1, 2])[0].selectbox("Layer", names, index=0, key="kept_layer",
                                            format_func=tables.layer_labels(report).get)
    info = report.prepared.infos[layer]
    per_unit = report.result.masks[layer].reshape(info.out_units, -1).sum(dim=1).numpy()
    verdict_box(vd.kept_units_verdict(info.label, per_unit, info.fan_in))
    n = info.out_units * info.fan_in
    if not per_unit.any():  # nothing to draw: a heatmap of grey and a colour bar of -1..1 said nothing true
        st.info(f"{info.label} keeps none of its {n:,} weights: every unit outputs only its bias. Keep more weights "
                "(a larger keep ratio, or a smaller ε) to see which edges a layer keeps.", icon=":material/block:")
        return
    rkey = (s.heavy_key, tuple(sorted(s.prune_kwargs().items())), layer)
    if n <= SMALL_LAYER:
        show.chart(charts.heatmap_small(tables.heatmap_frame(report, layer), info.label))
    else:
        def build():
            mask, vals, _ = tables.kept_matrix(report, layer)
            return charts_images.kept_heatmap(mask, vals, f"Kept edges of layer {info.label}")

        st.image(_image(("heatmap",) + rkey, build), width="content")
        st.caption(f"{n:,} edges: drawn as an image (rows: output units f, columns: inputs j). "
                   "Grey: pruned; colour: the value kept (sampled weights are reweighted).")
    if info.kind == "conv2d":
        def grid():
            plan = report.result.plans[layer]
            return charts_images.filter_grid(plan.mask.numpy(), plan.values.float().numpy(),
                                             f"Conv filters of layer {info.label}")

        st.image(_image(("grid",) + rkey, grid), width="content")
    show.chart(charts.kept_per_unit(report, layer))


def render() -> None:
    s, prepared, report = obtain("Kept edges", INTRO)
    _layer_view(s, report)
    first = tables.layer_names(report)[0]
    if prepared.record.is_image:
        maps = tables.input_pixel_maps(report, first)
        if maps is not None:
            st.subheader("The first layer on the input pixels")
            dense, kept, wsum = maps
            rkey = (s.heavy_key, tuple(sorted(s.prune_kwargs().items())))

            def counts():
                return charts_images.count_maps(
                    [("original network", dense), ("pruned network", kept)],
                    f"Layer {prepared.infos[first].label}: edges per input pixel", "edges per pixel")

            st.image(_image(("pixels",) + rkey, counts), width="content")
            st.caption("Each pixel: how many of the first layer's edges read it (summed over units, and over "
                       "patches for a convolution). Pruning keeps edges on the strokes' pixels and drops the border.")
