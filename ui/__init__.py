"""The app's seam between Streamlit and the engine.

No streamlit (usable from a notebook): ``charts/`` (Altair builders and PIL heatmaps), ``tables.py``
(pandas records), ``formulas.py`` (the formulas of docs/sipp.md as LaTeX with live numbers),
``learn_core.py`` (the Learn page's numbers), ``settings.py``, ``runtime.py`` and ``serve.py``
(starts ``streamlit run`` for the browser test and the benchmark).

Streamlit: ``engine.py`` (cached engine calls shared by sessions), ``jobs.py`` (background jobs),
``sidebar.py`` (the one shared sidebar), ``nav.py`` (st.navigation), ``show.py``; the services the
pages share: ``guard.py`` (settings check, sensitivities and report, errors with their fix),
``results.py`` (the verdict callout and a prune's headline), ``sweep_results.py`` (a sweep's and a retraining
run's displays), ``run_store.py`` (the run history), ``explain.py`` (the formulas
expander); the page bodies ``views/``; and ``compile_templates.py`` (`make run`'s step that compiles the default
page's chart templates, running that page once).
"""
import sys

# Before altair (and so jsonschema) is first imported, by the app or a notebook: jsonschema's format checker imports
# rfc3987_syntax when it is installed (the Jupyter extras bring it), and that compiles 38 grammars at import: 8 s of
# altair's 10.7 s import on a 2-core machine at load 10, paid by the first page of a fresh server. It only checks the
# "iri" formats, which the Vega-Lite schema never uses, so chart validation is unchanged without it.
sys.modules.setdefault("rfc3987_syntax", None)
