"""Chart builders, images, tables and the live formulas, outside Streamlit.

Every chart has a title and labelled axes; big layers become bounded images;
the formulas the app shows reproduce the engine's numbers.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import pytest
import torch
from pagetest import axis_titles, prepared  # noqa: F401  (prepared: a fixture)
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sipp_core.structured.filters import prune_filters  # noqa: E402
from ui import formulas as fx  # noqa: E402
from ui import tables  # noqa: E402
from ui.charts import core as charts  # noqa: E402
from ui.charts import filters as cf  # noqa: E402
from ui.charts import guarantees as guarantee_charts  # noqa: E402
from ui.charts import history as ch  # noqa: E402
from ui.charts import images as charts_images  # noqa: E402
from ui.charts import kept_edges as kept_charts  # noqa: E402
from ui.charts import layers as layer_charts  # noqa: E402
from ui.charts import learn as learn_charts  # noqa: E402
from ui.charts import sensitivity as sens_charts  # noqa: E402
from ui.charts import tradeoffs as ct  # noqa: E402


@pytest.fixture(scope="module")
def report(prepared):
    from sipp_core.pipeline import evaluate_prune

    return evaluate_prune(prepared, method="sipp-hybrid", keep_ratio=0.05)


@pytest.fixture(scope="module")
def eps_report(prepared):
    from sipp_core.pipeline import evaluate_prune

    return evaluate_prune(prepared, method="sipp-rand", epsilon=2.0, delta=1e-6)


def _walk(spec, fn):
    if isinstance(spec, dict):
        fn(spec)
        for k, v in spec.items():
            if k not in ("datasets", "data", "values"):
                _walk(v, fn)
    elif isinstance(spec, list):
        for v in spec:
            _walk(v, fn)


def _titled(enc: dict, ch: str) -> bool | None:
    """None when the view does not encode `ch` with a field; else whether it carries a title (or no axis)."""
    e = enc.get(ch) if isinstance(enc, dict) else None
    if not isinstance(e, dict) or "field" not in e:
        return None
    return bool(e.get("title")) or e.get("axis", {}) is None


def assert_readable(chart):
    """A title at the top, and every positional axis titled (in a layer chart: by some layer)."""
    spec = chart.to_dict()
    assert spec.get("title") or any(
        isinstance(s, dict) and s.get("title") for s in spec.get("vconcat", []) + spec.get("hconcat", []) + spec.get("layer", []))
    missing = []

    def check(d):
        if "layer" in d:
            for ch in ("x", "y"):
                marks = [_titled(l.get("encoding", {}), ch) for l in d["layer"] if isinstance(l, dict)]
                marks = [m for m in marks if m is not None]
                if marks and not any(marks):
                    missing.append(ch)
        elif "mark" in d and d not in parents:
            for ch in ("x", "y"):
                if _titled(d.get("encoding", {}), ch) is False:
                    missing.append(ch)

    parents = [l for d in _all_layers(spec) for l in d]
    _walk(spec, check)
    assert not missing, missing


def _all_layers(spec):
    out = []
    _walk(spec, lambda d: out.append(d["layer"]) if "layer" in d else None)
    return out


def test_prune_page_charts(report):
    for c in (layer_charts.density_chart(report), layer_charts.bound_vs_measured(report)):
        assert isinstance(c, alt.TopLevelMixin)
        assert_readable(c)


def test_bound_chart_uses_a_log_axis_and_shows_the_loose_bound(report):
    spec = layer_charts.bound_vs_measured(report).to_dict()
    text = str(spec)
    assert "'type': 'log'" in text
    assert "largest row bound" in text and "measured max held-out" in text


def test_baseline_chart_says_there_is_no_bound(prepared):
    from sipp_core.pipeline import evaluate_prune

    r = evaluate_prune(prepared, method="wt", keep_ratio=0.05)
    spec = str(layer_charts.bound_vs_measured(r).to_dict())
    assert "no error bound" in spec
    assert "no error bound" in guarantee_charts.failure_rates(r, 1e-16).to_dict()["usermeta"]["sipp_empty"]


def test_sensitivity_charts(prepared, report):
    assert_readable(sens_charts.sensitivity_histogram(prepared))
    df, zeros = tables.sensitivity_histogram(prepared.sensitivities)
    assert len(df) < 400 and set(zeros) == set(prepared.sensitivities)  # pre-binned, not raw edges
    from sipp_core.zoo.layers import prunable_layers

    name = list(prepared.infos)[1]
    w = prunable_layers(prepared.model)[name].weight
    pts = tables.weight_sensitivity_points(w, prepared.sensitivities[name], report.result.masks[name])
    assert len(pts) <= 2500
    assert_readable(sens_charts.sensitivity_vs_weight(pts, name))
    totals = sens_charts.row_totals(tables.row_totals_frame(w, prepared.sensitivities[name]), name)
    assert_readable(totals)
    # units are whole numbers (a 6-unit layer showed ticks at 0.5), and s, a share, tops the axis at 1, not 10
    unit_axis = totals.to_dict()["encoding"]["x"]["axis"]
    assert unit_axis["format"] == "d" and unit_axis["tickMinStep"] == 1
    assert totals.to_dict()["encoding"]["x"]["scale"]["nice"] is False  # 300 units drew an axis from -50 to 350
    # T within one decade: a plain axis (a log one labelled 7, 7.5, 8, 9.5); T over decades: a log one
    narrow = pd.DataFrame({"unit": [0, 1, 2], "sign": ["+"] * 3, "T": [7.0, 9.0, 12.5], "nnz": [5] * 3})
    assert sens_charts.row_totals(narrow, "fc1").to_dict()["encoding"]["y"]["scale"] == {"zero": False, "padding": 10}
    wide_t = narrow.assign(T=[1.0, 30.0, 900.0])
    assert sens_charts.row_totals(wide_t, "fc1").to_dict()["encoding"]["y"]["scale"]["type"] == "log"
    s_scale = sens_charts.sensitivity_vs_weight(pts, name).to_dict()["encoding"]["y"]["scale"]
    assert s_scale == {"type": "log", "domainMax": 1}
    top = tables.top_edges(prepared, report, k=10)
    assert len(top) == 10 and top["s"].is_monotonic_decreasing


def test_kept_edge_views(report):
    names = tables.layer_names(report)
    small = names[-1]  # 100 x 10: interactive
    assert_readable(kept_charts.heatmap_small(tables.heatmap_frame(report, small), small))
    assert_readable(kept_charts.kept_per_unit(report, small))
    mask, vals, w = tables.kept_matrix(report, names[0])  # 300 x 784: an image
    img = charts_images.kept_heatmap(mask, vals, "first layer")
    assert isinstance(img, Image.Image) and img.width <= 1200 and img.height <= 900
    dense, kept, wsum = tables.input_pixel_maps(report, names[0])
    assert dense.shape == (28, 28) and kept.sum() == report.result.plans[names[0]].kept
    pic = charts_images.count_maps([("original", dense), ("pruned", kept)], "pixels", "edges")
    assert pic.width < 1000


def test_conv_views():
    from sipp_core.plan.pruning import prune
    from sipp_core.zoo.models import build_model

    net = build_model("lenet5", (1, 16, 16), 4, seed=0).eval()
    x = torch.randn(12, 1, 16, 16)
    r = prune(net, x, method="sipp-det", keep_ratio=0.3)
    plan = r.plans["conv1"]
    img = charts_images.filter_grid(plan.mask.numpy(), plan.values.numpy(), "conv")
    assert isinstance(img, Image.Image)


def test_guarantee_charts(report, eps_report):
    name = tables.layer_names(report)[1]
    for rep in (report, eps_report):
        assert_readable(guarantee_charts.row_scatter(rep, name, "heldout"))
        assert_readable(guarantee_charts.row_scatter(rep, name, "s"))
        assert_readable(guarantee_charts.failure_rates(rep, 1e-6))
    df = tables.sweep_frame({2.0: eps_report, 1.0: report})
    assert list(df["eps"]) == [1.0, 2.0]
    assert_readable(guarantee_charts.eps_keep_chart(df, 2.0, "sipp-rand"))
    assert_readable(guarantee_charts.eps_error_chart(df, 2.0, "sipp-rand"))
    # the floor as the log axis writes its numbers (it said "3e-02" beside an axis reading 0.03)
    sub = " ".join(guarantee_charts.eps_error_chart(df, 2.0, "sipp-rand").to_dict()["title"]["subtitle"])
    assert "e-0" not in sub and "sits at the floor, " in sub, sub


def test_layer_table_and_headline(report):
    df = tables.layer_table(report)
    assert list(df["name"]) == tables.layer_names(report)
    # every row of a layer is of one of the four kinds, each with its column (fc3 at 85% kept read "0 det., 0 sampled")
    units = {n: int(p.row_method.numel()) for n, p in report.result.plans.items()}
    assert (df[["rows_deterministic", "rows_sampled", "rows_whole", "rows_pruned"]].sum(axis=1)
            == df["name"].map(units)).all()
    h = tables.headline(report)
    assert h["kept"] == report.result.kept and 0 < h["keep_ratio"] < 0.06
    assert h["has_bound"] and h["bound_max"] > 0
    # failed pairs counted layer by layer, from the same held-out measurements as the failure-rate chart
    fails = tables.failure_frame(report)
    held = fails[fails["points"] == "held-out"]
    assert h["failed_pairs_heldout"] == held["failures"].sum() and h["pairs_heldout"] == held["pairs"].sum() > 0
    assert h["failed_layers_heldout"] == list(held.loc[held["failures"] > 0, "layer"])


# ---- formulas: the numbers shown are the engine's numbers ------------------------------------

def test_sample_size_formula_matches_engine_and_spec():
    from sipp_core.plan.bounds import sample_size
    from sipp_core.zoo.layers import layer_infos
    from sipp_core.zoo.models import build_model

    net = build_model("lenet300", (1, 28, 28), 10)
    eta, eta_max = fx.eta_counts(layer_infos(net, (1, 28, 28)))
    assert (eta, eta_max) == (410, 300)
    assert fx.sample_size_value(eta, eta_max, 1e-16) == 152 == sample_size(net, (1, 28, 28), 1e-16)
    assert "152" in fx.tex_sample_size_live(eta, eta_max, 1e-16)


@pytest.mark.parametrize("m,T,P,k,delta", [(1, 1.0, 1, 1, 1e-16), (7, 3.5, 784, 25, 0.1), (50, 12.0, 1, 1, 1e-6)])
def test_bound_formulas_match_engine(m, T, P, k, delta):
    from sipp_core.plan import bounds

    L = fx.log_term_value(P, k, delta)
    assert L == pytest.approx(float(bounds.log_term(P, k, delta)))
    assert fx.eps_rand_value(m, T, L) == pytest.approx(float(bounds.eps_rand(m, T, L)))
    eps = 0.7
    # the closed form shown in the app; the engine corrects float round-off at the ceiling by one at most
    assert abs(fx.m_for_eps_value(eps, T, L) - int(bounds.m_for_eps(eps, T, L))) <= 1


def test_row_bound_shown_is_the_engines(report):
    from ui.explain import row_numbers, worst_row

    layer, f, c = worst_row(report)
    r = row_numbers(report, layer, f, c)
    expected = r["eps_rand"] if r["method"] == 1 else 3.0 * r["eps_det"]
    assert r["bound"] == pytest.approx(expected, rel=1e-6)


def test_tex_numbers():
    assert fx.tex_num(1e-16) == "10^{-16}"
    assert fx.tex_num(0.25) == "0.25"
    assert "10^{5}" in fx.tex_num(123456.0)
    assert fx.tex_num(float("nan")) == r"\text{n/a}"


def test_edge_trace_recomputes_the_engines_sensitivity(prepared):
    from sipp_core.zoo.layers import capture_inputs, prunable_layers

    mods = prunable_layers(prepared.model)
    for name in prepared.infos:
        with torch.no_grad(), capture_inputs(prepared.model, [name]) as got:
            prepared.model(prepared.s_x)
        s = prepared.sensitivities[name].reshape(prepared.infos[name].out_units, -1)
        for f, j in [(0, 0), (1, 3), divmod(int(torch.argmax(s)), s.shape[1])]:
            tr = fx.edge_sensitivity_trace(mods[name], got[name], f, j)
            assert tr["s"] == pytest.approx(float(s[f, j]), rel=1e-4, abs=1e-6), (name, f, j)


def test_edge_trace_on_a_conv_layer():
    from sipp_core.sensitivity.api import compute_sensitivities
    from sipp_core.zoo.layers import capture_inputs, prunable_layers
    from sipp_core.zoo.models import build_model

    net = build_model("lenet5", (1, 16, 16), 4, seed=0).eval()
    x = torch.randn(10, 1, 16, 16)
    sens = compute_sensitivities(net, x, patch_reduction="max")
    mods = prunable_layers(net)
    for name in ("conv1", "conv2"):
        with torch.no_grad(), capture_inputs(net, [name]) as got:
            net(x)
        s = sens[name].reshape(sens[name].shape[0], -1)
        f, j = divmod(int(torch.argmax(s)), s.shape[1])
        tr = fx.edge_sensitivity_trace(mods[name], got[name], f, j)
        assert tr["s"] == pytest.approx(float(s[f, j]), rel=1e-4, abs=1e-6)


def test_learn_walk_matches_the_engine():
    from ui import learn_core as lc

    toy = lc.train_toy("moons", 4, 0, epochs=5)
    for layer in toy.layer_names:
        w = lc.walk_layer(toy, layer, s_size=6)
        assert np.allclose(w.s, w.s_engine, rtol=1e-4, atol=1e-6)
        rows = lc.row_table(w, 1, 1e-2)
        assert len(rows) == 2 * w.W.shape[0]
    weights = [toy.model.get_submodule(n).weight.detach().numpy() for n in toy.layer_names]
    assert_readable(learn_charts.network_diagram(weights))
    assert math.isfinite(toy.accuracy)
    # the subtitle promises dashed grey edges only where one is pruned (Learn's step 1 has none)
    subtitle = lambda c: " ".join(c.to_dict()["title"]["subtitle"])  # noqa: E731
    assert "dashed grey" not in subtitle(learn_charts.network_diagram(weights))
    masks = [np.ones_like(w, dtype=bool) for w in weights]
    masks[0][0, 0] = False
    assert "dashed grey: pruned" in subtitle(learn_charts.network_diagram(weights, masks))


# ---- trade-off, retraining and speed charts (ui.charts.tradeoffs) --------------------------------------

_axis_titles = axis_titles  # one walker for every chart test (tests/pagetest.py)


def test_trade_off_charts_are_titled_with_axis_units():
    steps = [dict(step=1, keep_ratio_requested=0.5, keep_ratio=0.5, accuracy_pruned=0.9, accuracy_finetuned=0.95),
             dict(step=2, keep_ratio_requested=0.1, keep_ratio=0.1, accuracy_pruned=0.7, accuracy_finetuned=0.93)]
    ticket = dict(accuracy_init=0.1, accuracy_curve=[0.8, 0.9], keep_ratio=0.05, accuracy=0.9)
    random = dict(accuracy_init=0.1, accuracy_curve=[0.7, 0.8], keep_ratio=0.05, accuracy=0.8)
    layers = pd.DataFrame([dict(name="1", kind="linear", shape=[10, 40], batch_size=b, dense_ms=1.0, csr_ms=c, density=0.1)
                           for b, c in ((1, 2.0), (256, 0.5))])
    built = [ct.cascade_chart(steps, 0.96), ct.isolation_chart(ticket, random, 0.96),
             ct.speedup_chart(layers, [dict(batch_size=1, dense_ms=1.0, csr_ms=2.0, layers=1)]),
             ct.file_size_chart(dict(dense=1000, dense_zip=200, csr_torch=500, csr_npz=150))]
    for c in built:
        spec = c.to_dict()
        assert spec["title"]["text"]
        titles = _axis_titles(spec)
        assert titles["x"] and titles["y"], titles
        assert spec["usermeta"]["sipp_height"] > 100


# ---- projector: type sizes, legends that name every mark, sentences instead of blank charts ----------------

TITLE_MIN, TEXT_MIN = 16, 13
CHAR_PX = 7.5  # mean glyph width of a 13 px sans-serif label (Vega measures; this is a safe over-estimate)
SYMBOL_PX = 30  # legend symbol, its padding and the gap to the next column


def _font_sizes(spec) -> list[tuple[str, float]]:
    """(where, px) of every font size in a spec: its config, titles, axes, legends and text marks."""
    out = []

    def walk(d, path):
        if isinstance(d, dict):
            for k, v in d.items():
                if k in ("datasets", "data", "values"):
                    continue
                if isinstance(v, (int, float)) and k.lower().endswith("fontsize"):
                    out.append((f"{path}.{k}", v))
                walk(v, f"{path}.{k}")
        elif isinstance(d, list):
            for i, v in enumerate(d):
                walk(v, f"{path}[{i}]")

    walk(spec, "")
    return out


def assert_projector_sizes(chart):
    """Titles >= 16 px; subtitles, axis labels and titles, legends and annotations >= 13 px, in the chart's own config."""
    spec = chart.to_dict()
    cfg = spec.get("config", {})
    assert cfg.get("title", {}).get("fontSize", 0) >= TITLE_MIN, "chart title size not set in its own config"
    assert cfg.get("title", {}).get("subtitleFontSize", 0) >= TEXT_MIN
    for part in ("axis", "legend"):
        for key in ("labelFontSize", "titleFontSize"):
            assert cfg.get(part, {}).get(key, 0) >= TEXT_MIN, (part, key)
    small = []
    for where, px in _font_sizes(spec):
        title = where.endswith("title.fontSize") and ".encoding." not in where and ".axis" not in where
        if px < (TITLE_MIN if title else TEXT_MIN):
            small.append((where, px))
    assert not small, small


