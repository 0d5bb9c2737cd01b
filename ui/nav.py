"""Navigation: one registry of pages grouped in sections (light: studio.py calls it before its heavy imports).

To add a page, write its body as ui/views/<name>.py with a ``render()``, a thin
pages/<name>.py that calls ``entry(render)`` with it, and append one PageSpec to
PAGES; empty sections are not shown.
"""
from __future__ import annotations

import runpy
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import streamlit as st

from ui.first_imports import later_import

APP = Path(__file__).resolve().parent.parent / "studio.py"
_ACTIVE = threading.local()  # set while studio.py runs the selected page


@dataclass(frozen=True)
class PageSpec:
    path: str  # relative to studio.py
    title: str
    icon: str
    section: str
    default: bool = False
    # Its charts' templates are compiled (ui.charts.compiled): it draws them without Altair, so a fresh server's
    # first page never imports it. Every other page has the chart builders imported before it runs (run_page).
    compiled_charts: bool = False


SECTIONS = ("Prune and inspect", "Analyses", "Models and runs", "Teach")

PAGES: list[PageSpec] = [
    PageSpec("pages/prune.py", "Prune", ":material/content_cut:", "Prune and inspect", default=True,
             compiled_charts=True),
    PageSpec("pages/sensitivity.py", "Sensitivity", ":material/insights:", "Prune and inspect"),
    PageSpec("pages/kept_edges.py", "Kept edges", ":material/grid_on:", "Prune and inspect"),
    PageSpec("pages/guarantees.py", "Guarantees", ":material/verified:", "Prune and inspect"),
    PageSpec("pages/filters.py", "Filters", ":material/filter_alt:", "Prune and inspect"),
    PageSpec("pages/learn.py", "Learn", ":material/school:", "Teach"),
    PageSpec("pages/glossary.py", "Glossary", ":material/menu_book:", "Teach"),
    PageSpec("pages/nonsmoothness.py", "Nonsmoothness", ":material/show_chart:", "Analyses"),
    PageSpec("pages/tradeoffs.py", "Trade-offs", ":material/stacked_line_chart:", "Analyses"),
    PageSpec("pages/retrain.py", "Retraining", ":material/model_training:", "Analyses"),
    PageSpec("pages/bring_your_own.py", "Bring your own", ":material/upload_file:", "Models and runs"),
    PageSpec("pages/history.py", "Run history", ":material/history:", "Models and runs"),
]


COMPILED_TITLES = frozenset(p.title for p in PAGES if p.compiled_charts)
CHART_BUILDERS = "ui.charts.core"  # what every chart builder imports: Altair, the shared scales, titles and sizes


def build_navigation():
    sections: dict[str, list] = {}
    for name in SECTIONS:
        items = [p for p in PAGES if p.section == name]
        if not items:
            continue
        # URL paths are the file stems (/kept_edges): the same names Streamlit's legacy pages/ routing
        # uses, so a deep link works even as the very first request to a fresh server.
        sections[name] = [st.Page(p.path, title=p.title, icon=p.icon, default=p.default) for p in items]
    return st.navigation(sections)


def run_page(page) -> None:
    """studio.py: run the selected page, marking that the shared sidebar has been drawn. A page whose charts are
    built here has the builders imported first, their objects frozen (first_imports.later_import): usually the
    warm-up has done it in the background already."""
    if page.title not in COMPILED_TITLES:
        later_import(CHART_BUILDERS)
    _ACTIVE.on = True
    try:
        page.run()
    finally:
        _ACTIVE.on = False


def entry(render: Callable[[], None]) -> None:
    """What every file in pages/ calls.

    Normally studio.py has drawn the sidebar and st.navigation runs this page. On a fresh server whose
    very first request is a deep link (e.g. /guarantees), Streamlit's legacy pages/ routing runs the
    page file by itself; then run the app instead, which routes back here with the sidebar drawn.
    """
    if getattr(_ACTIVE, "on", False):
        render()
        return
    runpy.run_path(str(APP), run_name="__main__")
