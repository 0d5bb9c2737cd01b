"""The Retraining page (AppTest): its settings and estimate, a one-step cascade, a bad schedule, a cancelled
training in isolation."""
from __future__ import annotations

import json
import re

from pagetest import app, metric, new_app, ok, page_folders, wait  # noqa: F401 - the module's fixtures


def test_page_renders_on_the_default(app):
    at = app
    at.switch_page("pages/retrain.py").run()
    ok(at)
    assert at.title[0].value == "Retraining"
    for kind, key in [("selectbox", "rt_method"), ("text_input", "rt_schedule"), ("number_input", "rt_epochs"),
                      ("button", "rt_run"), ("selectbox", "li_method"), ("select_slider", "li_keep"),
                      ("number_input", "li_rewind"), ("radio", "li_at"), ("radio", "li_scope"), ("button", "li_run")]:
        assert getattr(at, kind)(key=key) is not None, (kind, key)
    at.switch_page("pages/prune.py").run()


def test_retraining_page_shows_settings_and_a_time_estimate(app):
    at = app
    at.switch_page("pages/retrain.py").run()
    ok(at)
    text = " ".join(c.value for c in at.caption)
    assert "restarted at each step" in text and "lr 0.001" in text
    assert "estimated" in text
    assert any("same kept count in every layer" in o for o in at.radio(key="li_scope").options)
    assert at.text_input(key="rt_schedule").value == "0.5, 0.2, 0.1, 0.05, 0.02"
    assert at.number_input(key="rt_epochs").value == 2
    at.switch_page("pages/prune.py").run()


def test_one_step_cascade_runs_and_checks_the_mask(app):
    at = app
    at.switch_page("pages/retrain.py").run()
    at.text_input(key="rt_schedule").set_value("0.3")
    at.number_input(key="rt_epochs").set_value(1).run()
    ok(at)
    at.button(key="rt_run").click().run()
    job = wait(at, "_job_cascade")
    assert len(job.result.steps) == 1 and job.result.steps[0]["pruned_weights_zero"]
    assert float(metric(at, "After fine-tuning (vs dense)").rstrip("%")) > 50
    # accuracies are written with one decimal, as on the Prune page (94.9%, not 94.90%)
    for label in ("Dense accuracy", "After fine-tuning (vs dense)", "Right after pruning (vs dense)"):
        assert re.fullmatch(r"\d+\.\d%", metric(at, label)), (label, metric(at, label))
    assert any("stayed exactly zero" in c.value for c in at.caption)
    grid = next(d for d in at.dataframe if "accuracy after fine-tuning" in d.proto.columns)
    assert json.loads(grid.proto.columns)["step"]["pinned"] is True  # the table scrolls sideways, presenting
    step = job.result.steps[0]
    verdict = next(v.value for v in at.success if v.value.startswith("**Verdict**"))
    assert f"recovered **{100 * (step['accuracy_finetuned'] - step['accuracy_pruned']):.1f} points**" in verdict
    at.switch_page("pages/prune.py").run()


def test_bad_schedule_is_an_error_with_the_fix(app):
    at = app
    at.switch_page("pages/retrain.py").run()
    at.text_input(key="rt_schedule").set_value("0.1, 0.5").run()
    ok(at, errors_allowed=True)
    assert at.error and "decrease" in at.error[0].value and "Fix" in at.error[0].value
    at.text_input(key="rt_schedule").set_value("0.5, 0.2, 0.1, 0.05, 0.02").run()
    at.switch_page("pages/prune.py").run()


def test_training_in_isolation_can_be_cancelled():
    at = new_app().run()
    at.switch_page("pages/retrain.py").run()
    at.number_input(key="li_epochs").set_value(30).run()  # the shipped checkpoint: no dense training
    at.button(key="li_run").click().run()
    ok(at)
    at.button(key="_job_isolation_cancel").click().run()
    job = wait(at, "_job_isolation")
    assert job.result.cancelled
    assert job.result.ticket.get("epochs", 0) < 30


def test_the_chosen_tab_stays_chosen_when_a_run_reruns_the_page(app):
    """Starting a training in isolation reruns the page: the second tab stays open, with the run's progress."""
    at = app
    at.switch_page("pages/retrain.py").run()
    ok(at)
    assert at.session_state["rt_tab"] == "Prune-retrain cascade"
    at.session_state["rt_tab"] = "Train in isolation (lottery tickets)"
    at.run()
    at.number_input(key="rt_epochs").set_value(3).run()  # any other widget's rerun
    ok(at)
    assert at.session_state["rt_tab"] == "Train in isolation (lottery tickets)"
    at.switch_page("pages/prune.py").run()


def test_the_estimate_uses_the_networks_own_sensitivity_time(monkeypatch):
    """A small network is prepared for the estimate (a page opened first on a fresh server used to guess 1.5 s
    a step, twice the real time); a large one, or one that cannot be prepared, keeps the guess."""
    from types import SimpleNamespace

    from ui import engine
    from ui.views import retrain

    monkeypatch.setattr(engine, "peek_prepared", lambda s: None)
    monkeypatch.setattr(engine, "can_auto_prepare", lambda s: True)
    monkeypatch.setattr(engine, "get_prepared", lambda s: SimpleNamespace(timings_s={"sensitivity": 0.1}))
    assert abs(retrain._prune_seconds(None) - 0.4) < 1e-9

    def fails(s):
        raise ValueError("this model does not fit this data set")

    monkeypatch.setattr(engine, "get_prepared", fails)
    assert retrain._prune_seconds(None) == 1.5
    monkeypatch.setattr(engine, "can_auto_prepare", lambda s: False)
    assert retrain._prune_seconds(None) == 1.5


def test_the_tab_chosen_last_is_shown_when_the_page_is_opened_again():
    """A student on 'Train in isolation' who goes to Prune and back finds that tab again (the tabs' own state went
    with the page, and the first tab came back)."""
    at = new_app().run()
    at.session_state["_rt_tab_last"] = "Train in isolation (lottery tickets)"  # what clicking the tab records
    at.switch_page("pages/retrain.py").run()
    ok(at)
    container = next(n.proto.tab_container for n in _blocks(at._tree) if n.proto.HasField("tab_container"))
    assert container.default_tab_index == 1


def _blocks(node):
    proto = getattr(node, "proto", None)
    if proto is not None and hasattr(proto, "HasField") and "tab_container" in proto.DESCRIPTOR.fields_by_name:
        yield node
    for child in getattr(node, "children", {}).values():
        yield from _blocks(child)
