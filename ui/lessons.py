"""Lessons as links: a URL opens a page with preset settings and chosen controls hidden.

    /guarantees?method=sipp-hybrid&mode=keep+ratio&keep=0.05&lesson=loose-bound

The settings travel as the widgets' own query parameters (each widget is bound to the URL, see
ui/sidebar.py), so a lesson link is an ordinary deep link plus ``lesson=<name>``: that adds the
lesson's text at the top of the page and hides the controls the lesson does not need. Any link
may also carry ``hide=key1,key2`` (widget keys, or ``sidebar`` for the whole sidebar). Hidden
controls are still drawn, only not shown, so the page reads their values from the URL as usual.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlencode, urljoin

import streamlit as st

from ui.learn_core import STEP_SENSITIVITY
from ui.style import presenting

KEY = re.compile(r"^[a-z][a-z0-9_]{0,40}$")  # widget keys only: nothing else reaches the style sheet
SIDEBAR = "sidebar"
SIDEBAR_CSS = ('[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], '
               '[data-testid="stExpandSidebarButton"] { display: none !important; }')
SIDEBAR_KEYS = ("model", "data", "method", "mode", "keep", "eps", "delta", "s_auto", "s", "seed", "patch", "device",
                "alloc", "cprime")


@dataclass(frozen=True)
class Lesson:
    title: str
    page: str  # the page's URL path (its file stem in pages/; "" for the default page, Prune, served at the root)
    page_title: str  # the page's title, as the page shows it
    params: dict
    hide: tuple
    text: str

    def url(self, name: str) -> str:
        """The lesson's link, relative to the app's root ("./?…" for the default page, which has no path)."""
        return f"{self.page or './'}?{urlencode({**self.params, 'lesson': name})}"

    @property
    def file(self) -> str:
        return f"pages/{self.page or 'prune'}.py"


LESSONS = {
    "sensitivity": Lesson(
        "What sensitivity is", "learn", "Learn",
        dict(learn_data="moons", learn_hidden=8, learn_s=8, learn_seed=0, learn_step=STEP_SENSITIVITY),
        (SIDEBAR, "learn_hidden", "learn_seed"),
        "An edge's **sensitivity** s is the largest share of its row's signal (its unit's positive or negative "
        "weights) that the edge ever carried on the "
        "points of S. Read the table of s, then step back to **4 · g per edge**: g is that share on one point; for each "
        "unit, the g of its positive weights sum to 1, and so do those of its negative weights. Move the point in step 4 and find the point that gives an edge its maximum. "
        "Edges with a small s can go without changing any unit's input by much, on every point of S."),
    "eps-delta": Lesson(
        "How ε and δ set |S| and m", "", "Prune",
        {"method": "sipp-hybrid", "mode": "eps and delta", "eps": 1, "delta": 1e-16},
        ("model", "data", "method", "mode", "keep", "s_auto", "s", "seed", "patch", "device", "alloc"),
        "Open **Formulas with these numbers** below. |S| comes from the network's size η and the sample's own "
        "failure probability δ_S: it does not move with the sliders. **ε** and **δ** set each row's m: δ enters "
        "the log term L_l, and m(ε) = ⌈L_l·T·(3 + 2ε)/ε²⌉ samples meet ε; the hybrid method keeps the top m "
        "instead where that meets ε with fewer weights. Move ε from 1 to 0.5 and to 5, and δ by a few decades: "
        "watch m, the kept share and the largest bound. δ acts only through the logarithm in L_l: for a Linear "
        "layer, going from δ = 1e-16 to 1e-2 lowers L_l, and so m(ε), about 5×, while halving ε alone raises m(1) "
        "about 3×."),
    "loose-bound": Lesson(
        "When the bound is loose", "guarantees", "Guarantees",
        {"method": "sipp-hybrid", "mode": "keep ratio", "keep": 0.05},
        ("model", "data", "mode", "eps", "s_auto", "s", "seed", "patch", "device", "alloc", "cprime"),
        "At a keep ratio of 5% the **Verdict** says by how much the bound exceeds the error actually measured. "
        "Move κ up to 0.5 and back down: the bound tightens as more weights stay. Then switch the method to "
        "sipp-det: its deterministic bounds often exceed 1, which says nothing (a pruned sum can only shrink, so "
        "its relative error is at most 1). A bound is loose where few weights carry a row: it must hold for every "
        "point like S, while the measurement sees only the held-out points."),
}


def lesson_urls() -> dict[str, str]:
    return {name: lesson.url(name) for name, lesson in LESSONS.items()}


def absolute(url: str, page_url: str | None, page: str) -> str:
    """A lesson link made whole from the address of the page that shows it (page: that page's URL path, e.g.
    "learn"), so that it can be pasted into slides; as it is when the address is unknown."""
    if not page_url:
        return url
    root = re.sub(rf"/{re.escape(page)}/?$", "/", page_url.split("?")[0].split("#")[0])
    return urljoin(root if root.endswith("/") else root + "/", url)


def hidden_keys(params) -> list[str]:
    """The controls a link hides: its lesson's, plus ``hide=`` (comma-separated widget keys); others dropped."""
    keys: list[str] = []
    lesson = LESSONS.get(str(params.get("lesson", "")))
    if lesson is not None:
        keys += list(lesson.hide)
    for raw in str(params.get("hide", "")).split(","):
        k = raw.strip().lower()
        if k and KEY.match(k):
            keys.append(k)
    return list(dict.fromkeys(keys))


# A sidebar group whose controls are all hidden is hidden too (no empty "Advanced" expander)
GROUPS = {"advanced": ("alloc", "cprime")}


def hide_css(keys) -> str:
    """A style sheet that hides these controls (by Streamlit's per-key class) and, for ``sidebar``, the sidebar."""
    keys = list(keys) + [g for g, members in GROUPS.items() if all(m in keys for m in members)]
    rules = [f".st-key-{k} {{ display: none !important; }}" for k in keys if k != SIDEBAR and KEY.match(k)]
    if SIDEBAR in keys:
        rules.append(SIDEBAR_CSS)
    return "\n".join(rules)


def _leave() -> None:
    for k in ("lesson", "hide"):
        if k in st.query_params:
            del st.query_params[k]


def apply(page_title: str) -> Lesson | None:
    """On a page: the lesson's text (when the link names a lesson of this page) and the hidden controls."""
    params = st.query_params
    keys = hidden_keys(params)
    lesson = LESSONS.get(str(params.get("lesson", "")))
    if lesson is not None and lesson.page_title != page_title:
        lesson, keys = None, hidden_keys({"hide": params.get("hide", "")})
    if keys:
        st.html(f"<style>{hide_css(keys)}</style>")
    if lesson is not None:
        with st.container(border=True, key="lesson_box"):
            st.markdown(f"**Lesson: {lesson.title}.** {lesson.text}")
            if presenting() and SIDEBAR not in lesson.hide and set(SIDEBAR_KEYS) - set(lesson.hide):
                # presentation mode starts with the sidebar closed, and this lesson's controls are in it
                st.markdown("The lesson's controls are in the sidebar: open it with **»** at the top left.")
            st.button("Show every control", key="lesson_leave", on_click=_leave, icon=":material/tune:",
                      help="Leave the lesson: the hidden controls come back; the settings stay.")
    return lesson
