"""AppTest for every page: on the default (lenet300 / mnist5k) and on a tiny preset (mlp on moons).

Checkpoints for combinations that are not shipped train on demand into SIPP_CACHE_DIR,
which these tests point at a temporary folder.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import env_var

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "studio.py")
PAGES = ["pages/prune.py", "pages/sensitivity.py", "pages/kept_edges.py", "pages/guarantees.py", "pages/learn.py"]
TIMEOUT = 120


@pytest.fixture(scope="module", autouse=True)
def _cache_dir(tmp_path_factory):
    with env_var("SIPP_CACHE_DIR", str(tmp_path_factory.mktemp("sipp-cache"))):
        yield


def _app():
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(APP, default_timeout=TIMEOUT)


def _metric(at, label: str) -> str:
    for m in at.metric:
        if m.label == label:
            return m.value
    raise AssertionError(f"no metric {label!r}; have {[m.label for m in at.metric]}")


def _charts(at) -> int:
    return len(at.get("vega_lite_chart")) + len(at.image)


def _ok(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


@pytest.fixture(scope="module")
def default_app():
    at = _app().run()
    _ok(at)
    return at


def test_default_prune_page_computes_without_a_click(default_app):
    at = default_app
    assert not at.error, [e.value for e in at.error]
    for label in ("Weights kept", "Accuracy after", "Agreement", "Largest bound", "Largest measured error"):
        assert _metric(at, label)
    assert at.title[0].value == "Prune"
    assert len(at.get("vega_lite_chart")) >= 2
    assert len(at.dataframe) >= 1
    assert not at.get("download_button")  # the downloads' expander is closed: its buttons are made when it opens
    at.session_state["downloads_open"] = True  # what opening it does (it reruns the page)
    at.run()
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Pruned state_dict (.pt)", "Masks (.pt)", "Report (JSON)", "Per-layer table (CSV)",
                      "Deployable: .pt2, ONNX (.zip)"]
    at.session_state["downloads_open"] = False
    at.run()
    pops = [p for p in at.get("popover") if p.proto.popover.label == "Download chart"]
    assert len(pops) == len(at.get("vega_lite_chart"))  # each chart: a closed "Download chart" popover
    key = pops[0].proto.popover.id.split("-", 2)[-1]  # its widget key (after Streamlit's "$$ID-<hash>-")
    at.session_state[key] = True  # what opening it does (it reruns the page): its PNG and SVG buttons appear
    at.run()
    assert [b.proto.label for b in at.get("download_button")][:2] == ["PNG image", "SVG (vector, for slides)"]
    at.session_state[key] = False
    at.run()


def test_main_widgets_exist(default_app):
    at = default_app
    for key in ("model", "data", "method", "patch", "device"):
        assert at.selectbox(key=key) is not None
    assert at.selectbox(key="model").value == "lenet300"
    assert at.selectbox(key="data").value == "mnist5k"
    assert at.selectbox(key="method").value == "sipp-hybrid"
    assert at.radio(key="mode").value == "keep ratio"
    assert at.slider(key="keep").value == pytest.approx(0.10)
    assert at.select_slider(key="delta").value == pytest.approx(1e-16)
    assert at.toggle(key="s_auto").value is True
    assert at.number_input(key="seed") is not None
    # |S| from the formula: no greyed-out box with another number in it (it showed 152 for LeNet-5's 169)
    assert "s" not in [w.key for w in at.number_input]


@pytest.mark.parametrize("page", PAGES[1:])
def test_every_page_renders_on_the_default(default_app, page):
    at = default_app
    at.switch_page(page).run()
    _ok(at)
    assert not at.error, [e.value for e in at.error]
    assert _charts(at) >= 1 or page.endswith("learn.py")
    at.switch_page(PAGES[0]).run()


def test_sensitivity_page_formula_agrees_with_engine(default_app):
    at = default_app
    at.switch_page("pages/sensitivity.py").run()
    _ok(at)
    assert len(at.latex) == 1 and not any("(agree)" in m.value for m in at.markdown)  # the one-edge part is closed
    at.session_state["edge_open"] = True  # what opening its expander does (it reruns the page)
    at.run()
    _ok(at)
    assert len(at.latex) >= 5
    assert any("(agree)" in m.value for m in at.markdown)
    at.session_state["edge_open"] = False
    at.switch_page(PAGES[0]).run()


def test_changing_eps_changes_the_reported_bound():
    at = _app().run()
    at.radio(key="mode").set_value("eps and delta").run()
    _ok(at)
    at.select_slider(key="eps").set_value(0.5).run()
    tight = _metric(at, "Largest bound")
    kept_tight = _metric(at, "Weights kept")
    at.select_slider(key="eps").set_value(5.0).run()
    _ok(at)
    loose = _metric(at, "Largest bound")
    assert tight != loose
    assert float(tight) < float(loose) <= 5.0 * 3  # hybrid's det. side is C' * eps_det
    assert kept_tight != _metric(at, "Weights kept")


def test_invalid_setting_shows_an_error_and_the_app_keeps_working():
    at = _app().run()
    at.selectbox(key="method").set_value("wt").run()
    at.radio(key="mode").set_value("eps and delta").run()
    _ok(at)
    assert at.error and "keep ratio" in at.error[0].value
    assert not at.metric
    at.radio(key="mode").set_value("keep ratio").run()
    _ok(at)
    assert not at.error
    assert _metric(at, "Largest bound") == "none"  # a baseline has no bound, and says so


def test_sample_size_larger_than_the_pool_is_an_error_with_the_fix():
    at = _app().run()
    at.toggle(key="s_auto").set_value(False).run()
    at.number_input(key="s").set_value(50_000).run()
    _ok(at)
    assert at.error and "S-pool" in at.error[0].value and "Fix" in at.error[0].value
    at.number_input(key="s").set_value(100).run()
    _ok(at)
    assert not at.error and _metric(at, "Weights kept")
    at.toggle(key="s_auto").set_value(True).run()  # back to the formula, and the manual |S| is kept for later
    assert "s" not in [w.key for w in at.number_input] and at.session_state["s"] == 100
    at.toggle(key="s_auto").set_value(False).run()
    assert at.number_input(key="s").value == 100


def test_model_that_does_not_fit_the_data_is_explained():
    at = _app().run()
    at.selectbox(key="data").set_value("moons").run()
    at.selectbox(key="model").set_value("lenet5").run()
    _ok(at)
    assert at.error and "models that fit this data set" in at.error[0].value


def test_cuda_without_a_gpu_is_explained():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    at = _app().run()
    at.selectbox(key="device").set_value("cuda").run()
    _ok(at)
    assert at.error and "auto" in at.error[0].value


@pytest.fixture(scope="module")
def tiny_app():
    """mlp on moons: no shipped checkpoint, so the page asks for a click, trains (about a second) and caches."""
    from ui import engine

    # This module's checkpoint cache is fresh; forget what earlier tests in this process prepared, so the
    # page has to ask for the click.
    engine.clear_all()
    assert engine.checkpoint_status("mlp", "moons") == "missing"
    at = _app().run()
    at.selectbox(key="data").set_value("moons").run()
    at.selectbox(key="model").set_value("mlp").run()
    _ok(at)
    assert not at.metric, [m.label for m in at.metric]  # nothing pruned before the click
    assert [b.label for b in at.button if b.key == "prepare_button"] == ["Train and compute sensitivities"]
    at.button(key="prepare_button").click().run()
    _ok(at)
    assert not at.error, [e.value for e in at.error]
    return at


def test_tiny_preset_trains_behind_a_button_and_prunes(tiny_app):
    from ui import engine, tables

    at = tiny_app
    assert not [b for b in at.button if b.key == "prepare_button"]  # trained and cached: the button is gone
    assert engine.checkpoint_status("mlp", "moons") == "cache"
    assert _metric(at, "Weights kept")
    h = tables.headline(engine.get_report(at.session_state["_settings"]))  # the cached report the page shows
    assert float(_metric(at, "Accuracy after").rstrip("%")) == pytest.approx(100 * h["accuracy_after"], abs=0.051)
    assert h["accuracy_before"] > 0.75  # trained: two balanced classes give 0.5 by chance


@pytest.mark.parametrize("page", PAGES[1:4])
def test_every_page_renders_on_the_tiny_preset(tiny_app, page):
    at = tiny_app
    at.switch_page(page).run()
    _ok(at)
    assert not at.error, [e.value for e in at.error]
    assert _charts(at) >= 1
    at.switch_page(PAGES[0]).run()


def test_tiny_preset_eps_changes_the_bound(tiny_app):
    at = tiny_app
    at.radio(key="mode").set_value("eps and delta").run()
    at.select_slider(key="eps").set_value(0.2).run()
    a = _metric(at, "Largest bound")
    at.select_slider(key="eps").set_value(2.0).run()
    _ok(at)
    assert a != _metric(at, "Largest bound")
    at.radio(key="mode").set_value("keep ratio").run()


def test_learn_page_every_step():
    at = _app()
    at.run()
    at.switch_page("pages/learn.py").run()
    _ok(at)
    steps = at.segmented_control(key="learn_step").options
    assert len(steps) == 8
    for step in steps:
        at.segmented_control(key="learn_step").set_value(step).run()
        _ok(at)
        assert not at.error, (step, [e.value for e in at.error])
    at.segmented_control(key="learn_step").set_value(steps[4]).run()
    assert any("they agree" in m.value for m in at.markdown)
    at.button(key="learn_next").click().run()
    _ok(at)
    assert at.segmented_control(key="learn_step").value == steps[5]


def test_bound_values_are_finite_numbers(default_app):
    v = _metric(default_app, "Largest bound")
    assert math.isfinite(float(v))


def test_two_sessions_do_not_disturb_each_other():
    """Two browser sessions with different settings, interleaved: each keeps its own numbers."""
    a = _app().run()
    b = _app().run()
    b.selectbox(key="method").set_value("sipp-det").run()
    b.slider(key="keep").set_value(0.03).run()
    a_before = [(m.label, m.value) for m in a.metric]
    a.run()
    assert [(m.label, m.value) for m in a.metric] == a_before
    assert _metric(b, "Weights kept") != _metric(a, "Weights kept")
    assert _metric(b, "Weights kept").startswith("3.0") or _metric(b, "Weights kept").startswith("2.9")


def test_concurrent_reports_match_sequential_ones():
    """Engine calls from two threads on the shared (cached) model give the same numbers as one by one."""
    import threading

    from ui import engine, tables
    from ui.settings import Settings

    base = Settings()
    prepared = engine.get_prepared(base)
    from sipp_core.pipeline import evaluate_prune

    wanted = {k: tables.headline(evaluate_prune(prepared, method="sipp-rand", keep_ratio=k))["measured_max_heldout"]
              for k in (0.02, 0.04)}
    got, errors = {}, []

    def work(k):
        try:
            s = Settings(method="sipp-rand", keep_ratio=k)
            got[k] = tables.headline(engine.get_report(s, prepared))["measured_max_heldout"]
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in wanted]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert got == pytest.approx(wanted)


def test_the_first_run_of_a_process_says_it_is_starting_and_leaves_no_trace(monkeypatch):
    """A fresh server's first run waits for the imports: studio.py shows a sentence meanwhile, gone before the page
    draws (AppTest sees the end of the run; here the app's last module is made to look not yet imported, so the
    script imports it again)."""
    import sys

    monkeypatch.delitem(sys.modules, "ui.sidebar", raising=False)  # restored after the test
    at = _app().run()
    assert not at.exception, at.exception
    assert not [e for e in at.info if "Starting SiPP Studio" in e.value]
    assert at.title[0].value == "Prune" and _metric(at, "Weights kept")


def test_a_layer_pruned_to_nothing_is_said_on_kept_edges_not_drawn():
    """ε = 100 on the default leaves LeNet-300-100 no weight: Kept edges says so (its heatmap was all grey under a
    colour bar of -1..1, and the per-unit chart had one tick, 0.000000)."""
    at = _app()
    at.query_params.update({"mode": "eps and delta", "eps": "100"})
    at.run()
    at.switch_page("pages/kept_edges.py").run()
    assert not at.exception
    assert any("keeps none of its" in i.value and "outputs only its bias" in i.value for i in at.info)
    assert len(at.image) == 1  # the first layer on the input pixels (original against pruned), no heatmap
    assert not any("Kept weights per unit" in str(c.proto.spec) for c in at.get("vega_lite_chart"))