def _views(spec, data=None, width=None):
    """(view, its data rows, the width it is drawn at) for every single view in a (layered, concatenated) spec."""
    datasets = spec.get("datasets", {})

    def rows(d, inherited):
        ref = d.get("data")
        if isinstance(ref, dict) and "name" in ref:
            return datasets.get(ref["name"], [])
        if isinstance(ref, dict) and "values" in ref:
            return ref["values"]
        return inherited

    def walk(d, inherited, w):
        r = rows(d, inherited)
        w = d.get("width", w) if isinstance(d.get("width"), (int, float)) else w
        if "mark" in d:
            yield d, r, w
        for key in ("layer", "vconcat", "hconcat", "concat"):
            for sub in d.get(key, []):
                yield from walk(sub, r, w)

    # the top-level spec shares the same datasets table
    spec.setdefault("datasets", datasets)
    yield from walk(spec, data or [], width)


def assert_legends_name_every_mark(chart):
    """Every colour or shape a mark is drawn in is named: in a legend whose scale lists it (and that fits the
    chart's width, so nothing is clipped), or on an axis that encodes the same field."""
    spec = chart.to_dict()
    problems = []
    for view, rows, width in _views(spec):
        enc = view.get("encoding", {})
        on_axis = {enc[c].get("field") for c in ("x", "y") if isinstance(enc.get(c), dict)}
        for ch in ("color", "shape", "fill"):
            e = enc.get(ch)
            if not isinstance(e, dict) or "field" not in e:
                continue
            field = e["field"]
            values = {str(r.get(field)) for r in rows if r.get(field) is not None}
            if "legend" in e and e["legend"] is None:
                if field not in on_axis and e.get("type") == "nominal":
                    problems.append(f"{ch} {field!r}: drawn in several colours with no legend and no axis")
                continue
            domain = (e.get("scale") or {}).get("domain")
            if isinstance(domain, list) and e.get("type") == "nominal":
                missing = values - {str(v) for v in domain}
                if missing:
                    problems.append(f"{ch} {field!r}: {sorted(missing)} drawn but not in the legend")
            legend = e.get("legend") or {}
            if legend.get("orient") == "bottom" and width and e.get("type") == "nominal":
                names = [str(v) for v in (domain if isinstance(domain, list) else sorted(values))]
                limit = legend.get("labelLimit", 220)
                col = max([min(CHAR_PX * len(n), limit) for n in names] or [0]) + SYMBOL_PX
                columns = legend.get("columns") or len(names)
                if min(columns, len(names)) * col > width:
                    problems.append(f"{ch} {field!r}: a bottom legend of {min(columns, len(names))} columns of "
                                    f"{col:.0f} px does not fit the chart's {width} px")
    assert not problems, problems


