"""Nonsmoothness of a network along straight input paths (docs/nonsmoothness.md).

    paths = make_paths(x_test, y_test, count=32, points=1024, seed=0)
    rec = nonsmoothness(model, paths)          # one batched sweep
    rec.smp.mean(), rec.layer_rows()           # output SMP, per-layer table
    before, after = compare(model, pruned, paths)

"SMP as computed here" (docs/nonsmoothness.md; smoothness.peaks holds the
formula and its two numerical guards): along
x(t) = x_a + t (x_b - x_a) sampled at N points, the peaks of the absolute
second difference of a signal, summed over +-1 windows, divided by
h * ||x_b - x_a||. It tends to the total jump of the directional derivative
per unit input distance; 0 for a smooth network.

Measures, per path and per measured layer (see smoothness.sweep for what is
hooked and what is not):
- output SMP (sum over logits) and per-logit SMP, with peak positions;
- per-layer mean SMP over at most ``max_units`` seeded units;
- per stage: mean S at its input and output and the propagation rule's
  prediction (docs/nonsmoothness.md §3; a "block" is a Linear/Conv and the ReLU /
  max-pool stages that follow it up to the next Linear/Conv);
- linear-region transitions (steps where any ReLU sign bit or max-pool argmax
  changes), flipped ReLU units, argmax switches, per layer and in total;
- trajectory length per layer, sum_i ||h(t_i+1) - h(t_i)||_2 / ||x_b - x_a||;
- Frobenius norm of the input-output Jacobian at a few paths' anchors.

A Linear/Conv fed directly by the model input is affine in t along a
straight path, so its SMP is 0 exactly; it is reported as 0, not measured.

Cost: one forward pass per point (P x N in all, batched in chunks) plus, per
sampled unit and path, a few passes and two medians over N values: roughly
proportional to P x N x (sum over layers of sampled units). lenet300 (820
units) at 32 x 1024 takes about a second; conv nets at max_units=4096 take
tens of seconds on 2 cores - lower max_units, P or N for an interactive page.

Files: smoothness.paths (Paths, make_paths), smoothness.peaks (smp and the
peak finder), smoothness.sweep (hooks and chunking), smoothness.rules
(propagation rules), this module (records and the public entry points).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from .paths import PATH_KINDS, Paths, make_paths, segment_paths
from .peaks import SMPResult, find_peaks, second_difference, signal_peaks, smp
from .sweep import Sweeper, unmeasured_modules

__all__ = [
    "smp", "SMPResult", "find_peaks", "second_difference", "signal_peaks",
    "Paths", "make_paths", "segment_paths", "PATH_KINDS",
    "LayerSmoothness", "Nonsmoothness", "nonsmoothness", "compare", "Comparison", "jacobian_norms",
]

RULES = {
    "linear": "S(y) <= sum_k |w_k| S(x_k) (mean over units: sum_k c_k S(x_k))",
    "conv2d": "S(y) <= sum_k |w_k| S(x_k) (mean over units: sum_k c_k S(x_k))",
    "relu": "kinks of x where x > 0, plus |x'(t_c)| at each zero crossing",
    "maxpool2d": "kinks of the current argmax, plus |x_i' - x_j'| at each argmax switch",
}
FLOAT64_ABOVE = 4096  # float32 suffices up to N = 4096 (docs/nonsmoothness.md §2)


@dataclass(frozen=True, eq=False)
class LayerSmoothness:
    """One measured stage. Tensors are (P,) per path, float64 (counts as int64).

    smp: mean SMP over the sampled output units. smp_in: the same at the stage's
    input (0 for the model input, which is linear in t). smp_predicted: the
    propagation rule applied to the measured input (RULES[kind]).
    flips: ReLU units changing sign (relu) or pooled outputs changing argmax
    (maxpool2d), summed over units and steps (0 for linear/conv2d); flip_steps:
    steps where at least one unit of this layer flips. live_units: linear/conv2d:
    units with a nonzero incoming weight row; relu: units whose pre-activation
    varies anywhere on the paths; maxpool2d: outputs that vary - a removed unit
    is not live, so flips_per_live_unit compares fairly before and after pruning.
    """

    name: str
    kind: str
    block: str
    units: int
    sampled_units: int
    live_units: int
    input_from: str  # "input", a measured layer's name, or "(unmeasured)": e.g. after BatchNorm / a residual add
    smp: torch.Tensor
    smp_in: torch.Tensor
    smp_predicted: torch.Tensor
    flips: torch.Tensor
    flip_steps: torch.Tensor
    trajectory: torch.Tensor

    @property
    def rule(self) -> str:
        return RULES[self.kind]

    @property
    def flips_per_live_unit(self) -> torch.Tensor:
        return self.flips.double() / max(self.live_units, 1)

    def row(self) -> dict:
        """Means over paths as plain Python values."""
        mean = lambda t: float(t.double().nanmean())  # noqa: E731
        return {
            "layer": self.name, "kind": self.kind, "block": self.block, "units": self.units,
            "sampled_units": self.sampled_units, "live_units": self.live_units, "input_from": self.input_from,
            "smp": mean(self.smp), "smp_in": mean(self.smp_in), "smp_predicted": mean(self.smp_predicted),
            "flips": mean(self.flips), "flips_per_live_unit": mean(self.flips_per_live_unit),
            "flip_steps": mean(self.flip_steps), "trajectory": mean(self.trajectory), "rule": self.rule,
        }


@dataclass(frozen=True, eq=False)
class Nonsmoothness:
    """All measures of one model on one set of Paths; (P,) tensors are per path."""

    paths: Paths
    dtype: str
    smp: torch.Tensor  # (P,) output SMP: sum over logits
    logit_smp: torch.Tensor  # (P, C)
    output_peaks: tuple[tuple[int, ...], ...]  # per path: point indices i where some logit peaks (t = i * h)
    logits: torch.Tensor  # (P, N, C) float32, the signals themselves (for drawing)
    region_transitions: torch.Tensor  # (P,) steps where any ReLU sign or max-pool argmax changes
    flipped_units: torch.Tensor  # (P,) ReLU sign flips, all ReLU layers
    argmax_switches: torch.Tensor  # (P,) max-pool argmax switches, all pooling layers
    output_trajectory: torch.Tensor  # (P,)
    jacobian_norm: torch.Tensor  # (P,) Frobenius norm of d logits / d x at anchors; NaN where not evaluated
    layers: tuple[LayerSmoothness, ...]
    unmeasured: tuple[tuple[str, str], ...]
    settings: dict = field(default_factory=dict)
    timings_s: dict = field(default_factory=dict)

    @property
    def measured(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)

    def layer(self, name: str) -> LayerSmoothness:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no measured layer {name!r}; measured: {', '.join(self.measured)}")

    def layer_rows(self) -> list[dict]:
        """One plain dict per measured layer (means over paths), in forward order."""
        return [layer.row() for layer in self.layers]

    def path_rows(self) -> list[dict]:
        """One plain dict per path."""
        p = self.paths
        lengths, rel, var = p.lengths, self.relative_smp, self.logit_variation
        return [{
            "path": i, "kind": p.kinds[i], "label_a": int(p.labels_a[i]), "label_b": int(p.labels_b[i]),
            "length": float(lengths[i]), "smp": float(self.smp[i]), "relative_smp": float(rel[i]),
            "logit_variation": float(var[i]),
            "region_transitions": int(self.region_transitions[i]), "flipped_units": int(self.flipped_units[i]),
            "argmax_switches": int(self.argmax_switches[i]), "output_trajectory": float(self.output_trajectory[i]),
            "jacobian_norm": float(self.jacobian_norm[i]), "peaks": len(self.output_peaks[i]),
        } for i in range(p.count)]

    def layer_path_rows(self) -> list[dict]:
        """Long format, one dict per (layer, path): for charts of distributions over paths."""
        rows = []
        for layer in self.layers:
            for i in range(self.paths.count):
                rows.append({
                    "layer": layer.name, "kind": layer.kind, "block": layer.block, "path": i,
                    "path_kind": self.paths.kinds[i], "smp": float(layer.smp[i]), "smp_in": float(layer.smp_in[i]),
                    "smp_predicted": float(layer.smp_predicted[i]), "flips": int(layer.flips[i]),
                    "flip_steps": int(layer.flip_steps[i]), "trajectory": float(layer.trajectory[i]),
                })
        return rows

    def propagation_rows(self) -> list[dict]:
        """Per stage: measured S in, measured S out, predicted S out (docs/nonsmoothness.md §3); units too, which
        a stage's label names (the same label as in layer_rows, so that charts find each stage in their order)."""
        return [{k: r[k] for k in ("block", "layer", "kind", "units", "smp_in", "smp", "smp_predicted", "rule")}
                for r in self.layer_rows()]

    @property
    def logit_variation(self) -> torch.Tensor:
        """(P,) total variation of the logits along each path, sum over logits of sum_i |y_(i+1) - y_i|,
        divided by ||x_b - x_a||: the mean absolute slope per unit of input distance, in SMP's units
        (docs/nonsmoothness.md §2.1)."""
        y = self.logits.double()
        return (y[:, 1:] - y[:, :-1]).abs().sum(dim=(1, 2)) / self.paths.lengths.double().clamp(min=1e-300)

    @property
    def relative_smp(self) -> torch.Tensor:
        """(P,) scale-free SMP: SMP / logit_variation, the total slope jump relative to the mean absolute slope.
        Multiplying every logit by c > 0 leaves it unchanged; NaN where the logits do not vary
        (docs/nonsmoothness.md §2.1)."""
        v = self.logit_variation
        return torch.where(v > 0, self.smp.double() / v.clamp(min=1e-300), torch.full_like(v, float("nan")))

    def summary(self) -> dict:
        mean = lambda t: float(t.double().nanmean())  # noqa: E731
        return {
            "smp": mean(self.smp), "relative_smp": mean(self.relative_smp), "logit_variation": mean(self.logit_variation),
            "region_transitions": mean(self.region_transitions),
            "flipped_units": mean(self.flipped_units), "argmax_switches": mean(self.argmax_switches),
            "output_trajectory": mean(self.output_trajectory), "jacobian_norm": mean(self.jacobian_norm),
            "paths": self.paths.count, "points": self.paths.points, "dtype": self.dtype,
        }

    def to_frame(self, level: str = "layer"):
        """pandas DataFrame of layer_rows() ("layer"), path_rows() ("path") or layer_path_rows() ("layer-path")."""
        rows = {"layer": self.layer_rows, "path": self.path_rows, "layer-path": self.layer_path_rows}
        if level not in rows:
            raise ValueError(f"level must be one of {', '.join(rows)}; got {level!r}")
        import pandas as pd  # optional dependency, only for this convenience

        return pd.DataFrame(rows[level]())

    def to_dict(self) -> dict:
        """JSON-ready summary, layer table and path table (no signals)."""
        return {"summary": self.summary(), "layers": self.layer_rows(), "paths": self.path_rows(),
                "unmeasured": [list(u) for u in self.unmeasured], "settings": dict(self.settings),
                "timings_s": dict(self.timings_s)}


