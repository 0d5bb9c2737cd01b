"""Chart builders over the engine's records. No streamlit: they work in Jupyter too.

``core`` (the shared palette, type sizes, titles, axes and PNG/SVG export; what of it needs no Altair is in
``base``), ``figure`` (a chart as a template built once per shape plus its data; ``compiled``: the default page's
templates compiled ahead, so that a fresh server's first page never imports Altair), then one module per subject:
``layers`` (per-layer kept share, bound beside measured error; their templates in ``layer_templates``),
``sensitivity``, ``kept_edges``, ``guarantees``, ``learn`` (the walkthrough's network and data), ``smoothness``
(the Nonsmoothness page), ``tradeoffs`` (sweeps, retraining and the speed panel), ``filters``, ``history``,
``images`` (large heatmaps as PIL images).

    >>> from ui.charts import layers                                 # doctest: +SKIP
    >>> layers.bound_vs_measured(report)
"""