def assert_empty_sentence_fits(chart):
    spec = chart.to_dict()
    sentence = spec["usermeta"]["sipp_empty"]
    assert sentence.endswith(".") and len(sentence.split()) >= 6, sentence
    for view, rows, width in _views(spec):
        for r in rows:
            for line in str(r.get("t", "")).split("\n"):
                assert len(line) * 8.0 <= width, (line, width)  # 15 px text


def _sweep_frame():
    from sipp_core.jobs.sweeps import ROW_FIELDS

    rows = []
    for method, base in (("sipp-hybrid", 0.97), ("sipp-det", 0.96), ("wt", 0.975), ("uniform", 0.9), ("random", 0.5)):
        for seed in (0, 1):
            for k in (0.5, 0.2, 0.05):
                acc = base - (0.5 - k) * 0.1 - 0.01 * seed
                rows.append(dict(method=method, seed=seed, keep_ratio_requested=k, keep_ratio=k, kept=int(k * 1000),
                                 total=1000, accuracy_before=0.98, accuracy_after=acc, accuracy_drop=0.98 - acc,
                                 agreement=acc, logits_rel_error=0.6 - k, time_s=0.1, error=None,
                                 bound_max=(3.0 / k if method.startswith("sipp") else None),
                                 measured_max_heldout=0.1, failure_rate_heldout=0.0))
    return pd.DataFrame(rows, columns=list(ROW_FIELDS))


