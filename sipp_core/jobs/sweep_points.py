"""One point of a sweep (prune a prepared network once, evaluate it): shared by every executor.

The in-process and Ray executors both call :func:`point_row` with the same arguments, so a row does
not depend on where it was computed.
"""
from __future__ import annotations

import math
import time

from ..options import STRUCTURED_METHODS
from ..pipeline import evaluate_prune
from ..plan.measure import end_to_end
from ..plan.pruning import prune
from ..structured.measure import count_params, latency_ms, layer_flops

ROW_FIELDS = (
    "method", "seed", "keep_ratio_requested", "keep_ratio", "kept", "total", "accuracy_before", "accuracy_after",
    "accuracy_drop", "agreement", "logits_rel_error", "bound_max", "measured_max_heldout", "failure_rate_heldout",
    "params_share", "flops_share", "latency_ms", "dense_latency_ms", "time_s", "error",
)

# What a row reports about the pruned network; the rest (times) describes the run and the machine, not the result.
RESULT_FIELDS = tuple(f for f in ROW_FIELDS if f not in ("time_s", "latency_ms", "dense_latency_ms"))
LATENCY_BATCH, LATENCY_RUNS = 64, 10


def cost_fields(prepared, net, measure_latency: bool) -> dict:
    """Nonzero parameters and multiply-accumulates as shares of the dense network's, and (when asked) the
    median batch-64 CPU latency of the pruned and the dense network, interleaved."""
    dense, example = prepared.model, prepared.record.x_test[:2]
    out = dict(params_share=count_params(net) / count_params(dense, nonzero=False),
               flops_share=sum(layer_flops(net, example).values()) / sum(layer_flops(dense, example, nonzero=False).values()),
               latency_ms=float("nan"), dense_latency_ms=float("nan"))
    if measure_latency:
        lat = latency_ms({"dense": dense, "pruned": net}, prepared.record.x_test[:LATENCY_BATCH], runs=LATENCY_RUNS)
        out.update(latency_ms=lat["pruned"], dense_latency_ms=lat["dense"])
    return out


def _channels_point(prepared, method, ratio, seed, delta, measure_latency, t0) -> dict:
    """A channel method's row: the keep ratio is of parameters, kept / total count parameters, no bound."""
    result = prune(prepared.model, prepared.s_x, method=method, keep_ratio=ratio, delta=delta, seed=seed,
                   sensitivities=prepared.sensitivities, patch_reduction=prepared.patch_reduction, labels=prepared.s_y)
    rec = prepared.record
    e2e = end_to_end(prepared.model, result.model, rec.x_test, rec.y_test, before_logits=prepared.test_logits)
    nan = float("nan")
    return dict(
        method=method, seed=seed, keep_ratio_requested=ratio, keep_ratio=float(result.keep_ratio),
        kept=int(result.params["pruned"]), total=int(result.params["original"]), accuracy_before=e2e.accuracy_before,
        accuracy_after=e2e.accuracy_after, accuracy_drop=e2e.accuracy_before - e2e.accuracy_after,
        agreement=e2e.agreement, logits_rel_error=e2e.logits_rel_error, bound_max=nan, measured_max_heldout=nan,
        failure_rate_heldout=nan, **cost_fields(prepared, result.model, measure_latency),
        time_s=time.perf_counter() - t0, error=None,
    )


def nan_row(method, seed, ratio, error=None, **extra) -> dict:
    row = {k: float("nan") for k in ROW_FIELDS}
    row.update(method=method, seed=seed, keep_ratio_requested=ratio, kept=None, total=None, error=error)
    row.update(extra)
    return row


def point(prepared, method, ratio, seed, delta, allocation, measure_errors, measure_latency=False) -> dict:
    """Prune once with cached sensitivities and evaluate: one sweep row."""
    t0 = time.perf_counter()
    if method in STRUCTURED_METHODS:
        return _channels_point(prepared, method, ratio, seed, delta, measure_latency, t0)
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
        failure_rate_heldout=failure, **cost_fields(prepared, result.model, measure_latency),
        time_s=time.perf_counter() - t0, error=None,
    )


def point_row(prepared, method, ratio, seed, delta, allocation, measure_errors, measure_latency=False) -> dict:
    """point(), with a point whose pruning raises ValueError kept as a row with `error` set."""
    try:
        return point(prepared, method, ratio, seed, delta, allocation, measure_errors, measure_latency)
    except ValueError as exc:
        return nan_row(method, seed, ratio, error=str(exc))


def point_message(row: dict) -> str:
    if row["error"] is None:
        return (f"seed {row['seed']}: {row['method']} at keep ratio {row['keep_ratio_requested']:g} -> accuracy "
                f"{row['accuracy_after']:.4f}")
    return f"{row['method']} {row['keep_ratio_requested']:g}: failed"
