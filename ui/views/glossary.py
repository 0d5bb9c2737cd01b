"""Glossary: every symbol and term of the app in plain words (the terms live in ui/glossary.py)."""
from __future__ import annotations

import streamlit as st

from ui import glossary

INTRO = ("Every symbol the pages use, in plain words. The same definitions appear when you hover over the "
         "**?** beside a control. The full derivations are in the project's docs/sipp.md (pruning) and "
         "docs/nonsmoothness.md (nonsmoothness).")


def _matches(t: glossary.Term, q: str) -> bool:
    q = q.strip().lower()
    return not q or q in t.name.lower() or q in t.meaning.lower() or q in t.key.lower()


def render() -> None:
    st.title("Glossary")
    st.markdown(INTRO)
    q = st.text_input("Find a term or a symbol", key="glossary_q", placeholder="e.g. δ, row, SMP")
    shown = 0
    for section, terms in glossary.by_section().items():
        terms = [t for t in terms if _matches(t, q)]
        if not terms:
            continue
        st.subheader(section)
        for t in terms:
            line = f"**{t.name}**: {t.meaning}"
            if t.example:
                line += f"  \n*Example:* {t.example}"
            st.markdown(line)
            shown += 1
    if not shown:
        st.info(f"No term matches “{q}”. Try a symbol (ε, δ, T) or a word (row, bound).", icon=":material/search:")
