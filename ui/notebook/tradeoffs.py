"""tradeoffs(): a sweep of keep ratios x methods as a pandas DataFrame and the Trade-offs page's charts.

    t = sipp_core.tradeoffs(methods=["sipp-hybrid", "wt", "snip", "random"], count=6)
    t.frame          # one row per (seed, method, keep ratio): accuracy, agreement, bound, ...
    t.chart          # accuracy after pruning vs keep ratio (Altair)
    t                # displayed: the four charts of the app's Trade-offs page

The sweep is sipp_core.sweep (cached on disk by its settings); the charts are ui.charts.tradeoffs'.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from IPython.display import display

from sipp_core.errors import BadInput
from sipp_core.jobs.sweeps import DEFAULT_COUNT, DEFAULT_RANGE, SweepResult, prune_potential, sweep
from sipp_core.pipeline import Prepared, Report
from ui.charts import tradeoffs as ct
from ui.notebook.vega import show
from ui.settings import DEFAULT_DATASET, DEFAULT_MODEL

LESSON_METHODS = ("sipp-hybrid", "wt", "snip", "random")


@dataclass(frozen=True)
class Tradeoffs:
    """A finished sweep with its frame and charts; `max_drop` (accuracy, 0.01 = one point) sets the potential."""

    result: SweepResult
    frame: pd.DataFrame
    max_drop: float = 0.01

    @property
    def chart(self):
        """Accuracy after pruning against the keep ratio, one line per method."""
        return ct.accuracy_chart(self.frame, max_drop_pts=100 * self.max_drop)

    @property
    def potential(self) -> pd.DataFrame:
        """Per method: the largest pruned share whose accuracy stays within max_drop of the dense network."""
        return prune_potential(self.frame, self.max_drop)

    def charts(self) -> dict:
        """Every chart of the sweep: accuracy, logits error, prune potential and (SiPP only) the bound."""
        out = dict(accuracy=self.chart, error=ct.error_chart(self.frame),
                   potential=ct.potential_chart(self.potential, 100 * self.max_drop))
        bound = ct.bound_chart(self.frame)
        if bound is not None:
            out["bound"] = bound
        return out

    def _ipython_display_(self) -> None:
        for chart in self.charts().values():
            show(chart)


def _source(model, data):
    """(model name or Prepared, data set name or None) for sipp_core.sweep."""
    if hasattr(model, "prepared") and not isinstance(model, Prepared):  # an Explorer or a Report
        model = model.prepared
    if isinstance(model, Prepared):
        if data is not None:
            raise BadInput("tradeoffs() got a prepared network and data", "pass the prepared network alone")
        return model, None
    if model is None or isinstance(model, str):
        return model or DEFAULT_MODEL, data or DEFAULT_DATASET
    raise BadInput(f"tradeoffs() cannot sweep a {type(model).__name__}",
                   "pass a zoo name, a result of sipp_core.prepare / prepare_trained, or an explore() widget")


def tradeoffs(model=None, data=None, *, methods=LESSON_METHODS, ratios=None, ratio_range=DEFAULT_RANGE,
              count: int = DEFAULT_COUNT, seeds=1, max_drop: float = 0.01, **sweep_options) -> Tradeoffs:
    """Sweep keep ratios x methods x seeds on one network (sipp_core.sweep) and return frame and charts.

    Args:
        model, data: a zoo name and data set (defaults lenet300, mnist5k), or a prepared network
            (sipp_core.prepare, an explore() widget or an evaluate_prune report) and no data.
        methods, ratios, ratio_range, count, seeds, sweep_options: as sipp_core.sweep.
        max_drop: the accuracy drop (a fraction: 0.01 is one point) behind the prune potential.
    """
    if isinstance(model, Report):
        model = model.prepared
    name, dataset = _source(model, data)
    if not 0 <= max_drop < 1:
        raise BadInput(f"max_drop = {max_drop!r} is not an accuracy drop", "give a fraction in [0, 1), e.g. 0.01 for one point")
    try:
        result = sweep(name, dataset, methods=methods, ratios=ratios, ratio_range=ratio_range, count=count,
                       seeds=seeds, **sweep_options)
    except BadInput:
        raise
    except ValueError as exc:  # the sweep names the argument; say how to change it here
        raise BadInput(str(exc), "change that argument of tradeoffs() (it takes sipp_core.sweep's)") from exc
    return Tradeoffs(result, result.to_frame(), max_drop)
