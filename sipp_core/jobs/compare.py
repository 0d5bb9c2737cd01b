"""Weights against channels on one scale: SiPP (and other weight methods) beside PFP and the filter baselines,
each point measured in parameters, FLOPs and CPU latency, so both kinds sit on one trade-off chart.

A weight method keeps every layer's shape: its parameters and FLOPs count nonzero weights only (what a sparse
kernel could skip), while its latency is that of the dense kernels that really run. A channel method's
network is physically smaller, so all three are what it costs.
"""
from __future__ import annotations

import warnings

import pandas as pd

from ..options import STRUCTURED_METHODS
from ..plan.measure import end_to_end
from ..plan.pruning import prune
from ..structured.measure import count_params, latency_ms, layer_flops
from ..zoo.layers import prunable_layers

LATENCY_BATCH = 64
LATENCY_RUNS = 20


def _weight_ratio(params_target: float, model) -> float:
    """A weight method's keep ratio over prunable weights that leaves params_target of all parameters."""
    prunable = sum(m.weight.numel() for m in prunable_layers(model).values())
    total = count_params(model, nonzero=False)
    return min(1.0, max(1e-4, (params_target * total - (total - prunable)) / prunable))


def compare(prepared, *, methods=("pfp", "filter-l1", "sipp-hybrid", "wt"), ratios=(0.5, 0.3, 0.1),
            target: str = "params", latency: bool = True, seed: int = 0, progress=None) -> pd.DataFrame:
    """One row per (method, ratio): params, flops and (if `latency`) batch-64 latency, each as measured and as a
    share of the dense network's, and the test accuracy. Channel methods meet `ratio` of `target`; weight
    methods are pruned to the parameter share the channel method reached at the same ratio (or `ratio` when no
    channel method runs), so the two kinds are compared at equal size."""
    dense, rec = prepared.model, prepared.record
    example = rec.x_test[:2]
    base = {"params": count_params(dense, nonzero=False), "flops": sum(layer_flops(dense, example, nonzero=False).values())}
    x = rec.x_test[:LATENCY_BATCH]
    rows = []
    done = 0
    order = sorted(methods, key=lambda m: m not in STRUCTURED_METHODS)  # channel methods first: they set the size
    for ratio in ratios:
        reached = None
        for method in order:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                if method in STRUCTURED_METHODS:
                    r = prune(dense, prepared.s_x, method=method, keep_ratio=ratio, target=target, seed=seed,
                              labels=prepared.s_y, sensitivities=prepared.sensitivities)
                    net, kind = r.model, "channels"
                    reached = reached if reached is not None else count_params(net) / base["params"]
                else:
                    share = reached if reached is not None else ratio
                    r = prune(dense, prepared.s_x, method=method, keep_ratio=_weight_ratio(share, dense), seed=seed,
                              labels=prepared.s_y, sensitivities=prepared.sensitivities)
                    net, kind = r.model, "weights"
            acc = end_to_end(dense, net, rec.x_test, rec.y_test, before_logits=prepared.test_logits).accuracy_after
            row = dict(method=method, kind=kind, ratio=ratio, params=count_params(net),
                       flops=sum(layer_flops(net, example).values()), accuracy=acc)
            row["params_share"] = row["params"] / base["params"]
            row["flops_share"] = row["flops"] / base["flops"]
            if latency:
                lat = latency_ms({"dense": dense, "pruned": net}, x, runs=LATENCY_RUNS)
                row.update(latency_ms=lat["pruned"], dense_latency_ms=lat["dense"], speedup=lat["dense"] / lat["pruned"])
            rows.append(row)
            done += 1
            if progress is not None:
                progress(done / (len(ratios) * len(order)), f"{method} at {ratio:g}: accuracy {acc:.4f}")
    return pd.DataFrame(rows)
