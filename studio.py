"""SiPP Studio's script: the sidebar, the navigation and the chosen page, run for every browser session.

Start the app with `streamlit run app.py` (app.py serves this script and warms it up first); `streamlit run
studio.py` serves it without the warm-up.
"""
import sys

import streamlit as st

from ui import preload
from ui.first_imports import heavy_imports
from ui.nav import build_navigation, run_page
from ui.style import page_style, presenting
from ui.warmup import counted_run, redundant, yield_cpu

yield_cpu()  # a run of the server's warm-up that no one waits for: below the users' runs

with counted_run():  # a user's run is counted: the warm-up leaves the CPU to it (ui/warmup.py)
    # Before the heavy imports: the first page of a fresh server would list the files in pages/ until the
    # navigation is built, and would show a wide sidebar (or, for ?present=1, an open one) until the page's style is.
    st.set_page_config(page_title="SiPP Studio", layout="wide",
                       initial_sidebar_state="collapsed" if presenting() else "auto")
    page_style()
    page = build_navigation()
    # The first run in a fresh server waits for the imports below (torch alone takes over a second on a laptop), or
    # for the server's start-up run that is doing them (ui/warmup.py): a sentence says so instead of a blank page.
    starting = st.empty() if "ui.sidebar" not in sys.modules else None
    with heavy_imports():  # once per process, with the garbage collector kept out of them (a fifth of their time)
        if starting is not None:
            with starting.container():
                st.info("Starting SiPP Studio: loading PyTorch and the default network. This happens once after "
                        "the server starts and takes a few seconds.", icon=":material/hourglass_top:")
                # the browser loads the page's element code meanwhile (ui/preload.py); its chart imports pandas
                hidden = preload.element_code()
            preload.table_code(hidden)  # the table's code loads while torch is imported
        from ui import prefetch
        from ui.runtime import app_icon, configure_torch
        from ui.show import new_run
        from ui.sidebar import render_sidebar, show_link_problems

    if redundant():  # the warm-up's run, and a user's run computes the same page now: leave the CPU to it
        st.stop()

    st.set_page_config(page_icon=app_icon())
    configure_torch()

    new_run()
    show_link_problems(render_sidebar())
    if starting is not None:
        starting.empty()
    prefetch.forget()  # a new run: the neighbours of the page before are no longer worth computing
    run_page(page)
    prefetch.after_page()  # the page is drawn: compute the next slider step's reports while it is read
