"""SiPP Studio: prune a real network with Sensitivity-informed Provable Pruning and see why.

Run:  streamlit run app.py            (add ?present=1 to the URL for a projector)

This file is the server. Every browser session runs studio.py (the sidebar, the navigation and the pages). As the
server starts, it also runs studio.py itself, in the background, on the default settings and the first pages
(ui/warmup.py), so that a page opened a few seconds later finds torch imported and the default network's numbers
and charts ready. SIPP_WARMUP=0 skips that.
"""
import streamlit as st
from starlette.middleware import Middleware

from ui.static_files import StaticFromMemory
from ui.warmup import lifespan

# Streamlit's frontend files from memory: the browser gets them while a fresh server imports torch (ui/static_files.py)
app = st.App("studio.py", lifespan=lifespan, middleware=[Middleware(StaticFromMemory)])
