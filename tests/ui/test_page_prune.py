"""The Prune page's speed panel ("Why is the pruned model not faster?"): its helper and the panel in the app;
the Verdict callouts of Prune, Guarantees and Sensitivity. The rest of the Prune page is covered in
tests/ui/test_app.py."""
from __future__ import annotations

import pytest
import torch
from pagetest import app, ok, page_folders  # noqa: F401 - the module's fixtures

from sipp_core.pipeline import evaluate_prune, prepare
from ui.views.prune import speed_report, speed_tables


@pytest.fixture(scope="module")
def lenet300():
    return prepare("lenet300", "mnist5k")


def test_speed_panel_helper_returns_its_tables_on_pruned_lenet300(lenet300):
    report = evaluate_prune(lenet300, keep_ratio=0.05)
    t = speed_tables(speed_report(report.result, repeats=5))
    assert sorted(t["totals"]["batch size"]) == [1, 256]
    assert len(t["layers"]) == 6 and len(t["files"]) == 4
    assert any("File size" in line for line in t["verdict"]) and "structured" in t["explanation"]


def test_speed_panel_on_the_prune_page(app):
    at = app
    assert not [b for b in at.button if b.key == "speed_run"]  # closed: its content is not even made
    at.session_state["speed_open"] = True  # what opening the expander does (it reruns the page)
    at.run()
    at.button(key="speed_run").click().run()
    ok(at)
    assert any("batch 256" in m.value for m in at.markdown)


def _verdict(at) -> str:
    found = [v.value for v in at.success if v.value.startswith("**Verdict**")]
    assert found, "no Verdict callout on the page"
    return found[0]


def test_prune_guarantees_and_sensitivity_pages_give_a_verdict_from_their_numbers(app):
    at = app
    at.switch_page("pages/prune.py").run()
    ok(at)
    metrics = {m.label: m.value for m in at.metric}
    v = _verdict(at)
    assert f"Keeping **{metrics['Weights kept']}** of the weights" in v
    assert f"({metrics['Largest measured error']}) stays below the largest bound ({metrics['Largest bound']})" in v
    at.switch_page("pages/guarantees.py").run()
    ok(at)
    # the default's rows mostly have a bound of 1 or more: the verdict counts them as saying nothing
    assert "The bound **held on" in _verdict(at) and "of the 820 rows** are deterministic or pruned entirely" \
        in _verdict(at)
    at.switch_page("pages/sensitivity.py").run()
    ok(at)
    assert "are also among the" in _verdict(at) and "of its total sensitivity" in _verdict(at)
    at.switch_page("pages/prune.py").run()


def test_the_formulas_expander_says_why_a_row_has_its_m(lenet300):
    """ε = 1 on the default: the loosest hybrid row is deterministic with far fewer weights than m(1); sipp-rand at
    ε = 5: a sampled row's distinct count lies around its planned m (docs/sipp.md §4)."""
    from types import SimpleNamespace

    from sipp_core.plan.pruning import prune
    from ui import formulas as fx
    from ui.explain import det_m_for_eps, draws_for, row_numbers, why_this_m, worst_row

    prepared = lenet300

    def pruned(method, eps):  # the prune alone (row_numbers reads the plans and the settings, no measurement)
        res = prune(prepared.model, prepared.s_x, method=method, epsilon=eps, sensitivities=prepared.sensitivities)
        return SimpleNamespace(prepared=prepared, result=res)

    hy = pruned("sipp-hybrid", 1.0)
    r = row_numbers(hy, *worst_row(hy))
    assert r["method"] == 0 and det_m_for_eps(r["row_s"], 1.0 / 3.0) == r["m"]  # the engine's m, recomputed
    m_eps = fx.m_for_eps_value(1.0, r["T"], r["L"])
    text = " ".join(why_this_m(r, "sipp-hybrid", "eps and delta", 1.0, 3.0))
    assert f"Sampling would need m(1) = {m_eps} samples" in text and m_eps > r["m"]
    assert f"this row is **deterministic** with m = {r['m']}" in text
    rand = pruned("sipp-rand", 5.0)
    plan = next(iter(rand.result.plans.values()))
    sampled = plan.row_method == 1
    kept, m = plan.row_kept[sampled], plan.row_budget[sampled]
    assert (kept > m).any() and (kept < m).any()  # random around m, both ways
    f, c = [int(v) for v in torch.nonzero(sampled & (plan.row_kept != plan.row_budget))[0]]
    r = row_numbers(rand, plan.name, f, c)
    line = why_this_m(r, "sipp-rand", "eps and delta", 5.0, 1.0)[-1]
    assert f"Why kept {r['kept']} distinct with m = {r['m']}" in line
    assert f"draws m′ = {draws_for(r['row_s'], r['m'])} times" in line and draws_for(r["row_s"], r["m"]) >= r["m"]


def test_the_formulas_are_made_only_while_their_expander_is_open(app):
    at = app
    at.switch_page("pages/prune.py").run()
    ok(at)
    assert not at.latex  # closed: a slider move sends none of its dozen formulas
    at.session_state["explain_open"] = True  # what opening it does (it reruns the page)
    at.run()
    ok(at)
    assert len(at.latex) >= 8 and any("loosest row" in m.value for m in at.markdown)
    at.session_state["explain_open"] = False
    at.run()


def test_the_wide_tables_keep_their_row_names_in_view(app):
    """The per-layer table (17 columns) and Run history's list are wider than the page at 1280 px: scrolled sideways,
    a row lost its layer's name (or its run's id). That column is pinned."""
    import json

    at = app
    at.run()
    ok(at)
    layers = next(json.loads(d.proto.columns) for d in at.dataframe if "max error held-out" in d.proto.columns)
    assert layers["layer"]["pinned"] is True
    at.switch_page("pages/history.py").run()
    ok(at)
    runs = next(json.loads(d.proto.columns) for d in at.dataframe if '"id"' in d.proto.columns)
    assert runs["id"]["pinned"] is True
    at.switch_page("pages/prune.py").run()
