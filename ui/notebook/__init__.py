"""The app's views as notebook widgets (ipywidgets; no Streamlit), drawn with the app's chart builders.

    import sipp_core
    sipp_core.explore()                      # lenet300 on mnist5k: move a control, the charts follow
    sipp_core.explore_smoothness(ex)         # SMP of the original and the pruned network
    sipp_core.tradeoffs().frame              # a sweep as a DataFrame (and .chart)

Charts are handed to the front end as the Vega-Lite mimetype (ui.notebook.vega), which JupyterLab and
VS Code draw without the internet; `enable_offline_charts()` does the same for any Altair chart.
"""
from ui.notebook.explorer import Explorer, explore
from ui.notebook.smoothness import SmoothnessExplorer, explore_smoothness
from ui.notebook.tradeoffs import Tradeoffs, tradeoffs
from ui.notebook.vega import enable_offline_charts, show

__all__ = ["Explorer", "explore", "SmoothnessExplorer", "explore_smoothness", "Tradeoffs", "tradeoffs",
           "enable_offline_charts", "show"]