@pytest.fixture(scope="module")
def every_chart(prepared, report, eps_report):
    """One chart from every builder in ui.charts (core, smoothness, tradeoffs), on tiny records."""
    from sipp_core.jobs.sweeps import prune_potential
    from sipp_core.smoothness.core import compare, make_paths
    from sipp_core.zoo.layers import prunable_layers
    from ui import learn_core as lc
    from ui.charts import smoothness as cs

    name = tables.layer_names(report)[1]
    small = tables.layer_names(report)[-1]
    w = prunable_layers(prepared.model)[name].weight
    pts = tables.weight_sensitivity_points(w, prepared.sensitivities[name], report.result.masks[name])
    toy = lc.train_toy("moons", 4, 0, epochs=2)
    weights = [toy.model.get_submodule(n).weight.detach().numpy() for n in toy.layer_names]
    gen = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    x = torch.randn(30, 2, generator=gen)
    comp = compare(net, net, make_paths(x, (x[:, 0] > 0).long(), count=3, points=64, seed=0), jacobian_points=0,
                   threads=1)
    frame = _sweep_frame()
    steps = [dict(step=1, keep_ratio_requested=0.5, keep_ratio=0.5, accuracy_pruned=0.9, accuracy_finetuned=0.95),
             dict(step=2, keep_ratio_requested=0.1, keep_ratio=0.1, accuracy_pruned=0.7, accuracy_finetuned=0.93)]
    speed = pd.DataFrame([dict(name="fc1", kind="linear", shape=[300, 784], batch_size=b, dense_ms=1.0, csr_ms=c,
                               density=0.1) for b, c in ((1, 2.0), (256, 0.5))])
    built = {
        "density_chart": layer_charts.density_chart(report),
        "bound_vs_measured": layer_charts.bound_vs_measured(report),
        "sensitivity_histogram": sens_charts.sensitivity_histogram(prepared),
        "sensitivity_vs_weight": sens_charts.sensitivity_vs_weight(pts, name),
        "row_totals": sens_charts.row_totals(tables.row_totals_frame(w, prepared.sensitivities[name]), name),
        "edge_profile": sens_charts.edge_profile(np.linspace(0, 1, 20), 10, 3),
        "heatmap_small": kept_charts.heatmap_small(tables.heatmap_frame(report, small), small),
        "kept_per_unit": kept_charts.kept_per_unit(report, small),
        "row_scatter": guarantee_charts.row_scatter(eps_report, name),
        "failure_rates": guarantee_charts.failure_rates(eps_report, 1e-6),
        "eps_keep_chart": guarantee_charts.eps_keep_chart(tables.sweep_frame({2.0: eps_report, 1.0: report}), 2.0, "sipp-rand"),
        "eps_error_chart": guarantee_charts.eps_error_chart(tables.sweep_frame({2.0: eps_report, 1.0: report}), 2.0,
                                                  "sipp-rand"),
        "network_diagram": learn_charts.network_diagram(weights),
        "toy_data": learn_charts.toy_data(toy.record.x_pool.numpy(), toy.record.y_pool.numpy(), np.arange(5), 0),
        "empty": charts.empty("Nothing here", "Nothing was measured, so there is nothing to draw on this chart."),
        "path_distribution": cs.path_distribution(comp),
        "propagation_chart": cs.propagation_chart(comp),
        "transitions_chart": cs.transitions_chart(comp),
        "trajectory_chart": cs.trajectory_chart(comp),
        "logit_chart": cs.logit_chart(comp, 0, 0),
        "second_difference_chart": cs.second_difference_chart(comp, 0, 0),
        "accuracy_chart": ct.accuracy_chart(frame, max_drop_pts=1.0),
        "error_chart": ct.error_chart(frame),
        "bound_chart": ct.bound_chart(frame),
        "potential_chart": ct.potential_chart(prune_potential(frame, 0.01), 1.0),
        "cascade_chart": ct.cascade_chart(steps, 0.96),
        "isolation_chart": ct.isolation_chart(dict(accuracy_init=0.1, accuracy_curve=[0.8, 0.9]),
                                              dict(accuracy_init=0.1, accuracy_curve=[0.7, 0.8]), 0.96),
        "speedup_chart": ct.speedup_chart(speed, [dict(batch_size=1, dense_ms=1.0, csr_ms=2.0, layers=1)]),
        "file_size_chart": ct.file_size_chart(dict(dense=1000, dense_zip=200, csr_torch=500, csr_npz=150)),
    }
    filtered = prune_filters(prepared.model, prepared.s_x, method="pfp", keep_ratio=0.5, labels=prepared.s_y)
    cmp = pd.DataFrame([dict(method=m, kind=k, ratio=r, params=1, flops=1, accuracy=a, params_share=r,
                             flops_share=r, latency_ms=l) for m, k, r, a, l in (
        ("pfp", "channels", 0.5, 0.9, 1.0), ("pfp", "channels", 0.2, 0.8, 0.5),
        ("sipp-hybrid", "weights", 0.5, 0.95, 2.0), ("sipp-hybrid", "weights", 0.2, 0.9, 2.0))])
    built.update({
        "channel_sensitivity_bars": cf.channel_sensitivity_bars(filtered, next(iter(filtered.labels))),
        "widths_chart": cf.widths_chart(filtered),
        "flops_chart": cf.flops_chart(filtered),
        "compare_chart": cf.compare_chart(cmp, "latency_ms"),
        # the Run history page's comparisons (their axis config once lost every size but the titles')
        "overlay_chart": ch.overlay_chart(pd.DataFrame(dict(run=["#1 sipp-hybrid (prune)", "#2 wt (prune)"],
                                                            kind=["prune"] * 2, keep_pct=[10.0, 5.0],
                                                            acc_pct=[78.0, 51.0], ratio=[0.1, 0.05]))),
        "smp_overlay_chart": ch.smp_overlay_chart(pd.DataFrame(dict(run=["#3 wt, kept 10%"] * 2,
                                                                    network=["original", "pruned"],
                                                                    relative_smp=[2.8, 5.2]))),
    })
    return built


