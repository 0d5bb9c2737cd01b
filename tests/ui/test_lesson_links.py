"""Lessons as links (ui/lessons.py): a lesson URL restores its page, its settings and its hidden controls."""
from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from pagetest import new_app, ok, page_folders  # noqa: F401 - the module's fixtures

from ui import lessons, preload


def _open(url: str, file: str):
    """An app session opened on this link: its query string in the URL, then its page (AppTest starts on the
    default page; a browser asks for the link's path straight away)."""
    parts = urlsplit(url)
    at = new_app()
    at.query_params.update(dict(parse_qsl(parts.query)))
    at.run()
    at.switch_page(file).run()
    ok(at)
    return at


def _style(at) -> str:
    return "\n".join(h.proto.body for h in at.get("html"))


def test_learn_page_links_every_lesson():
    at = new_app().run()
    at.switch_page("pages/learn.py").run()
    ok(at)
    text = "\n".join(m.value for m in at.markdown)
    for name, url in lessons.lesson_urls().items():
        assert f"[{lessons.LESSONS[name].title}]({url})" in text


@pytest.mark.parametrize("name", list(lessons.LESSONS))
def test_a_lesson_url_restores_its_page_settings_and_hidden_controls(name):
    lesson = lessons.LESSONS[name]
    at = _open(lesson.url(name), lesson.file)
    assert at.title[0].value == lesson.page_title
    assert any(m.value.startswith(f"**Lesson: {lesson.title}.**") for m in at.markdown)
    for key, value in lesson.params.items():
        got = at.session_state[key]
        assert str(got) == str(value) or (isinstance(got, float) and got == pytest.approx(float(value))), (key, got)
    if name == "eps-delta":  # its text says "Open Formulas with these numbers below": they start open
        assert len(at.latex) >= 8
    css = _style(at)
    for key in lesson.hide:
        assert (f".st-key-{key} " in css) if key != lessons.SIDEBAR else ('[data-testid="stSidebar"]' in css)
    shown = set(lessons.SIDEBAR_KEYS) - set(lesson.hide)
    for key in shown:
        assert f".st-key-{key} " not in css
    at.button(key="lesson_leave").click().run()  # leave the lesson: every control back, the settings kept
    ok(at)
    assert not any(m.value.startswith("**Lesson:") for m in at.markdown)
    assert ".st-key-" not in _style(at).replace(f".st-key-{preload.KEY} ", "")  # no control hidden any more
    for key, value in lesson.params.items():
        assert str(at.session_state[key]) == str(value) or at.session_state[key] == pytest.approx(float(value))


def test_hide_takes_widget_keys_only():
    assert lessons.hidden_keys({"hide": "keep, eps,<b>x</b>,a;b{}"}) == ["keep", "eps"]
    assert lessons.hide_css(["keep"]) == ".st-key-keep { display: none !important; }"
    assert lessons.hidden_keys({"lesson": "nope"}) == []


def test_a_group_whose_controls_are_all_hidden_is_hidden_too():
    """The loose-bound lesson hides both controls of the sidebar's "Advanced" expander: the expander goes too."""
    assert ".st-key-advanced " in lessons.hide_css(["alloc", "cprime"])
    assert ".st-key-advanced " not in lessons.hide_css(["alloc"])
    lesson = lessons.LESSONS["loose-bound"]
    at = _open(lesson.url("loose-bound"), lesson.file)
    assert ".st-key-advanced " in _style(at)
    assert any(e.label == "Advanced" for e in at.expander)  # drawn, inside the hidden container "advanced"


def test_the_pages_own_controls_travel_in_the_url_too():
    """Guarantees' per-row layer and points, and the Filters page's method, target, ratio and layer: a link made on
    those pages opens them as they were (a selectbox's URL value is the label it shows); a value the page does not
    offer is dropped and the control shows its default."""
    at = _open("guarantees?" + urlencode({"guar_layer": "fc2 · Linear 300→100", "guar_on": "the points of S"}),
               "pages/guarantees.py")
    assert at.selectbox(key="guar_layer").value == "fc2" and at.radio(key="guar_on").value == "the points of S"
    at = _open("guarantees?guar_layer=nonsense", "pages/guarantees.py")
    assert at.selectbox(key="guar_layer").value in ("fc1", "fc2", "fc3")
    assert "guar_layer" not in at.query_params
    at = _open("filters?" + urlencode({"filters_method": "filter-l1", "filters_target": "FLOPs", "filters_ratio": 0.5,
                                       "filters_layer": "fc2 · Linear 300→100"}), "pages/filters.py")
    assert at.selectbox(key="filters_method").value == "filter-l1" and at.radio(key="filters_target").value == "flops"
    assert at.slider(key="filters_ratio").value == 0.5 and at.selectbox(key="filters_layer").value == "fc2"


def test_the_sensitivity_lessons_network_has_an_edge_maximum_to_find():
    """The lesson asks for the point that gives an edge its maximum: with 4 hidden units most of fc2's s were 1 (a
    unit with one active input on some point), tied on several points; its 8 hidden units give none."""
    import numpy as np

    from ui import learn_core

    p = lessons.LESSONS["sensitivity"].params
    toy = learn_core.train_toy(p["learn_data"], p["learn_hidden"], p["learn_seed"])
    walk = learn_core.walk_layer(toy, toy.layer_names[-1], p["learn_s"], p["learn_seed"])
    assert not np.isclose(walk.s, 1.0).any()


def test_the_retraining_pages_methods_travel_by_name():
    """rt_method=wt in a link picks WT, as method=wt does in the sidebar (the box showed "wt: WT: global magnitude",
    which was the URL's value too, so a link naming the method was dropped)."""
    at = _open("retrain?rt_method=wt&li_method=snip", "pages/retrain.py")
    assert at.selectbox(key="rt_method").value == "wt" and at.selectbox(key="li_method").value == "snip"


