"""The Prune page's speed panel ("Why is the pruned model not faster?"): its helper and the panel in the app;
the Verdict callouts of Prune, Guarantees and Sensitivity. The rest of the Prune page is covered in
tests/ui/test_app.py."""
from __future__ import annotations

from pagetest import app, ok, page_folders  # noqa: F401 - the module's fixtures

from sipp_core.pipeline import evaluate_prune, prepare
from ui.views.prune import speed_report, speed_tables


def test_speed_panel_helper_returns_its_tables_on_pruned_lenet300():
    report = evaluate_prune(prepare("lenet300", "mnist5k"), keep_ratio=0.05)
    t = speed_tables(speed_report(report.result, repeats=5))
    assert sorted(t["totals"]["batch size"]) == [1, 256]
    assert len(t["layers"]) == 6 and len(t["files"]) == 4
    assert any("File size" in line for line in t["verdict"]) and "structured" in t["explanation"]


def test_speed_panel_on_the_prune_page(app):
    at = app
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
    assert "The bound **held on" in _verdict(at) and "loose by about" in _verdict(at)
    at.switch_page("pages/sensitivity.py").run()
    ok(at)
    assert "are also among the" in _verdict(at) and "of its total sensitivity" in _verdict(at)
    at.switch_page("pages/prune.py").run()