def _builders() -> set[str]:
    """Every public function of the chart modules that returns an Altair chart (by its annotation)."""
    import inspect

    from ui.charts import smoothness as cs

    out = set()
    for mod in (charts, cs, ct, cf, ch):
        for n, fn in inspect.getmembers(mod, inspect.isfunction):
            if fn.__module__ == mod.__name__ and not n.startswith("_") and "alt.Chart" in str(fn.__annotations__.get("return")):
                out.add(n)
    return out


def test_every_chart_builder_is_checked_below(every_chart):
    assert _builders() <= set(every_chart), sorted(_builders() - set(every_chart))


def test_every_chart_is_sized_for_a_projector(every_chart):
    for name, c in every_chart.items():
        try:
            assert_projector_sizes(c)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None


def test_every_legend_names_every_mark_and_fits(every_chart):
    for name, c in every_chart.items():
        try:
            assert_legends_name_every_mark(c)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None


def test_the_old_three_column_legend_is_caught(report):
    """The check above fails on the clipped legend it was written for (five series in 3 columns at 560 px)."""
    spec = layer_charts.bound_vs_measured(report).to_dict()
    enc = spec["layer"][0]["encoding"]
    enc["color"]["legend"]["columns"] = 3
    with pytest.raises(AssertionError, match="does not fit"):
        assert_legends_name_every_mark(alt.Chart.from_dict(spec))
    enc["color"]["legend"]["columns"] = 2
    enc["color"]["scale"]["domain"] = enc["color"]["scale"]["domain"][:2]
    with pytest.raises(AssertionError, match="not in the legend"):
        assert_legends_name_every_mark(alt.Chart.from_dict(spec))


