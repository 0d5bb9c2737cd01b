"""Figures (ui/charts/figure.py): one Vega-Lite template per chart shape, shared by every setting; a slider move
changes only the named data sets, so Streamlit redraws the chart in place. The numbers still reach the chart."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import vl_convert
from pagetest import prepared  # noqa: F401  (a fixture)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ui import tables  # noqa: E402
from ui.charts import guarantees as guarantee_charts  # noqa: E402
from ui.charts import layers as layer_charts  # noqa: E402
from ui.charts import sensitivity as sens_charts  # noqa: E402
from ui.charts.figure import Figure, spec_of  # noqa: E402


@pytest.fixture(scope="module")
def reports(prepared):
    from sipp_core.pipeline import evaluate_prune

    return [evaluate_prune(prepared, method="sipp-hybrid", keep_ratio=k) for k in (0.05, 0.3)] + [
        evaluate_prune(prepared, method="wt", keep_ratio=0.05)]


@pytest.fixture(scope="module")
def failing(prepared):
    """Two sampled prunes whose bounds some (row, point) pairs break (a loose δ)."""
    from sipp_core.pipeline import evaluate_prune

    out = [evaluate_prune(prepared, method="sipp-rand", epsilon=e, delta=0.5) for e in (5.0, 10.0)]
    assert all(int(tables.failure_frame(r)["failures"].sum()) > 0 for r in out)
    return out


@pytest.mark.parametrize("make", [layer_charts.density_figure, layer_charts.bound_figure])
def test_two_settings_share_one_template_and_differ_only_in_data(reports, make):
    a, b = make(reports[0]), make(reports[1])
    assert isinstance(a, Figure) and a.key == b.key
    assert spec_of(a) is spec_of(b)  # built and converted once
    sa, sb = a.spec(), b.spec()
    assert set(sa["datasets"]) >= set(spec_of(a).get("datasets", {}))  # the template's fixed data stay
    assert {k: v for k, v in sa.items() if k != "datasets"} == {k: v for k, v in sb.items() if k != "datasets"}
    assert set(sa["datasets"]) >= set(a.data) and not all(
        sa["datasets"][n].equals(sb["datasets"][n]) for n in a.data)  # the numbers differ
    assert not set(spec_of(a).get("datasets", {})) & set(a.data)  # the shared template holds none of it


def test_a_method_without_a_bound_gets_its_own_template(reports):
    with_bound, without = layer_charts.bound_figure(reports[0]), layer_charts.bound_figure(reports[2])
    assert with_bound.key != without.key
    assert "no error bound" in str(without.to_dict()) and "no error bound" not in str(with_bound.to_dict())
    # WT at keep ratio 1 has errors of exactly 0, drawn at the floor: the note says so for it too
    assert "exact zeros are drawn a power of ten below the rest" in without.title["subtitle"]


def test_the_bound_charts_legend_lists_what_is_drawn_and_keeps_each_series_colour(reports):
    from ui.charts.core import SERIES_COLOR

    for r in (reports[0], reports[2]):  # sipp-hybrid (bounds drawn), wt (no bound: measured errors only)
        fig = layer_charts.bound_figure(r)
        drawn = list(dict.fromkeys(fig.data["errors"]["series"]))
        scale = fig.to_dict()["layer"][0]["encoding"]["color"]["scale"]
        assert sorted(scale["domain"]) == sorted(drawn)
        assert scale["range"] == [SERIES_COLOR[s] for s in scale["domain"]]
    assert not any("bound" in s for s in layer_charts.bound_figure(reports[2]).to_dict()["layer"][0]["encoding"][
        "color"]["scale"]["domain"])


def test_the_live_number_in_a_title_is_drawn_from_the_data(reports):
    """The density chart's title shows the overall keep ratio; Vega computes it from the data set."""
    for r in reports[:2]:
        svg = vl_convert.vegalite_to_svg(layer_charts.density_figure(r).to_dict())
        assert f"Weights kept per layer: {100 * r.result.keep_ratio:.2f}% overall" in svg


def test_the_complete_chart_inlines_every_data_set(reports):
    fig = layer_charts.bound_figure(reports[0])
    spec = fig.chart().to_dict()
    # and the fixed line at 1 (the whole signal), and the layers to mark ✗ (none here)
    assert "errors" in spec["datasets"] and "broken" in spec["datasets"] and len(spec["datasets"]) == 3
    assert len(spec["datasets"]["errors"]) == len(fig.data["errors"])
    assert spec["usermeta"]["sipp_height"] == fig.usermeta["sipp_height"]


