"""prune(): validate, compute (or reuse) sensitivities, plan, and build a pruned copy.

The original model is never mutated: the pruned network is a deep copy whose
weights are replaced by the plan's values (zeros where pruned, reweighted where
sampled), so `result.model.state_dict()` is a plain exportable state_dict.
"""
from __future__ import annotations

import copy
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..errors import BadInput
from ..io.export import export_pruned
from ..io.state_dicts import file_masks, file_state
from ..options import ALLOCATIONS, METHODS, PATCH_REDUCTIONS, SIPP_METHODS, STRUCTURED_METHODS
from ..sensitivity.api import check_not_all_zero, compute_sensitivities
from ..structured.filters import FilterPruneResult, prune_filters
from ..zoo.layers import LayerInfo, dense_layers, layer_infos, prunable_layers
from .baselines import snip_scores
from .bounds import check_delta, check_epsilon, plain_number, sample_size_of
from .planner import LayerPlan, make_plan


@dataclass(frozen=True)
class LayerSummary:
    """One prunable layer's budget and bound (JSON-ready primitives)."""

    name: str
    kind: str
    kept: int
    total: int
    bound: float  # largest row bound over rows with signal (nan for methods without a bound)
    bound_mean: float
    rows_sampled: int
    rows_deterministic: int

    @property
    def density(self) -> float:
        return self.kept / self.total if self.total else 0.0


@dataclass(frozen=True, eq=False)
class PruneResult:
    model: nn.Module  # the pruned copy, eval mode
    masks: dict[str, torch.Tensor]  # bool, shaped like each weight
    plans: dict[str, LayerPlan]
    infos: dict[str, LayerInfo]
    sensitivities: dict[str, torch.Tensor] | None
    layers: list[LayerSummary]
    keep_ratio: float  # realised, over prunable weights
    kept: int
    total: int
    params_kept: int  # all parameters (biases, norms count as kept)
    params_total: int
    dense: list[tuple[str, str]]  # (name, reason) of layers left dense
    settings: dict
    timings_s: dict = field(default_factory=dict)
    example_input: torch.Tensor | None = None  # two points of S: what export() traces the network with

    def export(self, directory, *, check_inputs: torch.Tensor | None = None, report: dict | None = None):
        """Write masks.pt, state_dict.pt, model.pt2, model.onnx and report.json into `directory`
        (see sipp_core.io.export); ONNX is checked against PyTorch on `check_inputs` (default: two
        points of S). Returns an ExportSummary."""
        if self.example_input is None:
            raise ValueError("this result holds no example input; build it with prune()")
        base = {"settings": self.settings, "keep_ratio": self.keep_ratio, "kept": self.kept, "total": self.total,
                "params_kept": self.params_kept, "params_total": self.params_total,
                "layers": [{**asdict(s), "density": s.density} for s in self.layers],
                "dense_layers": [{"name": n, "reason": r} for n, r in self.dense]}
        return export_pruned(directory, model=self.model, masks=self.masks, example=self.example_input,
                             check_inputs=check_inputs, report=report if report is not None else base)

    def masks_state(self) -> dict[str, torch.Tensor]:
        """The masks by layer name (an upload's: the names in its file)."""
        return file_masks(self.model, {k: v.clone() for k, v in self.masks.items()})

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The pruned weights as a plain state_dict (CPU tensors), under an upload's own keys."""
        return file_state(self.model, {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()})


def validate_arguments(method, keep_ratio, epsilon, delta, patch_reduction="max", allocation="global", c_prime=3.0):
    """Raise BadInput (a ValueError) naming the first bad argument and its valid range."""
    if method not in METHODS:
        raise BadInput(f"method must be one of {', '.join(METHODS + STRUCTURED_METHODS)}; got {method!r}",
                       "choose one of them (sipp-hybrid is the default)")
    if (keep_ratio is None) == (epsilon is None):
        raise BadInput("give exactly one of keep_ratio (in (0, 1]) or epsilon (> 0), not both or neither",
                       "e.g. keep_ratio=0.1, or epsilon=0.5")
    if keep_ratio is not None:
        if not isinstance(keep_ratio, (int, float)) or not (0.0 < float(keep_ratio) <= 1.0) or math.isnan(keep_ratio):
            raise BadInput(f"keep_ratio must be in (0, 1]; got {keep_ratio!r}",
                           "give the share of the prunable weights to keep, e.g. keep_ratio=0.1")
    if epsilon is not None:
        check_epsilon(epsilon)
        if method not in SIPP_METHODS:
            raise BadInput(
                f"epsilon mode needs a SiPP method ({', '.join(SIPP_METHODS)}); {method!r} takes keep_ratio",
                f"choose a SiPP method, or give {method!r} a keep_ratio"
            )
    check_delta(delta)
    if patch_reduction not in PATCH_REDUCTIONS:
        raise BadInput(f"patch_reduction must be one of {PATCH_REDUCTIONS}; got {patch_reduction!r}")
    if allocation not in ALLOCATIONS:
        raise BadInput(f"allocation must be one of {ALLOCATIONS}; got {allocation!r}")
    if not (isinstance(c_prime, (int, float)) and c_prime >= 1.0 and math.isfinite(c_prime)):
        raise BadInput(f"c_prime must be a finite number >= 1; got {c_prime!r}")


