"""The Learn page: step 1 draws the point it promises (the red diamond), point indices are whole numbers, and
methods without a bound leave their cells empty as the caption says."""
from __future__ import annotations

import json

from pagetest import new_app, ok, page_folders  # noqa: F401 - the module's fixtures


def _specs(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]


def _marks(d, found=None) -> list[dict]:
    found = [] if found is None else found
    if isinstance(d, dict):
        if isinstance(d.get("mark"), dict):
            found.append(d["mark"])
        for v in d.values():
            _marks(v, found)
    elif isinstance(d, list):
        for v in d:
            _marks(v, found)
    return found


def test_learn_page_diamond_ticks_and_empty_cells():
    at = new_app().run()
    at.switch_page("pages/learn.py").run()
    ok(at)
    steps = at.segmented_control(key="learn_step").options
    data = next(s for s in _specs(at) if "points of S" in json.dumps(s.get("title", "")))
    assert any(m.get("shape") == "diamond" for m in _marks(data)), "step 1 promises a red-orange diamond"
    assert any("The red-orange diamond is point 0 of S" in c.value for c in at.caption)
    at.segmented_control(key="learn_step").set_value(steps[4]).run()  # s = max over S: g over the points of S
    ok(at)
    profile = next(s for s in _specs(at) if "every point of S" in json.dumps(s.get("title", "")))
    axis = json.dumps(profile)
    assert '"tickMinStep": 1' in axis and '"format": "d"' in axis
    at.segmented_control(key="learn_step").set_value(steps[7]).run()
    ok(at)
    table = next(d.value for d in at.dataframe if "largest bound" in d.value.columns).set_index("method")
    assert table.loc["wt", "largest bound"] == "" and table.loc["wt", "failure rate held-out"] == ""
    assert float(table.loc["sipp-hybrid", "largest bound"]) >= 0


def test_a_mask_reads_unit_by_unit():
    import numpy as np

    from ui.views.learn import mask_text

    assert mask_text(np.array([[0, 0, 1, 1], [1, 0, 0, 0]])) == "unit 0: 0 0 1 1 · unit 1: 1 0 0 0"
