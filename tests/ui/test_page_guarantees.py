"""The Guarantees page says where the bound did not hold, row by row, and draws the rows that broke it.

The case is LeNet-5's at 20% kept: fc3's rows keep every weight with a share of the signal on S, so their bound is
0, and held-out digits reach inputs that were zero on all of S. Built here as tables, not by pruning LeNet-5.
"""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from pagetest import app, ok, page_folders, prepared  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sipp_core.errors import BadInput  # noqa: E402
from ui import tables  # noqa: E402
from ui.charts import guarantees as guarantee_charts  # noqa: E402
from ui.views import guarantees as page  # noqa: E402


@pytest.fixture(scope="module")
def report(prepared):
    from sipp_core.pipeline import evaluate_prune

    return evaluate_prune(prepared, method="sipp-hybrid", keep_ratio=0.05)


def test_a_row_with_bound_0_and_an_error_is_drawn_above_the_diagonal(report, monkeypatch):
    rows = pd.DataFrame(dict(unit=[0, 1, 2, 3], sign="+", bound=[0.0, 0.0, 0.5, np.nan],
                             measured=[0.008, 0.0, 0.1, 0.2], method=["kept all with s > 0"] * 2 + ["sampled"] * 2,
                             kept=[60, 60, 30, 30]))
    monkeypatch.setattr(tables, "row_scatter_frame", lambda *a, **k: rows)
    fig = guarantee_charts.row_figure(report, tables.layer_names(report)[0])
    drawn = fig.data["rows"]
    assert list(drawn["unit"]) == [0, 2]  # bound 0 with no error, and no bound at all: not drawn
    floor = drawn["bound_shown"].iloc[0]
    assert 0 < floor < 0.008 and drawn["shown"].iloc[0] == 0.008  # at the floor, above y = x
    assert fig.data["counts"]["above"][0] == "above y = x: 1 of 2"
    assert fig.data["counts"]["whole"][0] == "not drawn: 1"


def test_the_layers_that_broke_their_bound_are_named_with_counts_on_s_beside(monkeypatch):
    frame = pd.DataFrame(dict(layer=["fc2", "fc2", "fc3", "fc3"], points=["on S", "held-out"] * 2,
                              failure_rate=[0.0, 0.0, 0.0, 0.014], pairs=[3380, 10000, 3380, 10000],
                              failures=[0, 0, 0, 140]))
    monkeypatch.setattr(tables, "failure_frame", lambda report: frame)
    assert page.failed_layers(None) == [dict(layer="fc3", held_failures=140, held_pairs=10000, s_failures=0,
                                             s_pairs=3380)]


def test_the_row_chart_opens_on_a_layer_that_broke_its_bound_else_one_with_a_bound():
    def fake(rates, bounds):
        plans = {n: SimpleNamespace(bound_max=b) for n, b in bounds.items()}
        return SimpleNamespace(errors_heldout={n: SimpleNamespace(failure_rate=r) for n, r in rates.items()},
                               result=SimpleNamespace(plans=plans))

    names = ["conv1", "conv2", "fc1", "fc3"]
    bounds = {"conv1": 0.0, "conv2": 0.0, "fc1": 15.8, "fc3": 0.0}
    assert page.first_layer_to_show(fake(dict.fromkeys(names, 0.0) | {"fc3": 0.014}, bounds), names) == 3
    assert page.first_layer_to_show(fake(dict.fromkeys(names, 0.0), bounds), names) == 2  # conv1 is kept whole
    assert page.first_layer_to_show(fake(dict.fromkeys(names, float("nan")), dict.fromkeys(names, float("nan"))),
                                    names) == 0


def test_the_eps_values_of_the_sweep_are_typed_and_checked():
    assert page.parse_eps_list("2, 0.5,0.5, 10") == (0.5, 2.0, 10.0)
    for bad, problem in [("0.5, abc", "'abc' is not a number"), ("0, 1", "ε must be a positive number; got 0"),
                         ("1, inf", "got inf"), ("-1", "got -1"), (" , ", "no value of ε given"),
                         (",".join(str(i) for i in range(1, 14)), "at most 12 values of ε")]:
        with pytest.raises(BadInput) as err:
            page.parse_eps_list(bad)
        assert problem in err.value.problem and err.value.fix, bad


def test_the_sweep_runs_at_the_typed_eps_and_says_so(app):  # noqa: F811 - the pagetest fixture
    at = app
    at.switch_page("pages/guarantees.py").run()
    ok(at)
    at.text_input(key="sweep_eps").set_value("0.5, 2").run()
    ok(at)
    verdicts = [v.value for v in at.success if v.value.startswith("**Verdict**")]
    assert any("From ε = 0.5 to ε = 2 the kept share falls" in v for v in verdicts), verdicts
    at.text_input(key="sweep_eps").set_value("0.5, abc").run()
    errors = [e.value for e in at.error]
    assert any(e.startswith("'abc' is not a number. Fix: type positive numbers separated by commas") for e in errors)
    assert not any("From ε = 0.5 to ε = 2" in v.value for v in at.success)  # no sweep drawn for a bad list
