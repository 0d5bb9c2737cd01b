"""SiPP Studio's script: the sidebar, the navigation and the chosen page, run for every browser session.

Start the app with `streamlit run app.py` (app.py serves this script and warms it up first); `streamlit run
studio.py` serves it without the warm-up.
"""
import streamlit as st

from ui.runtime import app_icon, configure_torch, freeze_imports
from ui.show import page_style, presenting

st.set_page_config(page_title="SiPP Studio", page_icon=app_icon(), layout="wide",
                   initial_sidebar_state="collapsed" if presenting() else "auto")

from ui.nav import build_navigation, run_page  # noqa: E402
from ui.sidebar import render_sidebar, show_link_problems  # noqa: E402

configure_torch()
freeze_imports()

page = build_navigation()
page_style()
show_link_problems(render_sidebar())
run_page(page)
