"""Fault cases of the app's links: a value a widget would silently reset is named, with the fix."""
from __future__ import annotations

from pathlib import Path

from faults import fault
from streamlit.testing.v1 import AppTest

from ui.settings import sidebar_url_spec, url_problems

APP = str(Path(__file__).resolve().parents[2] / "studio.py")
SPEC = sidebar_url_spec(["lenet300", "lenet5"], ["mnist5k", "moons"], ["sipp-hybrid", "wt"])


@fault("link with an unknown model, eps off the slider, negative seed", surface="app", outcome="recovered")
def test_bad_link_values_are_named_on_the_page():
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update({"model": "resnet9000", "eps": "0.3", "seed": "-4", "keep": "0.1"})
    at.run()
    warnings = [w.value for w in at.warning]
    assert any("model='resnet9000'" in w and "lenet300" in w for w in warnings)
    assert any("eps='0.3'" in w and "slider" in w for w in warnings)
    assert any("seed='-4'" in w for w in warnings)
    assert not any("keep=" in w for w in warnings)  # a good value is not flagged
    assert at.selectbox(key="model").value == "lenet300" and not at.exception


def test_link_values_are_checked_by_kind():
    assert url_problems({"model": "lenet5", "keep": "0.25", "eps": "0.5", "delta": "1e-16", "s_auto": "false",
                         "s": "100", "cprime": "3"}, SPEC) == []
    bad = url_problems({"keep": "2", "delta": "0.3", "s_auto": "maybe", "s": "1.5", "cprime": "nan", "mode": "x"},
                       SPEC)
    assert [p.split("=")[0].split()[-1] for p in bad] == ["mode", "keep", "delta", "s_auto", "s", "cprime"]
    assert all("Fix:" in p for p in bad)


@fault("link with a page's own bad values (Learn, Nonsmoothness)", surface="app", outcome="recovered")
def test_page_link_values_are_named_on_their_page():
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update({"learn_hidden": "99", "learn_data": "circles"})
    at.run()
    at.switch_page("pages/learn.py").run()
    warnings = [w.value for w in at.warning]
    assert any("learn_hidden='99'" in w and "outside 2 to 8" in w for w in warnings)
    assert any("learn_data='circles'" in w for w in warnings)
    assert not at.exception
    ns = AppTest.from_file(APP, default_timeout=120)
    ns.query_params.update({"ns_points": "1000", "ns_kind": "mixed"})
    ns.run()
    ns.switch_page("pages/nonsmoothness.py").run()
    warnings = [w.value for w in ns.warning]
    assert any("ns_points='1000'" in w for w in warnings) and not any("ns_kind" in w for w in warnings)