def test_bound_chart_names_the_green_circle(report):
    spec = layer_charts.bound_vs_measured(report).to_dict()
    enc = spec["layer"][0]["encoding"]
    domain, colors, shapes = enc["color"]["scale"]["domain"], enc["color"]["scale"]["range"], enc["shape"]["scale"]["range"]
    i = domain.index("measured max on S")
    assert (colors[i], shapes[i]) == (charts.OKABE["green"], "circle")
    assert enc["color"].get("legend") is not None


def test_nothing_failed_is_a_sentence_not_a_blank_chart(prepared):
    from sipp_core.pipeline import evaluate_prune

    r = evaluate_prune(prepared, method="sipp-det", keep_ratio=1.0)  # nearly dense: no row breaks its bound
    assert int(tables.failure_frame(r)["failures"].sum()) == 0
    c = guarantee_charts.failure_rates(r, 1e-16)
    assert "0 failures" in c.to_dict()["usermeta"]["sipp_empty"]
    assert_empty_sentence_fits(c)
    assert_projector_sizes(c)


def test_layers_are_labelled_by_module_name_and_shape(report):
    labels = list(tables.layer_labels(report).values())
    assert labels == ["fc1 · Linear 784→300", "fc2 · Linear 300→100", "fc3 · Linear 100→10"]
    for c in (layer_charts.density_chart(report), layer_charts.bound_vs_measured(report)):
        text = str(c.to_dict())
        assert all(lab in text for lab in labels)
    assert labels[1] in str(guarantee_charts.row_scatter(report, "fc2").to_dict()["title"])
    assert list(tables.layer_table(report)["label"]) == labels
    assert [row["label"] for row in report.to_dict()["layers"]] == labels
    assert "label" in tables.layer_table(report).to_csv(index=False).splitlines()[0]


