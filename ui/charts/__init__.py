"""Chart builders over the engine's records. No streamlit: they work in Jupyter too.

``core`` (the Prune, Sensitivity, Kept edges, Guarantees and Learn charts, and the shared palette and
sizing), ``images`` (large heatmaps as PIL images), ``smoothness`` (the Nonsmoothness page),
``tradeoffs`` (trade-off sweeps, retraining and the speed panel).

    >>> from ui.charts import core as charts                       # doctest: +SKIP
    >>> charts.bound_vs_measured(report)
"""
