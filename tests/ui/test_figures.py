"""Figures (ui/charts/figure.py): one Vega-Lite template per chart shape, shared by every setting; a slider move
changes only the named data sets, so Streamlit redraws the chart in place. The numbers still reach the chart."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import vl_convert

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ui.charts import core as charts  # noqa: E402
from ui.charts.figure import Figure, template_of  # noqa: E402


@pytest.fixture(scope="module")
def reports():
    from sipp_core.pipeline import evaluate_prune, prepare

    p = prepare("lenet300", "mnist5k", sample_size=40, heldout=120)
    return [evaluate_prune(p, method="sipp-hybrid", keep_ratio=k) for k in (0.05, 0.3)] + [
        evaluate_prune(p, method="wt", keep_ratio=0.05)]


@pytest.mark.parametrize("make", [charts.density_figure, charts.bound_figure])
def test_two_settings_share_one_template_and_differ_only_in_data(reports, make):
    a, b = make(reports[0]), make(reports[1])
    assert isinstance(a, Figure) and a.key == b.key
    assert template_of(a)[1] is template_of(b)[1]  # built and converted once
    sa, sb = a.spec(), b.spec()
    assert set(sa["datasets"]) >= set(template_of(a)[1].get("datasets", {}))  # the template's fixed data stay
    assert {k: v for k, v in sa.items() if k != "datasets"} == {k: v for k, v in sb.items() if k != "datasets"}
    assert set(sa["datasets"]) >= set(a.data) and not all(
        sa["datasets"][n].equals(sb["datasets"][n]) for n in a.data)  # the numbers differ
    assert not set(template_of(a)[1].get("datasets", {})) & set(a.data)  # the shared template holds none of it


def test_a_method_without_a_bound_gets_its_own_template(reports):
    with_bound, without = charts.bound_figure(reports[0]), charts.bound_figure(reports[2])
    assert with_bound.key != without.key
    assert "no error bound" in str(without.to_dict()) and "no error bound" not in str(with_bound.to_dict())


def test_the_live_number_in_a_title_is_drawn_from_the_data(reports):
    """The density chart's title shows the overall keep ratio; Vega computes it from the data set."""
    for r in reports[:2]:
        svg = vl_convert.vegalite_to_svg(charts.density_figure(r).to_dict())
        assert f"Weights kept per layer: {100 * r.result.keep_ratio:.2f}% overall" in svg


def test_the_complete_chart_inlines_every_data_set(reports):
    fig = charts.bound_figure(reports[0])
    spec = fig.chart().to_dict()
    assert "errors" in spec["datasets"] and len(spec["datasets"]) == 2  # and the fixed "1 = whole signal" line
    assert len(spec["datasets"]["errors"]) == len(fig.data["errors"])
    assert spec["usermeta"]["sipp_height"] == fig.usermeta["sipp_height"]