def test_conv_layers_are_labelled_with_channels_and_kernel():
    from sipp_core.zoo.layers import layer_infos
    from sipp_core.zoo.models import build_model

    net = build_model("lenet5", (1, 28, 28), 10)
    labels = [i.label for i in layer_infos(net, (1, 28, 28)).values()]
    assert labels[:2] == ["conv1 · Conv2d 1→6, 5x5", "conv2 · Conv2d 6→16, 5x5"]
    named = torch.nn.Sequential()
    named.add_module("fc1", torch.nn.Linear(784, 300))
    assert layer_infos(named, (784,))["fc1"].label == "fc1 · Linear 784→300"


def test_charts_download_as_png_and_svg(report):
    """What the app's "Download chart" gives: Vega's own drawing (vl-convert), every label in it."""
    c = layer_charts.bound_vs_measured(report)
    png = charts.to_png(c)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width >= 2 * charts.WIDTH and height >= 2 * charts.HEIGHT  # drawn at twice the size, for slides
    svg = charts.to_svg(c)
    assert svg.lstrip().startswith("<svg")
    for text in ("Guaranteed bound vs measured error", "measured max on S", "Linear 784→300"):
        assert text in svg, text


def test_image_titles_never_draw_an_empty_box_for_the_arrow():
    from PIL import ImageFont

    bare = ImageFont.load_default(size=14)  # Pillow's own font has no → glyph
    assert charts_images._safe("1 · Linear 784→300", bare) == "1 · Linear 784->300"
    font = charts_images._font(14)
    shown = charts_images._safe("784→300", font)
    assert font.getmask(shown).getbbox() is not None and shown in ("784→300", "784->300")