def jacobian_norms(model: nn.Module, x: torch.Tensor, *, rows_per_pass: int = 64) -> torch.Tensor:
    """Frobenius norm of d model(x) / d x at each point x[k] (K, *input_shape) -> (K,) float64.

    One forward/backward per block of output rows: the point is repeated and
    row j of the batch back-propagates output j only (no batch interaction in eval mode).
    """
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else x.dtype
    out = torch.zeros(x.shape[0], dtype=torch.float64)
    with torch.enable_grad():
        for k in range(x.shape[0]):
            c = None
            total, j0 = 0.0, 0
            while c is None or j0 < c:
                r = rows_per_pass if c is None else min(rows_per_pass, c - j0)
                xb = x[k : k + 1].to(dtype).expand(r, *x.shape[1:]).clone().requires_grad_(True)
                y = model(xb).reshape(r, -1)
                c = y.shape[1] if c is None else c
                r = min(r, c - j0)
                sel = y[torch.arange(r), torch.arange(j0, j0 + r)].sum()
                (g,) = torch.autograd.grad(sel, xb)
                total += float(g[:r].double().pow(2).sum())
                j0 += r
            out[k] = math.sqrt(total)
    return out


def nonsmoothness(
    model: nn.Module,
    paths: Paths,
    *,
    max_units: int = 4096,
    dtype: torch.dtype | None = None,
    jacobian_points: int = 8,
    memory_budget: int = 512 * 2**20,
    seed: int | None = None,
    progress=None,
    chunk_points: int | None = None,
    paths_per_group: int | None = None,
    threads: int | None = None,
) -> Nonsmoothness:
    """Every nonsmoothness measure of `model` along `paths`, from one batched sweep.

    Args:
        model: a torch module mapping (B, *input_shape) to (B, C) logits. Never
            mutated: the sweep runs on a private eval-mode copy.
        paths: from make_paths (or segment_paths); the same Paths for every model compared.
        max_units: per-layer unit sample for mean SMP and propagation (seeded; same
            units for models of the same architecture).
        dtype: compute dtype; default float32 for N <= 4096 points, float64 above (docs/nonsmoothness.md).
        jacobian_points: Jacobian norms at the anchors of this many paths, evenly spread (0: none).
        memory_budget: bytes for stored unit signals plus chunk activations (approximate).
        seed: unit-subsampling seed (default paths.seed).
        progress: optional callback progress(fraction, message).
        chunk_points, paths_per_group: override the chunking chosen from memory_budget
            (points owned per forward chunk; paths whose unit signals are held at once).
            Results do not depend on them.
        threads: torch intra-op threads during the call (process-wide; restored after).
            None keeps torch's setting. On a busy machine 1 can be several times faster:
            the sweep runs many medium-sized ops, and each waits for every thread.
    Returns:
        Nonsmoothness record.
    Raises:
        TypeError: paths is not a Paths, or the model's output is not one logits tensor.
        ValueError: bad max_units / jacobian_points / memory_budget, or input shape mismatch.
    """
    if not isinstance(paths, Paths):
        raise TypeError(f"paths must be a Paths from make_paths(), got {type(paths).__name__}")
    if not isinstance(max_units, int) or max_units < 1:
        raise ValueError(f"max_units must be a positive integer, got {max_units!r}")
    if not isinstance(jacobian_points, int) or jacobian_points < 0:
        raise ValueError(f"jacobian_points must be a nonnegative integer, got {jacobian_points!r}")
    if memory_budget < 2**20:
        raise ValueError(f"memory_budget must be at least 1 MiB, got {memory_budget!r}")
    for key, val in (("chunk_points", chunk_points), ("paths_per_group", paths_per_group), ("threads", threads)):
        if val is not None and (not isinstance(val, int) or val < 1):
            raise ValueError(f"{key} must be a positive integer or None, got {val!r}")
    if dtype is None:
        dtype = torch.float32 if paths.points <= FLOAT64_ABOVE else torch.float64
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _nonsmoothness(model, paths, max_units=max_units, dtype=dtype, jacobian_points=jacobian_points,
                              memory_budget=memory_budget, seed=paths.seed if seed is None else seed,
                              progress=progress, chunk_points=chunk_points, paths_per_group=paths_per_group)
    finally:
        if threads:
            torch.set_num_threads(before)


