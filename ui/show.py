"""Streamlit display helpers shared by the pages."""
from __future__ import annotations

import altair as alt
import streamlit as st


def chart(c, where=None) -> None:
    """st.altair_chart at full width, with the element height the builder asked for (ui.charts.core.sized)."""
    where = where if where is not None else st
    meta = getattr(c, "usermeta", alt.Undefined)
    h = meta.get("sipp_height") if isinstance(meta, dict) else None
    where.altair_chart(c, width="stretch", height=int(h) if h else "content")