def test_charts_without_data_say_why_in_a_sentence():
    none = pd.DataFrame(columns=["name", "kind", "shape", "batch_size", "dense_ms", "csr_ms", "density"])
    for c in (ct.speedup_chart(none, []), ct.cascade_chart([], 0.9), ct.accuracy_chart(_sweep_frame().iloc[:0]),
              ct.error_chart(_sweep_frame().iloc[:0])):
        assert c.to_dict()["usermeta"]["sipp_empty"]
        assert_empty_sentence_fits(c)
        assert_projector_sizes(c)


def _channels(s: list[float]):
    """A filter-pruning result of one layer with these channel sensitivities (the first half kept)."""
    from types import SimpleNamespace

    keep = torch.tensor([i < max(1, len(s) // 2) for i in range(len(s))])
    return SimpleNamespace(channel_sensitivities={"conv1": torch.tensor(s)}, channels={"conv1": keep},
                           labels={"conv1": "conv1 · Conv2d 1→6, 5x5"})


def test_channel_bars_of_a_one_channel_layer_are_a_bar_not_the_whole_plot():
    spec = cf.channel_sensitivity_bars(_channels([1.0]), "conv1").to_dict()
    assert spec["mark"] == {"type": "bar", "size": cf.BAR_MAX_PX}
    assert spec["encoding"]["y"]["scale"]["domain"] == [0, 1.0]  # a share: no axis past 1 (Vega's rounding gave 1.1)


def test_channel_bars_of_many_channels_fill_their_bands_and_round_the_axis_to_a_tenth():
    s = list(np.linspace(0.37, 0.01, 64))
    spec = cf.channel_sensitivity_bars(_channels(s), "conv1").to_dict()
    assert spec["mark"]["type"] == "bar"
    enc = spec["encoding"]  # abutting bars from rank - 0.5 to rank + 0.5, down to 0, on an axis with ticks
    assert enc["x"]["field"] == "lo" and enc["x2"]["field"] == "hi" and enc["x"]["scale"]["domain"] == [0.5, 64.5]
    assert enc["y2"] == {"datum": 0} and enc["x"]["axis"]["format"] == "d"
    assert enc["y"]["scale"]["domain"] == [0, 0.4]
    few = cf.channel_sensitivity_bars(_channels(s[:12]), "conv1").to_dict()
    assert few["encoding"]["x"]["type"] == "ordinal" and "x2" not in few["encoding"]  # a band and a rank each
    tiny = cf.channel_sensitivity_bars(_channels([0.03, 0.01]), "conv1").to_dict()
    assert "domain" not in tiny["encoding"]["y"].get("scale", {})  # below a tenth: Vega's own rounding


def test_a_log_axis_of_path_values_ends_near_the_data_and_keeps_the_zero_floor():
    from ui.charts import smoothness as cs

    assert cs._log_or_linear([0.013, 0.5, 12.0]).to_dict() == {"type": "log", "domain": [0.01, 20.0], "nice": False}
    with_zero = cs._log_or_linear([0.0, 0.013, 12.0]).to_dict()
    assert with_zero["domain"] == [0.001, 20.0]  # exact zeros are drawn at 0.001: inside the axis, not below it
    assert cs._log_or_linear([1.0, 3.0]).to_dict() == {"zero": True}  # less than 1.5 decades: linear from 0


def test_sensitivity_histogram_puts_a_share_of_one_in_the_bin_ending_at_one():
    s = {"conv1": torch.ones(6, 25), "fc1": torch.tensor([[0.001, 0.01, 0.5, 1.0, 0.0]])}
    s["conv1"][0, :10] = 1.0000001  # float32 rounding of a share of 1 (LeNet-5's conv1 has 80 such edges)
    df, zeros = tables.sensitivity_histogram(s, bins_per_decade=8)
    assert float(df["hi"].max()) == pytest.approx(1.0)  # no bin past 1, where no share can be
    conv = df[df["layer"] == "conv1"]
    assert len(conv) == 1 and float(conv["share"].iloc[0]) == 1.0 and float(conv["lo"].iloc[0]) < 1.0
    assert int(df["count"].sum()) == 150 + 4 and zeros == {"conv1": 0, "fc1": 1}
