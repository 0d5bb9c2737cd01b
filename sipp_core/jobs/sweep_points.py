"""One point of a sweep (prune a prepared network once, evaluate it): shared by every executor.

The in-process and Ray executors both call :func:`point_row` with the same arguments, so a row does
not depend on where it was computed.
"""
from __future__ import annotations

import math
import time

from ..pipeline import evaluate_prune
from ..plan.measure import end_to_end
from ..plan.pruning import prune

ROW_FIELDS = (
    "method", "seed", "keep_ratio_requested", "keep_ratio", "kept", "total", "accuracy_before", "accuracy_after",
    "accuracy_drop", "agreement", "logits_rel_error", "bound_max", "measured_max_heldout", "failure_rate_heldout",
    "time_s", "error",
)

# What a row reports about the pruned network; the rest (time_s) describes the run, not the result.
RESULT_FIELDS = tuple(f for f in ROW_FIELDS if f != "time_s")


def nan_row(method, seed, ratio, error=None, **extra) -> dict:
    row = {k: float("nan") for k in ROW_FIELDS}
    row.update(method=method, seed=seed, keep_ratio_requested=ratio, kept=None, total=None, error=error)
    row.update(extra)
    return row


def point(prepared, method, ratio, seed, delta, allocation, measure_errors) -> dict:
    """Prune once with cached sensitivities and evaluate: one sweep row."""
    t0 = time.perf_counter()
    if measure_errors:
        rep = evaluate_prune(prepared, method=method, keep_ratio=ratio, delta=delta, seed=seed, allocation=allocation)
        result, e2e = rep.result, rep.end_to_end
        held = [v for v in rep.errors_heldout.values()]
        measured = max((e.max for e in held), default=float("nan"))
        fails = [e.failure_rate for e in held if not math.isnan(e.failure_rate)]
        failure = max(fails) if fails else float("nan")
    else:
        result = prune(prepared.model, prepared.s_x, method=method, keep_ratio=ratio, delta=delta, seed=seed,
                       sensitivities=prepared.sensitivities, patch_reduction=prepared.patch_reduction,
                       labels=prepared.s_y, allocation=allocation)
        rec = prepared.record
        e2e = end_to_end(prepared.model, result.model, rec.x_test, rec.y_test, before_logits=prepared.test_logits)
        measured = failure = float("nan")
    bounds = [l.bound for l in result.layers if not math.isnan(l.bound)]
    return dict(
        method=method, seed=seed, keep_ratio_requested=ratio, keep_ratio=float(result.keep_ratio),
        kept=int(result.kept), total=int(result.total), accuracy_before=e2e.accuracy_before,
        accuracy_after=e2e.accuracy_after, accuracy_drop=e2e.accuracy_before - e2e.accuracy_after,
        agreement=e2e.agreement, logits_rel_error=e2e.logits_rel_error,
        bound_max=max(bounds) if bounds else float("nan"), measured_max_heldout=measured,
        failure_rate_heldout=failure, time_s=time.perf_counter() - t0, error=None,
    )


def point_row(prepared, method, ratio, seed, delta, allocation, measure_errors) -> dict:
    """point(), with a point whose pruning raises ValueError kept as a row with `error` set."""
    try:
        return point(prepared, method, ratio, seed, delta, allocation, measure_errors)
    except ValueError as exc:
        return nan_row(method, seed, ratio, error=str(exc))


def point_message(row: dict) -> str:
    if row["error"] is None:
        return (f"seed {row['seed']}: {row['method']} at keep ratio {row['keep_ratio_requested']:g} -> accuracy "
                f"{row['accuracy_after']:.4f}")
    return f"{row['method']} {row['keep_ratio_requested']:g}: failed"
