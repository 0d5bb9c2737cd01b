"""The page's look, set before anything heavy is imported: its CSS, and presentation mode.

Presentation mode (``?present=1`` in the URL, or the sidebar's toggle) is for a projector: the sidebar
starts collapsed, text is larger, every chart takes the page's full width with larger type, and a small table is a
static table in larger type (ui.show).
This module imports Streamlit only: studio.py applies it before importing torch, so a fresh server's first page
(which waits a few seconds for those imports) already has its final sidebar and type instead of changing them
when the page arrives.
"""
from __future__ import annotations

import streamlit as st

PRESENT_PARAM = "present"
_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")

# Always: readable when the browser is zoomed (150% on a 1280 px projector leaves 853 CSS px).
# A narrower sidebar; columns that hold a chart (or its download button, drawn before the chart is) wrap
# onto their own line once they would be narrower than 380 px (their legends and layer labels need that
# much); metric values shrink before they are cut to "10.…"; ui/preload.py's container stays hidden; a chart's
# "Download chart" button sits at the bottom of its column (columns in a row are as tall as the tallest), so that
# the buttons under two charts of different heights line up. The page starts just below Streamlit's 3.75rem header
# (its own 6rem top padding was a fifth of a 1280x720 projector's height at 150% zoom).
PAGE_CSS = """
<style>
[data-testid="stMainBlockContainer"] { padding-top: 4.25rem; }
section[data-testid="stSidebar"][data-collapsed="false"] { width: min(300px, 24vw) !important;
  min-width: min(300px, 24vw) !important; }
[data-testid="stHorizontalBlock"]:has(> [data-testid="stColumn"] [data-testid="stVegaLiteChart"]),
[data-testid="stHorizontalBlock"]:has(> [data-testid="stColumn"] [data-testid="stPopover"]) { flex-wrap: wrap; }
[data-testid="stColumn"]:has([data-testid="stVegaLiteChart"]),
[data-testid="stColumn"]:has([data-testid="stPopover"]) { min-width: min(100%, 380px); }
.st-key-sipp-preload { display: none !important; }
[data-testid="stColumn"]:has([data-testid="stVegaLiteChart"]) > [data-testid="stVerticalBlock"] { height: 100%; }
[data-testid="stColumn"] [class*="st-key-chart-dl-"] { margin-top: auto; }
[data-testid="stMetricValue"] { font-size: clamp(1.3rem, 2.6vw, 2.25rem); }
[data-testid="stMetricLabel"] p { white-space: normal !important; }
[data-testid="stMainBlockContainer"] button[data-testid^="stBaseButton"] p { white-space: normal !important;
  text-overflow: clip !important; }
</style>
"""

PRESENT_CSS = """
<style>
/* Streamlit sets its type in px: enlarge the page body's text, headings, labels and metrics */
[data-testid="stMainBlockContainer"] { max-width: 100%; padding-left: 2rem; padding-right: 2rem; }
[data-testid="stMainBlockContainer"] [data-testid="stMarkdownContainer"] p,
[data-testid="stMainBlockContainer"] [data-testid="stMarkdownContainer"] li { font-size: 22px; line-height: 1.5; }
[data-testid="stMainBlockContainer"] [data-testid="stCaptionContainer"] p { font-size: 18px; }
[data-testid="stMainBlockContainer"] [data-testid="stWidgetLabel"] p,
[data-testid="stMainBlockContainer"] [data-testid="stMetricLabel"] p { font-size: 19px; }
[data-testid="stMainBlockContainer"] [data-testid="stMetricValue"] { font-size: clamp(28px, 3.4vw, 46px); }
[data-testid="stMainBlockContainer"] [data-testid="stMetricValue"] p { font-size: inherit !important; }
[data-testid="stMainBlockContainer"] [data-testid="stTable"] th,
[data-testid="stMainBlockContainer"] [data-testid="stTable"] td { font-size: 20px; }
[data-testid="stMainBlockContainer"] [data-testid="stTable"] :is(th, td):not(:first-child) {
  text-align: right !important; }
/* a long table scrolls in a box of its own (ui.show.table), its header kept in view. A sticky header sticks within
   the nearest box that scrolls, and Streamlit wraps every table in one (for wide tables): let the table's box be it */
/* all of the box in view, at 150% zoom too; no padding above the header, where rows would show as they scroll by */
[class*="st-key-present-scroll"] { max-height: 66vh; padding-top: 0; }
[data-testid="stLayoutWrapper"]:has(> [class*="st-key-present-scroll"]) { height: auto !important; max-height: 66vh; }
[class*="st-key-present-scroll"] [data-testid="stTable"],
[class*="st-key-present-scroll"] [data-testid="stTable"] > div { overflow: visible; }
[class*="st-key-present-scroll"] [data-testid="stTable"] thead th {
  position: sticky; top: 0; z-index: 1; background: #ffffff; }
/* what a widget holds, in type as large as its label's: typed values, a select's choice, a multiselect's chips */
[data-testid="stMainBlockContainer"] :is(input, textarea) { font-size: 19px !important; }
[data-testid="stMainBlockContainer"] [data-baseweb="select"] > div { font-size: 19px; }
[data-testid="stMainBlockContainer"] [data-baseweb="tag"] span { font-size: 17px; }
/* a slider's value above its thumb: not the page text's 22px (it rendered as a paragraph), which sat on the thumb */
[data-testid="stMainBlockContainer"] [data-testid="stSliderThumbValue"] p,
[data-testid="stMainBlockContainer"] [data-testid="stSliderThumbValue"] { font-size: 17px !important; line-height: 1.2; }
[data-testid="stMainBlockContainer"] h1 { font-size: 54px; }
[data-testid="stMainBlockContainer"] h2 { font-size: 38px; }
[data-testid="stMainBlockContainer"] h3 { font-size: 30px; }
</style>
"""


def presenting() -> bool:
    """Whether presentation mode is on: the URL's ?present= wins, else what this session last chose.

    The choice is written back to the URL, so a copied link keeps it and a page switch does not lose it.
    """
    raw = str(st.query_params.get(PRESENT_PARAM, "")).strip().lower()
    if raw in _ON:
        st.session_state["_present"] = True
    elif raw in _OFF:
        st.session_state["_present"] = False
    on = bool(st.session_state.get("_present", False))
    if on and raw not in _ON:
        st.query_params[PRESENT_PARAM] = "1"
    return on


def set_presenting(on: bool) -> None:
    st.session_state["_present"] = bool(on)
    if on:
        st.query_params[PRESENT_PARAM] = "1"
    elif PRESENT_PARAM in st.query_params:
        del st.query_params[PRESENT_PARAM]


def page_style() -> None:
    """studio.py, every run, before the heavy imports: the page's CSS (PAGE_CSS), and larger type with full-width
    content while presenting, so that the first page of a fresh server has its final layout while it waits."""
    st.html(PAGE_CSS + (PRESENT_CSS if presenting() else ""))
