"""Chart builders over the engine's records. No streamlit: they work in Jupyter too.

``core`` (the shared palette, type sizes, titles, axes and PNG/SVG export), then one module per subject:
``layers`` (per-layer kept share, bound beside measured error), ``sensitivity``, ``kept_edges``, ``guarantees``,
``learn`` (the walkthrough's network and data), ``smoothness`` (the Nonsmoothness page), ``tradeoffs`` (sweeps,
retraining and the speed panel), ``filters``, ``history``, ``images`` (large heatmaps as PIL images).

    >>> from ui.charts import layers                                 # doctest: +SKIP
    >>> layers.bound_vs_measured(report)
"""
