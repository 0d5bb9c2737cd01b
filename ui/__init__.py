"""The app's seam between Streamlit and the engine.

No streamlit (usable from a notebook): ``charts.py`` (Altair builders),
``charts_images.py`` (PIL heatmaps), ``tables.py`` (pandas records),
``formulas.py`` (the formulas of docs/sipp.md as LaTeX with live numbers), ``learn_core.py``
(the Learn page's numbers), ``settings.py``, ``runtime.py`` and ``serve.py``
(starts ``streamlit run`` for the browser test and the benchmark).

Streamlit: ``engine.py`` (cached engine calls shared by sessions),
``sidebar.py`` (the one shared sidebar), ``nav.py`` (st.navigation),
``show.py``, ``explain.py`` and the page bodies ``view_*.py``.
"""