def test_a_lesson_link_is_shown_whole_for_slides():
    assert lessons.absolute("guarantees?lesson=loose-bound", "http://localhost:8501/learn", "learn") == (
        "http://localhost:8501/guarantees?lesson=loose-bound")
    assert lessons.absolute("./?method=wt", "https://host/app/learn/", "learn") == "https://host/app/?method=wt"
    assert lessons.absolute("learn?x=1", "http://h:1/app", "learn") == "http://h:1/app/learn?x=1"  # served at root
    assert lessons.absolute("learn?x=1", None, "learn") == "learn?x=1"


def test_a_projected_lesson_whose_controls_are_in_the_sidebar_says_where_they_are():
    """Presentation mode closes the sidebar; the ε and δ lesson asks for its sliders: the lesson box points to them.
    The sensitivity lesson hides the whole sidebar, and says nothing of it."""
    at = _open(lessons.LESSONS["eps-delta"].url("eps-delta") + "&present=1", lessons.LESSONS["eps-delta"].file)
    assert any("open it with **»**" in m.value for m in at.markdown)
    lesson = lessons.LESSONS["sensitivity"]
    at = _open(lesson.url("sensitivity") + "&present=1", lesson.file)
    assert not any("open it with **»**" in m.value for m in at.markdown)


def test_the_learn_and_nonsmoothness_choices_travel_by_name():
    """learn_data=spirals and ns_units=1024, as a lecturer writes them, pick spirals and 1024 (the boxes showed
    "spirals: three spiral arms (3 classes)" and "1,024", which was the value a link had to carry, so these were
    dropped without a word: the page's own check accepted them)."""
    at = _open("learn?learn_data=spirals", "pages/learn.py")
    assert at.selectbox(key="learn_data").value == "spirals" and not at.warning
    at = _open("nonsmoothness?ns_units=1024", "pages/nonsmoothness.py")
    assert at.selectbox(key="ns_units").value == 1024 and not at.warning


def test_a_lessons_slider_values_are_written_as_the_sliders_write_them():
    """A bound slider reads a link's value as the text it shows: the ε-and-δ lesson's eps=1.0 was dropped, and only
    the default being 1 hid it (a copy edited to eps=0.5 would have worked, one edited to eps=2.0 not)."""
    from urllib.parse import parse_qs

    from ui.links import sidebar_url_spec
    from ui.settings import fmt_num

    spec = sidebar_url_spec([], [], [])
    for name, lesson in lessons.LESSONS.items():
        query = parse_qs(urlsplit(lesson.url(name)).query)
        for key, (raw,) in query.items():
            if spec.get(key, ("",))[0] == "log":
                assert raw == fmt_num(float(raw)), (name, key, raw)


@pytest.mark.parametrize("url, file, spelled", [
    ("guarantees?guar_layer=fc2", "pages/guarantees.py", ("guar_layer", "fc2 · Linear 300→100", "fc2")),
    ("filters?filters_target=flops", "pages/filters.py", ("filters_target", "FLOPs", "flops")),
    # named before the comparison has run (its control appears only then)
    ("filters?filters_cmp_x=flops_share", "pages/filters.py", ("filters_cmp_x", "FLOPs kept", None)),
    ("retrain?li_keep=0.10", "pages/retrain.py", ("li_keep", "0.1", 0.1)),
    ("retrain?rt_method=WT", "pages/retrain.py", ("rt_method", "wt", "wt")),
    ("learn?learn_step=5", "pages/learn.py", ("learn_step", "5 · s = max over S", "5 · s = max over S")),
])
def test_a_pages_own_control_spelled_another_way_is_named_with_its_spelling(url, file, spelled):
    """Guarantees, Filters, Retraining and Learn's walkthrough checked no link values: a value written as the option's
    name (fc2, flops) or another way (0.10, WT, 5) was dropped without a word, and the URL lost it."""
    key, shown, value = spelled
    at = _open(url, file)
    texts = [w.value for w in at.warning]
    assert len(texts) == 1 and f"{key}=" in texts[0] and f"as it writes it: {shown};" in texts[0], texts
    assert "on the page" in texts[0] and "sidebar" not in texts[0]
    fixed = _open(f"{url.split('?')[0]}?{urlencode({key: shown})}", file)  # the spelling the warning gives
    assert not fixed.warning and (value is None or fixed.session_state[key] == value)


def test_a_multiselects_values_are_one_parameter_each():
    """to_methods=wt,snip fell back to the five default methods without a word."""
    at = _open("tradeoffs?to_methods=wt,snip", "pages/tradeoffs.py")
    assert any("to_methods=wt&to_methods=snip" in w.value for w in at.warning)
    at = new_app()
    at.query_params["to_methods"] = ["wt", "snip"]
    at.run()
    at.switch_page("pages/tradeoffs.py").run()
    ok(at)
    assert at.session_state["to_methods"] == ["wt", "snip"] and not at.warning


def test_a_link_opens_the_retraining_pages_second_tab():
    """li_… values in a link used to land on the first tab, with the controls they set out of sight."""
    tab = "Train in isolation (lottery tickets)"
    at = _open("retrain?" + urlencode({"rt_tab": tab, "li_keep": "0.1"}), "pages/retrain.py")
    assert at.session_state["rt_tab"] == tab and not at.warning
    wrong = _open("retrain?rt_tab=isolation", "pages/retrain.py")
    texts = [w.value for w in wrong.warning]
    assert len(texts) == 1 and "rt_tab=" in texts[0] and tab in texts[0], texts
    assert wrong.session_state["rt_tab"] == "Prune-retrain cascade"