def _shared_template(a, b) -> None:
    assert isinstance(a, Figure) and a.key == b.key and spec_of(a) is spec_of(b)
    sa, sb = a.spec(), b.spec()
    assert {k: v for k, v in sa.items() if k != "datasets"} == {k: v for k, v in sb.items() if k != "datasets"}


def test_failure_rates_share_a_template_and_leave_room_above_the_tallest_bar(failing):
    a, b = (guarantee_charts.failure_figure(r, 0.5) for r in failing)
    _shared_template(a, b)
    for fig in (a, b):
        assert fig.data["top"]["y"][0] >= 1.3 * fig.data["failures"]["percent"].max() - 1e-12
    svg = vl_convert.vegalite_to_svg(a.to_dict())
    assert "Failure rate beside δ" in svg and "δ = 0.5" in svg and "5e-01" not in svg  # as the sidebar writes it


def test_the_sensitivity_scatter_keeps_its_points_and_recolours_them(prepared, reports):
    from sipp_core.zoo.layers import prunable_layers

    name = "fc2"
    w = prunable_layers(prepared.model)[name].weight
    pts = tables.weight_sensitivity_points(w, prepared.sensitivities[name], None)
    a, b = (sens_charts.sensitivity_figure(tables.with_kept(pts, w, r.result.masks[name]), "fc2 · Linear 300→100")
            for r in reports[:2])
    _shared_template(a, b)
    assert (a.data["edges"]["kept"] == "kept").sum() < (b.data["edges"]["kept"] == "kept").sum()  # 5% vs 30% kept
    for r in reports[:2]:  # the same frame as sampling with the mask at once
        direct = tables.weight_sensitivity_points(w, prepared.sensitivities[name], r.result.masks[name])
        assert tables.with_kept(pts, w, r.result.masks[name]).equals(direct)


def test_the_row_scatter_shares_a_template_and_states_its_counts(reports):
    a, b = (guarantee_charts.row_figure(r, "fc2") for r in reports[:2])
    _shared_template(a, b)
    for fig, r in zip((a, b), reports[:2]):
        rows = fig.data["rows"]
        above = int((rows["measured"] > rows["bound"]).sum())
        assert fig.data["counts"]["above"][0] == f"above y = x: {above:,} of {len(rows):,}"
        lo, hi = fig.data["diagonal"]["x"]
        assert lo <= rows["bound"].min() and hi >= max(rows["bound"].max(), rows["shown"].max())  # every point inside
    svg = vl_convert.vegalite_to_svg(a.to_dict())
    assert "above y = x:" in svg and "Linear 300→100" in svg
    # the legend names the kinds of rows drawn, no others (every fc1 row deterministic: 'sampled' was listed too)
    for fig in (a, b):
        color = next(layer["encoding"]["color"] for layer in fig.spec()["layer"] if "color" in layer.get("encoding", {}))
        assert set(color["scale"]["domain"]) == set(fig.data["rows"]["method"]), color["scale"]["domain"]


def test_layers_whose_held_out_rows_broke_their_bound_are_marked_on_the_axis(failing):
    """The layer's largest error can sit below its largest bound while rows break their own: such layers are named
    with a ✗ in vermillion, and a subtitle line says what the mark means; no mark, no line."""
    for r in failing:
        fig = layer_charts.bound_figure(r)
        broken = layer_charts.broken_layers(r)
        assert broken and list(fig.data["broken"]["layer"]) == broken
        svg = vl_convert.vegalite_to_svg(fig.to_dict())
        for label in broken:
            assert f"✗ {label.split(' · ')[0]}" in svg
        assert "✗: a layer where held-out points broke a row's bound" in fig.title["subtitle"]  # on one line


def test_no_layer_is_marked_where_every_row_held(reports):
    for r in reports:
        fig = layer_charts.bound_figure(r)
        if layer_charts.broken_layers(r):
            continue
        assert fig.data["broken"].empty and "✗" not in vl_convert.vegalite_to_svg(fig.to_dict())
        assert "✗" not in str(fig.title)


def test_the_per_layer_table_has_row_kinds_for_sipp_only(reports):
    """WT has no deterministic or sampled rows: its table has no such columns (it read 600 det. rows)."""
    sipp, wt = tables.layer_table(reports[0]), tables.layer_table(reports[2])
    assert {"rows_deterministic", "rows_sampled", "rows_whole", "rows_pruned"} <= set(sipp.columns)
    assert not {"rows_deterministic", "rows_sampled", "rows_whole", "rows_pruned"} & set(wt.columns)
