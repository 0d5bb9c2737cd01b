"""Filter pruning of a prepared model (zoo or the user's own), measured: accuracy on the test split,
parameters, FLOPs, file size and CPU latency of the original, masked and smaller networks."""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..plan.measure import EndToEnd, end_to_end
from .filters import FilterPruneResult, prune_filters
from .measure import file_bytes, latency_ms

LATENCY_BATCHES = (1, 64)
LATENCY_RUNS = 20


@dataclass(frozen=True, eq=False)
class FilterReport:
    result: FilterPruneResult
    e2e: EndToEnd
    file_bytes: dict  # {"original", "masked", "pruned"}
    latency_ms: dict | None  # {"original": {"batch_1": ms, "batch_64": ms}, "masked": ..., "pruned": ...}
    model_name: str
    dataset: str
    timings_s: dict
    model_epochs: int | None = None  # the zoo checkpoint's training epochs (None for a network brought by its user)

    def to_dict(self) -> dict:
        r = self.result
        d = r.to_dict()
        d.update(model=self.model_name, model_epochs=self.model_epochs, dataset=self.dataset,
                 method=r.settings["method"],
                 sample_size=r.settings["sample_size"], file_bytes=self.file_bytes, latency_ms=self.latency_ms,
                 accuracy_before=self.e2e.accuracy_before, accuracy_after=self.e2e.accuracy_after,
                 agreement=self.e2e.agreement, logits_rel_error=self.e2e.logits_rel_error, timings_s=self.timings_s)
        return d


def measure_latency(networks: dict, x: torch.Tensor, runs: int = LATENCY_RUNS) -> dict:
    """{network: {"batch_B": median ms}} for B in LATENCY_BATCHES, interleaved within each batch size."""
    out = {k: {} for k in networks}
    for b in LATENCY_BATCHES:
        batch = x[:b] if len(x) >= b else x.repeat((b + len(x) - 1) // len(x), *([1] * (x.ndim - 1)))[:b]
        for k, v in latency_ms(networks, batch, runs=runs).items():
            out[k][f"batch_{b}"] = v
    return out


def evaluate_filters(prepared, *, method: str = "pfp", keep_ratio: float | None = None, epsilon: float | None = None,
                     target: str = "params", delta: float = 1e-16, seed: int = 0, latency: bool = True,
                     progress=None) -> FilterReport:
    """prune_filters on a pipeline.Prepared (reusing its edge sensitivities when they were reduced by max
    over patches), then accuracy on the test split, file sizes and, if `latency`, CPU latency."""
    reuse = prepared.sensitivities if prepared.patch_reduction == "max" else None
    result = prune_filters(prepared.model, prepared.s_x, method=method, keep_ratio=keep_ratio, epsilon=epsilon,
                           target=target, delta=delta, seed=seed, labels=prepared.s_y, sensitivities=reuse,
                           progress=progress)
    t0 = time.perf_counter()
    rec = prepared.record
    e2e = end_to_end(prepared.model, result.model, rec.x_test, rec.y_test, before_logits=prepared.test_logits)
    networks = {"original": prepared.model, "masked": result.masked_model, "pruned": result.model}
    sizes = {k: file_bytes(v) for k, v in networks.items()}
    lat = measure_latency(networks, rec.x_test) if latency else None
    timings = dict(sensitivity=prepared.timings_s["sensitivity"], prune=result.timings_s["prune"],
                   evaluate=time.perf_counter() - t0)
    return FilterReport(result, e2e, sizes, lat, prepared.trained.name, rec.name, timings,
                        prepared.trained.epochs or None)
