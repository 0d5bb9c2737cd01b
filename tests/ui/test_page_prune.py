"""The Prune page's speed panel ("Why is the pruned model not faster?"): its helper and the panel in the app.
The rest of the Prune page is covered in tests/ui/test_app.py."""
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