def _nonsmoothness(model, paths, *, max_units, dtype, jacobian_points, memory_budget, seed, progress,
                   chunk_points, paths_per_group) -> Nonsmoothness:
    t0 = time.perf_counter()
    sw = Sweeper(model, paths, dtype=dtype, max_units=max_units, memory_budget=int(memory_budget),
                 seed=seed, progress=progress, chunk_points=chunk_points,
                 paths_per_group=paths_per_group).run()
    t1 = time.perf_counter()
    p = paths.count
    jac = torch.full((p,), float("nan"), dtype=torch.float64)
    if jacobian_points:
        at = torch.linspace(0, p - 1, min(jacobian_points, p)).round().long().unique()
        jac[at] = jacobian_norms(sw.model, paths.anchor[at].to(dtype=dtype, device=sw.device))
    t2 = time.perf_counter()
    if progress is not None:
        progress(1.0, "done")
    zeros = lambda: torch.zeros(p, dtype=torch.float64)  # noqa: E731
    layers = []
    for site in sw.sites.values():
        if site.kind == "output":
            continue
        count = lambda key: site.acc.get(key, zeros()).round().long()  # noqa: E731
        layers.append(LayerSmoothness(
            name=site.name, kind=site.kind, block=site.block, units=site.units,
            sampled_units=len(site.index), live_units=site.live_units,
            input_from=site.in_link or "(unmeasured)",
            smp=sw.results[f"{site.name}|smp"], smp_in=sw.results[f"{site.name}|smp_in"],
            smp_predicted=sw.results[f"{site.name}|smp_pred"], flips=count("flips"),
            flip_steps=count("flip_steps"), trajectory=site.acc.get("trajectory", zeros()),
        ))
    flips = lambda kind: sum((l.flips for l in layers if l.kind == kind), torch.zeros(p, dtype=torch.long))  # noqa: E731,E741
    out = sw.sites["output"]
    return Nonsmoothness(
        paths=paths, dtype=str(dtype).replace("torch.", ""), smp=sw.logit_smp.sum(1), logit_smp=sw.logit_smp,
        output_peaks=tuple(sw.output_peaks), logits=sw.logits, region_transitions=sw.region.clone(),
        flipped_units=flips("relu"), argmax_switches=flips("maxpool2d"),
        output_trajectory=out.acc.get("trajectory", zeros()), jacobian_norm=jac, layers=tuple(layers),
        unmeasured=tuple(unmeasured_modules(model)),
        settings={"max_units": max_units, "seed": seed, "jacobian": "frobenius", "threads": torch.get_num_threads(),
                  "memory_budget": int(memory_budget), **sw.plan},
        timings_s={"sweep": t1 - t0, **{f"sweep_{k}": v for k, v in sw.timings.items()}, "jacobian": t2 - t1},
    )


class Comparison(NamedTuple):
    """Two records of the same Paths: original and pruned."""

    original: Nonsmoothness
    pruned: Nonsmoothness

    def layer_rows(self) -> list[dict]:
        """layer_rows() of both, each with a "model" field ("original" / "pruned")."""
        return [{"model": tag, **row} for tag, rec in (("original", self.original), ("pruned", self.pruned))
                for row in rec.layer_rows()]

    def propagation_rows(self) -> list[dict]:
        """propagation_rows() of both, each with a "model" field."""
        return [{"model": tag, **row} for tag, rec in (("original", self.original), ("pruned", self.pruned))
                for row in rec.propagation_rows()]

    def summary(self) -> dict:
        return {"original": self.original.summary(), "pruned": self.pruned.summary()}


def compare(original: nn.Module, pruned: nn.Module, paths: Paths, **kwargs) -> Comparison:
    """nonsmoothness() of both models on the same paths (and the same unit samples); kwargs as there."""
    return Comparison(nonsmoothness(original, paths, **kwargs), nonsmoothness(pruned, paths, **kwargs))
