"""The app's seam between Streamlit and the engine.

No streamlit (usable from a notebook): ``charts/`` (Altair builders and PIL heatmaps), ``tables.py``
(pandas records), ``formulas.py`` (the formulas of docs/sipp.md as LaTeX with live numbers),
``learn_core.py`` (the Learn page's numbers), ``settings.py``, ``runtime.py`` and ``serve.py``
(starts ``streamlit run`` for the browser test and the benchmark).

Streamlit: ``engine.py`` (cached engine calls shared by sessions), ``jobs.py`` (background jobs),
``sidebar.py`` (the one shared sidebar), ``nav.py`` (st.navigation), ``show.py``; the services the
pages share: ``guard.py`` (settings check, sensitivities and report, errors with their fix),
``results.py`` (result displays), ``run_store.py`` (the run history), ``explain.py`` (the formulas
expander); and the page bodies ``views/``.
"""