def apply_plans(model: nn.Module, plans: dict[str, LayerPlan]) -> nn.Module:
    """A deep copy of `model` with each planned layer's weight replaced by the plan's values."""
    pruned = copy.deepcopy(model)
    modules = dict(pruned.named_modules())
    with torch.no_grad():
        for name, plan in plans.items():
            w = modules[name].weight
            w.copy_(plan.values.to(device=w.device, dtype=w.dtype).reshape(w.shape))
    return pruned.eval()


def _warn_layers_without_signal(plans: dict[str, LayerPlan]) -> None:
    """A SiPP layer whose bound is NaN had no row with signal: its input was 0 on every point of S
    (e.g. every unit before it inactive), so all its weights were pruned and nothing bounds it."""
    silent = [n for n, p in plans.items() if math.isnan(p.bound_max)]
    if silent:
        warnings.warn(
            f"layer(s) {', '.join(silent)} received only zeros on every point of S: no weight got any sensitivity, "
            "so all were pruned and their bound is undefined (NaN). Fix: draw S from real inputs, or check "
            "that the layer before them is not dead (every unit inactive)",
            RuntimeWarning, stacklevel=3,
        )


def _warn_small_s(n: int, need: int) -> None:
    """S smaller than the |S| the guarantee's formula asks for (docs/sipp.md §2.5): said, not refused (a small S is
    how one looks at single points, and the app's |S| box allows it), since the sampled rows' δ assumes it."""
    if n < need:
        warnings.warn(f"S holds {n} point(s), fewer than the {need} the guarantee's formula asks for at this δ: the "
                      "sensitivities rest on fewer inputs than the probability 1 − δ assumes. Fix: give S at least "
                      f"{need} points (sipp_core.sample_size(model, input_shape, delta))", RuntimeWarning, stacklevel=3)


def _warn_empty_layers(plans: dict[str, LayerPlan], method: str, allocation: str) -> None:
    """A layer that keeps none of its weights passes on only its biases: every later output is the same for every
    input, and the network predicts one class. Said, since it follows from a global budget at a small keep ratio
    (a layer whose sensitivities are spread thin loses the competition for it: docs/sipp.md §8.1)."""
    empty = [n for n, p in plans.items() if int(p.kept) == 0 and not math.isnan(p.bound_max)]
    if not empty:
        return
    fix = "keep more weights (a larger keep_ratio or epsilon)"
    if method == "sipp-det" and allocation == "global":
        fix += ", or spread the budget with allocation='bound-optimal'"
    warnings.warn(f"layer(s) {', '.join(empty)} keep none of their weights: the output no longer depends on the "
                  f"input, and the network predicts one class. Fix: {fix}", RuntimeWarning, stacklevel=3)


