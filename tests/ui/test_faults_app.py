"""Fault cases of the app's links: a value a widget would silently reset is named, with the fix."""
from __future__ import annotations

from pathlib import Path

from faults import fault
from streamlit.testing.v1 import AppTest

from ui.links import sidebar_url_spec, unused_link_values, url_problems

APP = str(Path(__file__).resolve().parents[2] / "studio.py")
SPEC = sidebar_url_spec(["lenet300", "lenet5"], ["mnist5k", "moons"], ["sipp-hybrid", "wt"])


@fault("link with an unknown model, eps off the slider, negative seed", surface="app", outcome="recovered")
def test_bad_link_values_are_named_on_the_page():
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update({"model": "resnet9000", "eps": "0.3", "seed": "-4", "keep": "0.1"})
    at.run()
    warnings = [w.value for w in at.warning]
    assert any("model='resnet9000'" in w and "lenet300" in w for w in warnings)
    assert any("eps='0.3'" in w and "not one of the slider's values" in w for w in warnings)
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


def test_a_choice_written_another_way_names_the_controls_spelling():
    """A control reads a link's choice as the exact text it shows: 'LENET5', 'sipp-det ' (a trailing space) and
    ns_paths=32.0 were dropped; the check used to strip or accept them, so nothing was said."""
    bad = url_problems({"model": "LENET5", "method": "wt "}, SPEC)
    assert "model='LENET5'" in bad[0] and "as it writes it: lenet5;" in bad[0]
    assert "method='wt '" in bad[1] and "as it writes it: wt;" in bad[1]
    assert "in the sidebar" in bad[0]
    page = url_problems({"ns_paths": "32.0"}, {"ns_paths": ("choice", ("4", "8", "16", "32", "64"))}, where="the page")
    assert len(page) == 1 and "as it writes it: 32;" in page[0]
    assert "on the page" in page[0] and "sidebar" not in page[0]


def test_a_choices_default_written_another_way_is_not_flagged():
    """ns_paths=16.0 or method=SIPP-HYBRID: the control drops the value but shows its default, which is what the link
    asked for, so a warning would only alarm (the ε and δ sliders already said nothing in that case)."""
    from ui.links import link_shown

    rule = {"ns_paths": link_shown([4, 8, 16, 32, 64], default=16)}
    assert url_problems({"ns_paths": "16.0"}, rule, where="the page") == []
    assert len(url_problems({"ns_paths": "32.0"}, rule, where="the page")) == 1
    assert url_problems({"method": "SIPP-HYBRID", "model": "LENET5"}, SPEC)[0].startswith("The link's value model=")
    assert len(url_problems({"method": "SIPP-HYBRID", "model": "LENET5"}, SPEC)) == 1
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update({"ns_paths": "16.0", "ns_points": "2048.0"})
    at.run()
    at.switch_page("pages/nonsmoothness.py").run()
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1 and "ns_points='2048.0'" in warnings[0], warnings


def test_a_decimal_in_a_whole_number_box_says_what_is_used():
    """s=200.5 shows 200 (the box keeps the whole part): the warning used to say the default was shown."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update({"s_auto": "false", "s": "200.5"})
    at.run()
    assert at.session_state["s"] == 200
    assert [w.value for w in at.warning] == ["The link's value s='200.5' is not a whole number: the sidebar uses 200. "
                                             "Fix: write s=200 in the link, or another whole number."]


def test_a_link_value_the_other_settings_leave_unused_is_named():
    """|S| while the formula chooses it, ε in keep-ratio mode, κ in ε-and-δ mode: each link value was kept without a
    word, and acted only once the other setting changed."""
    assert list(unused_link_values({"s": "200"})) == ["s"] and unused_link_values({"s": "200", "s_auto": "false"}) == {}
    assert "mode=eps+and+delta" in unused_link_values({"eps": "0.5"})["eps"]
    assert unused_link_values({"eps": "0.5", "mode": "eps and delta"}) == {}
    assert "drop keep" in unused_link_values({"keep": "0.2", "mode": "eps and delta"})["keep"]
    assert unused_link_values({"keep": "0.2"}) == {}
    assert unused_link_values({"eps": "0.3"}, SPEC)["eps"].endswith(
        "mode=eps+and+delta to the link, and correct the value: it is not one of the slider's values (0.01 to 100: 1, "
        "2, 5 per decade).")
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update({"eps": "2.0"})  # named once, as unused: its slider is not drawn in keep-ratio mode
    at.run()
    assert [w.value for w in at.warning] == ["The link's value eps='2.0' is not used in keep-ratio mode. Fix: add "
                                             "mode=eps+and+delta to the link, and correct the value: the slider "
                                             "takes a value only as it writes it: 2."]


@fault("link with an infinite whole number (seed=inf, to_seeds=1e999)", surface="app", outcome="recovered")
def test_an_infinite_whole_number_in_a_link_is_named_and_the_page_runs():
    """Streamlit's number box stopped the page with OverflowError on seed=inf (every page: the sidebar's)."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update({"seed": "inf"})
    at.run()
    assert not at.exception and at.session_state["seed"] == 0
    assert any("seed='inf'" in w.value and "not a finite number" in w.value for w in at.warning)
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update({"to_seeds": "1e999"})
    at.run()
    at.switch_page("pages/tradeoffs.py").run()
    assert not at.exception and at.session_state["to_seeds"] == 1


def test_repeated_values_spaces_in_true_false_and_a_multiselect_are_named_as_they_are_taken():
    """A slider reads a repeated value as a range and refuses it (keep=0.2&keep=0.3 showed the default without a
    word); ' false' is not false to Streamlit; a multiselect keeps the values it has and drops the others, so
    to_methods=WT&to_methods=snip holds snip, and the fix gives every value in its spelling."""
    assert url_problems({"keep": ["0.2", "0.3"]}, SPEC) == [
        "The link gives keep 2 values (0.2, 0.3); a slider takes one, so all were ignored and the sidebar shows its "
        "default. Fix: write keep once."]
    assert "as written: false" in url_problems({"s_auto": " false"}, SPEC)[0]
    assert list(unused_link_values({"s": "500", "s_auto": " false"})) == ["s"]  # the toggle stays on
    rule = ("many", ("sipp-hybrid", "wt", "snip"))
    assert url_problems({"m": ["WT", "snip"]}, {"m": rule}, where="the page") == [
        "The link's value m='WT' was dropped because the box takes a value only as it writes it; the box holds snip. "
        "Fix: write m=snip&m=wt."]
    assert "Fix: write m=wt&m=snip." in url_problems({"m": ["WT,snip"]}, {"m": rule}, where="the page")[0]
    assert url_problems({"m": ["wt", ""]}, {"m": rule}) == [] and url_problems({"m": [""]}, {"m": rule}) == []
    long = url_problems({"model": "x" * 5000}, SPEC)[0]
    assert len(long) < 400 and "…" in long
