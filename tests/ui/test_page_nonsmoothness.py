"""The Nonsmoothness page (AppTest) and its chart builders (no streamlit: tests/test_architecture.py checks it).

The page runs on the default (lenet300 / mnist5k, shipped checkpoint) and on the tiny preset (mlp on
moons, trained on demand into SIPP_CACHE_DIR, a temporary folder here) with small sweeps; the chart
builders run on a tiny synthetic comparison.
"""
from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import altair as alt
import pytest
import torch
from conftest import env_var
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ui.charts import smoothness as cs  # noqa: E402

APP = str(ROOT / "studio.py")
PAGE = "pages/nonsmoothness.py"
TIMEOUT = 120


@pytest.fixture(scope="module", autouse=True)
def _cache_dir(tmp_path_factory):
    import streamlit as st

    with env_var("SIPP_CACHE_DIR", str(tmp_path_factory.mktemp("sipp-cache"))):
        yield
        # The app's stores live in st.cache_resource for the whole process: leave none of this module's
        # models (trained into a folder that is about to go) to other test files that expect a fresh app.
        st.cache_resource.clear()
        st.cache_data.clear()


def _ok(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _open_page(at):
    at.switch_page(PAGE).run()
    _ok(at)
    return at


def _sweep(at, paths: int = 4, points: int = 256, kind: str | None = None):
    at.select_slider(key="ns_paths").set_value(paths)
    at.select_slider(key="ns_points").set_value(points)
    if kind is not None:
        at.selectbox(key="ns_kind").set_value(kind)
    at.button(key="ns_run").click().run()
    _ok(at)
    return at


def _summary(at):
    for df in (d.value for d in at.dataframe):
        if "measure" in df.columns:
            return df.set_index("measure")
    raise AssertionError("no summary table on the page")


# ---- the page -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def swept():
    from streamlit.testing.v1 import AppTest

    at = _open_page(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    assert at.title[0].value == "Nonsmoothness"
    for key in ("ns_paths", "ns_points"):
        assert at.select_slider(key=key) is not None
    assert at.select_slider(key="ns_paths").value == 16 and at.select_slider(key="ns_points").value == 1024
    assert at.selectbox(key="ns_kind").value == "mixed" and at.selectbox(key="ns_units").value == "auto"
    assert at.number_input(key="ns_seed").value == 0
    assert at.button(key="ns_run") is not None
    assert any("docs/nonsmoothness.md" in i.value for i in at.info)  # where the definition is written out
    assert any("Measure nonsmoothness" in i.value for i in at.info)  # nothing runs before the click
    assert not at.dataframe and len(at.latex) == 1
    return _sweep(at)


def test_page_sweeps_and_shows_smp_before_and_after(swept):
    at = swept
    table = _summary(at)
    row = table.loc["SMP of the output (sum over logits), mean"]
    assert math.isfinite(row["original"]) and row["original"] > 0
    assert math.isfinite(row["pruned"]) and row["pruned"] >= 0
    assert {m.label for m in at.metric} >= {"SMP before (mean over paths)", "SMP after pruning"}
    assert len(at.get("vega_lite_chart")) >= 6  # per path, propagation, transitions, trajectory, logits, d_i
    assert len(at.latex) >= 5  # the definition and both networks' live numbers
    assert any("agrees with the sweep" in m.value for m in at.markdown)
    assert any("Every nonlinearity was measured" in m.value for m in at.markdown)
    # the verdicts: SMP with its scale-free companion, and the linear rule as an upper bound
    verdicts = [v.value for v in at.success if v.value.startswith("**Verdict**")]
    assert len(verdicts) == 2, verdicts
    metrics = {m.label: m.value for m in at.metric}
    before = float(metrics["Relative SMP before"])
    assert math.isfinite(before) and before > 0
    assert f"output SMP from **{row['original']:.3g} to {row['pruned']:.3g}**" in verdicts[0]
    assert re.search(r"averaged over the \d+ paths\), SMP went from", verdicts[0]), verdicts[0]
    assert f"SMP went from **{before:.3g}" in verdicts[0]
    variation = metrics["Logit variation before → after"].split(" → ")
    assert f"from {variation[0]} to {variation[1]}" in verdicts[0] or "kinks changed" in verdicts[0]
    assert "**upper bound**" in verdicts[1]
    # saved to the run history, once
    from sipp_core.jobs.history import RunHistory

    runs = RunHistory().list(kind="nonsmoothness")
    assert len(runs) == 1 and runs[0].settings["paths"]["count"] == 4
    assert runs[0].results["original"]["smp"] == pytest.approx(row["original"])


def test_page_widgets_change_the_view_without_recomputing(swept):
    at = swept
    at.radio(key="ns_metric").set_value("region_transitions").run()
    _ok(at)
    at.radio(key="ns_draw").set_value("slope").run()
    _ok(at)
    at.selectbox(key="ns_path").set_value(0).run()
    _ok(at)
    assert len(at.get("vega_lite_chart")) >= 6
    at.switch_page("pages/prune.py").run()
    _open_page(at)  # back again: the cached result is shown at once, with the form's settings kept
    assert at.select_slider(key="ns_paths").value == 4
    assert _summary(at).loc["SMP of the output (sum over logits), mean", "original"] > 0


def test_an_engine_error_is_a_message_with_the_fix(swept, monkeypatch):
    import sipp_core.smoothness.core

    def boom(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(sipp_core.smoothness.core, "nonsmoothness", boom)
    at = swept
    at.number_input(key="ns_seed").set_value(7)
    at.button(key="ns_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.error and "Fix" in at.error[0].value and "fewer paths" in at.error[0].value
    assert not at.dataframe  # nothing half-drawn
    monkeypatch.undo()
    at.number_input(key="ns_seed").set_value(0)
    at.button(key="ns_run").click().run()  # the cached seed-0 result again
    _ok(at)


def test_page_on_the_tiny_preset_with_local_paths():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.selectbox(key="data").set_value("moons").run()
    at.selectbox(key="model").set_value("mlp").run()
    if any(b.key == "prepare_button" for b in at.button):  # absent when another test already trained it
        at.button(key="prepare_button").click().run()
    _ok(at)
    _sweep(_open_page(at), paths=4, points=256, kind="local")
    assert _summary(at).loc["linear-region transitions", "original"] >= 0
    assert not at.image  # 2-D inputs: no endpoint pictures


# ---- chart builders, no streamlit ------------------------------------------------------------------

def _untitled(spec) -> list[str]:
    """Positional channels (x, y) encoded with a field somewhere in a (layered) spec but titled nowhere."""
    used, titled = set(), set()

    def walk(d):
        if isinstance(d, dict):
            enc = d.get("encoding")
            if isinstance(enc, dict):
                for ch in ("x", "y"):
                    e = enc.get(ch)
                    if isinstance(e, dict) and "field" in e:
                        used.add(ch)
                        if e.get("title"):
                            titled.add(ch)
            for k, v in d.items():
                if k not in ("datasets", "data"):
                    walk(v)
        elif isinstance(d, list):
            for v in d:
                walk(v)

    walk(spec)
    return sorted(used - titled)


@pytest.fixture(scope="module")
def tiny_comparison():
    """A random 2-8-8-3 ReLU net and a copy with half its first-layer weights zeroed, on 5 paths."""
    from sipp_core.smoothness.core import compare, make_paths

    gen = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    pruned = nn.Sequential(*[type(m)(m.in_features, m.out_features) if isinstance(m, nn.Linear) else m for m in net])
    pruned.load_state_dict(net.state_dict())
    with torch.no_grad():
        pruned[0].weight[::2] = 0
    x = torch.randn(40, 2, generator=gen)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    paths = make_paths(x, y, count=5, points=128, seed=0)
    return compare(net, pruned, paths, jacobian_points=2, threads=1)


def test_chart_builders_on_a_tiny_record(tiny_comparison):
    comp = tiny_comparison
    names = ("a", "b", "c")
    charts = [cs.path_distribution(comp, m, names) for m in cs.PATH_METRICS] + [
        cs.propagation_chart(comp), cs.transitions_chart(comp), cs.trajectory_chart(comp),
        cs.logit_chart(comp, 1, 0, names), cs.logit_chart(comp, 1, 2, names, "slope"),
        cs.second_difference_chart(comp, 1, 0)]
    for c in charts:
        assert isinstance(c, alt.TopLevelMixin)
        spec = c.to_dict()  # validates against the Vega-Lite schema
        assert spec.get("title", {}).get("text"), spec.get("title")
        assert not _untitled(spec), _untitled(spec)
        assert spec["usermeta"]["sipp_height"] > 150
    assert "'type': 'log'" in str(cs.propagation_chart(comp).to_dict())
    for chart in (cs.propagation_chart(comp), cs.transitions_chart(comp), cs.trajectory_chart(comp)):
        spec = chart.to_dict()  # a stage missing from the axis order would be drawn after all the others
        order = next(l["encoding"]["x"]["sort"] for l in spec.get("layer", [spec]) if "x" in l.get("encoding", {}))
        drawn = {row["stage"] for rows in spec["datasets"].values() for row in rows}
        assert drawn <= set(order) and order == list(dict.fromkeys(order)), (drawn - set(order), order)
    assert "original" in str(charts[0].to_dict()) and "pruned" in str(charts[0].to_dict())
    table = cs.summary_frame(comp).set_index("measure")
    assert table.loc["SMP of the output (sum over logits), mean", "original"] == pytest.approx(
        float(comp.original.smp.mean()))
    assert len(cs.layer_frame(comp)) == 2 * len(comp.original.layers)


def test_live_formula_numbers_reproduce_the_sweep(tiny_comparison):
    for rec in tiny_comparison:
        for path in range(rec.paths.count):
            for c in range(3):
                n = cs.logit_peak_numbers(rec, path, c)
                assert n["smp"] == pytest.approx(n["engine_smp"], rel=1e-9, abs=1e-12)
                assert n["smp"] == pytest.approx(n["sum"] / (n["h"] * n["length"]))
                assert n["peaks"] == len(n["indices"]) and n["threshold"] >= n["floor"]
                assert "SMP" in cs.tex_live(n, "original")


def test_long_paths_stay_under_altairs_row_limit(tiny_comparison):
    from sipp_core.smoothness.core import compare
    net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))
    paths = tiny_comparison.original.paths.select([0]).with_points(4096)
    comp = compare(net, net, paths, jacobian_points=0, threads=1)
    assert len(cs.logit_frame(comp, 0, 0)) <= cs.MAX_ROWS
    assert len(cs.logit_frame(comp, 0, 0, "slope")) <= cs.MAX_ROWS
    assert len(cs.second_difference_frame(comp, 0, 0)[0]) <= cs.MAX_ROWS
    cs.second_difference_chart(comp, 0, 0).to_dict()  # raises MaxRowsError beyond 5,000 rows