def prune(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    method: str = "sipp-hybrid",
    keep_ratio: float | None = None,
    epsilon: float | None = None,
    delta: float = 1e-16,
    seed: int = 0,
    sensitivities: dict[str, torch.Tensor] | None = None,
    patch_reduction: str = "max",
    labels: torch.Tensor | None = None,
    allocation: str = "global",
    c_prime: float = 3.0,
    target: str = "params",
    progress=None,
    warn_small_s: bool = True,
) -> PruneResult | FilterPruneResult:
    """Prune a copy of `model` using the batch S = `inputs`.

    Args:
        model: a network whose Linear / Conv2d (groups=1) layers are pruned; never modified.
        inputs: the batch S, shaped (|S|, *input_shape).
        method: one of METHODS.
        keep_ratio: share of prunable weights to keep, in (0, 1] (keep-ratio mode), or
        epsilon: the per-row relative error to guarantee, > 0 (epsilon mode, SiPP methods only).
        delta: failure probability in (0, 1); enters L_l in both modes.
        seed: seeds sampling; the same settings give the same masks and values.
        sensitivities: reuse precomputed sensitivities (same model, S and patch reduction).
        labels: labels of S, needed by "snip".
        allocation: deterministic SiPP in keep-ratio mode: "global" (authors') or "bound-optimal".
        c_prime: C' of the hybrid rule (docs/sipp.md §8.2).
        target: channel methods (pfp, pfp-rand, filter-l1, filter-random) only: what keep_ratio counts,
            "params" or "flops". These methods return a FilterPruneResult whose model is physically smaller
            (see sipp_core.structured.filters.prune_filters).
        warn_small_s: warn when S has fewer points than the guarantee's |S| formula asks for (the pipeline, whose
            report gives |S| beside the formula, turns it off).

    Returns: PruneResult. Raises: ValueError for invalid arguments (names the argument and range).

    >>> r = prune(model, s_batch, keep_ratio=0.1)        # doctest: +SKIP
    >>> r.keep_ratio, r.layers[0].bound                   # doctest: +SKIP
    """
    if target != "params" and method not in STRUCTURED_METHODS:
        raise BadInput(f"target={target!r} is for the channel methods ({', '.join(STRUCTURED_METHODS)}); "
                       f"{method!r} keeps a share of the weights", "leave out target, or choose a channel method")
    if not isinstance(model, nn.Module):
        raise BadInput(f"model must be a torch nn.Module; got a {type(model).__name__}",
                       "pass the network itself: for a zoo name, sipp_core.load_trained(name, dataset).model; for a "
                       "state_dict, load it into its nn.Module first")
    keep_ratio, epsilon, delta, c_prime = (plain_number(v) for v in (keep_ratio, epsilon, delta, c_prime))
    if method in STRUCTURED_METHODS:
        reuse = sensitivities if patch_reduction == "max" else None
        return prune_filters(model, inputs, method=method, keep_ratio=keep_ratio, epsilon=epsilon, target=target,
                             delta=delta, seed=seed, labels=labels, sensitivities=reuse, progress=progress)
    validate_arguments(method, keep_ratio, epsilon, delta, patch_reduction, allocation, c_prime)
    if not isinstance(inputs, torch.Tensor) or inputs.ndim < 2 or len(inputs) == 0:
        raise BadInput("inputs must be a non-empty tensor batch S shaped (|S|, *input_shape)")
    check_not_all_zero(inputs)  # also with precomputed sensitivities: they would be all zero
    if method == "snip" and labels is None:
        raise BadInput("method 'snip' needs labels of the batch S (labels=...)")
    timings = {}
    infos = layer_infos(model, tuple(inputs.shape[1:]))
    if not infos:
        raise BadInput("the model has no prunable layer (nn.Linear or nn.Conv2d with groups=1)")
    t0 = time.perf_counter()
    if sensitivities is None:
        sensitivities = compute_sensitivities(model, inputs, patch_reduction=patch_reduction, progress=progress)
    else:
        missing = set(infos) - set(sensitivities)
        if missing:
            raise ValueError(f"sensitivities lack layers {sorted(missing)}; recompute them for this model")
    timings["sensitivity"] = time.perf_counter() - t0
    snip = None
    if method == "snip":
        snip = snip_scores(model, inputs, labels)
    t1 = time.perf_counter()
    modules = prunable_layers(model)
    weights = {n: modules[n].weight.detach().cpu().float() for n in infos}
    plans = make_plan(
        method, weights, infos, keep_ratio=keep_ratio, epsilon=epsilon, delta=delta, seed=seed,
        sensitivities=sensitivities, snip_scores=snip, allocation=allocation, c_prime=c_prime,
    )
    if method in SIPP_METHODS:
        _warn_layers_without_signal(plans)
        if warn_small_s:
            _warn_small_s(len(inputs), sample_size_of(infos, delta))
    _warn_empty_layers(plans, method, allocation)
    pruned = apply_plans(model, plans)
    timings["prune"] = time.perf_counter() - t1
    layers = [
        LayerSummary(
            name=n, kind=infos[n].kind, kept=int(p.kept), total=int(p.total),
            bound=float(p.bound_max), bound_mean=float(p.bound_mean),
            rows_sampled=int((p.row_method == 1).sum()), rows_deterministic=int((p.row_method == 0).sum()),
        )
        for n, p in plans.items()
    ]
    kept = sum(l.kept for l in layers)
    total = sum(l.total for l in layers)
    all_params = sum(p.numel() for p in model.parameters())
    settings = dict(
        method=method, keep_ratio=keep_ratio, epsilon=epsilon, delta=delta, seed=seed,
        patch_reduction=patch_reduction, allocation=allocation, c_prime=c_prime, sample_size=len(inputs),
    )
    return PruneResult(
        model=pruned, masks={n: p.mask.clone() for n, p in plans.items()}, plans=plans, infos=infos,
        sensitivities=sensitivities, layers=layers, keep_ratio=kept / total, kept=kept, total=total,
        params_kept=all_params - (total - kept), params_total=all_params, dense=dense_layers(model),
        settings=settings, timings_s=timings, example_input=inputs[:2].detach().cpu().clone(),
    )


def to_json(obj) -> str:
    """JSON with NaN/inf written as null (strict JSON readers reject NaN)."""

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(obj), indent=2)
