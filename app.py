"""SiPP Studio: prune a real network with Sensitivity-informed Provable Pruning and see why.

Run:  streamlit run app.py            (add ?present=1 to the URL for a projector)

This file is the server. Every browser session runs studio.py (the sidebar, the navigation and the pages); before
the first one, the server runs it once itself on the default settings (ui/warmup.py), so that the first page
opened finds torch imported and the default network's numbers and charts ready. SIPP_WARMUP=0 skips that.
"""
import streamlit as st

from ui.warmup import lifespan

app = st.App("studio.py", lifespan=lifespan)
