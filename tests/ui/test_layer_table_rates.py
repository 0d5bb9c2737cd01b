"""The per-layer table shows failure rates as percentages to 3 significant digits: 8 of 300,000 pairs is 0.00267%,
not the 0% (or, projected, 0.00%) that the "percent" format gave."""
from __future__ import annotations

import pandas as pd
from streamlit.testing.v1 import AppTest

from ui import show


def _page():
    import pandas as pd

    from ui.show import layer_table

    layer_table(pd.DataFrame(dict(label=["fc1 · Linear 784→300"], kept=[100], total=[1000], density=[0.1],
                                  failure_rate_s=[0.0], failure_rate=[8 / 300_000])))


def test_a_small_failure_rate_is_shown_to_three_significant_digits():
    at = AppTest.from_function(_page).run()
    assert not at.exception
    shown = at.dataframe[0].value
    assert abs(shown["failure rate held-out"][0] - 100 * 8 / 300_000) < 1e-12 and shown["failure rate on S"][0] == 0
    assert show.number_format("%.3g%%")(100 * 8 / 300_000) == "0.00267%"
    assert show.number_format("%.3g%%")(1.4) == "1.4%" and show.number_format("%.3g%%")(100.0) == "100%"
    assert isinstance(shown, pd.DataFrame)
