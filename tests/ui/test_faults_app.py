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


def test_a_slider_value_spelled_another_way_is_named_with_the_sliders_spelling():
    """The ε and δ sliders read a link's value as the text they show: eps=2.0 and delta=1e-08 were dropped without a
    word (the check took them as numbers); eps=2 and delta=1e-8 are taken, and the default, however written, shows
    anyway."""
    bad = url_problems({"eps": "2.0", "delta": "1e-08"}, SPEC)
    assert len(bad) == 2
    assert "eps='2.0'" in bad[0] and "as it writes it: 2;" in bad[0]
    assert "delta='1e-08'" in bad[1] and "as it writes it: 1e-8;" in bad[1]
    assert url_problems({"eps": "2", "delta": "1e-8"}, SPEC) == []
    assert url_problems({"eps": "1.0", "delta": "1e-16"}, SPEC) == []  # the defaults: the sliders show them anyway
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update({"mode": "eps and delta", "eps": "2", "delta": "1e-8"})
    at.run()
    assert at.session_state["eps"] == 2.0 and at.session_state["delta"] == 1e-8 and not at.warning


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
