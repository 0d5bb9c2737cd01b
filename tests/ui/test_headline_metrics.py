"""The Prune and Bring-your-own pages' headline metrics (ui/results.py): an accuracy change that rounds to 0.0 points
is shown as no change (grey, no arrow), not as a green gain."""
from __future__ import annotations

from streamlit.proto.Metric_pb2 import Metric
from streamlit.testing.v1 import AppTest


def _page(after: float):
    from ui.results import headline_metrics

    headline_metrics(dict(keep_ratio=0.1, kept=10, total=100, params_kept=10, params_total=100, accuracy_before=0.949,
                          accuracy_after=after, test_points=1000, agreement=0.99, logits_rel_error=0.1, has_bound=True,
                          bound_max=0.5, measured_max_heldout=0.1, measured_max_s=0.1, heldout_points=500,
                          method="wt"), detailed=False)


def _accuracy(after: float):
    at = AppTest.from_function(_page, args=(after,)).run()
    assert not at.exception
    return next(m.proto for m in at.metric if m.label == "Accuracy after")


def test_a_change_that_rounds_to_zero_is_no_change():
    same = _accuracy(0.94904)
    assert same.delta == "+0.0 pts" and same.color == Metric.GRAY and same.direction == Metric.NONE
    lost = _accuracy(0.90)
    assert lost.delta == "-4.9 pts" and lost.color == Metric.RED and lost.direction == Metric.DOWN
