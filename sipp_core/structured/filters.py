"""prune_filters(): remove whole channels, make the network physically smaller, and measure what it costs.

1. channel sensitivities on S (channels.py), computed once on the unpruned network;
2. a channel count per layer: PFP's sampling bound with one global eps (budget.py), or for the filter
   baselines the same share of filters in every layer;
3. the channels of each layer (select.py), applied to a copy as zeroed (or, for pfp-rand, reweighted)
   input channels, or zeroed filters for the baselines;
4. filters nobody reads any more are removed too (propagate.py);
5. the copy is rebuilt with fewer channels (shrink.py) and checked against the masked copy;
6. an outer search moves the budget until the measured keep ratio of parameters (or FLOPs) is within
   0.5% of the target (docs/pfp.md §3).
The original model is never changed.
"""
from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from torch import nn

from ..errors import BadInput
from ..io.export import export_pruned
from ..options import STRUCTURED_METHODS, STRUCTURED_TARGETS, check_choice
from ..plan.bounds import check_delta, check_epsilon
from ..sensitivity.api import check_not_all_zero
from ..zoo.layers import layer_infos, prunable_layers
from .budget import LayerBudget, channels_kept, global_epsilon
from .channels import channel_sensitivities, reduce_to_channels
from .graph import find_links
from .measure import count_params, layer_flops
from .propagate import propagate
from .select import filter_scores, filters_kept, sampled_channels, top_channels
from .shrink import Widths, shrink

TOLERANCE = 0.005  # the measured keep ratio must be within 0.5% (relative) of the target
SEARCH_STEPS = 24  # evaluations of the outer search at most
EQUAL_ATOL = 1e-4  # the smaller network must match the masked one to float32 round-off


@dataclass(frozen=True, eq=False)
class FilterPruneResult:
    model: nn.Module  # the physically smaller network (the masked one when the graph could not be read)
    masked_model: nn.Module  # same function, original shapes, removed channels zeroed
    widths: list[Widths]
    channels: dict[str, torch.Tensor]  # bool (in_channels,): the input channels each layer still reads
    channel_sensitivities: dict[str, torch.Tensor]
    keep_ratio: float  # measured, of the target quantity
    params: dict  # {"original", "masked", "pruned"}: nonzero parameters
    flops: dict  # {"original", "masked", "pruned"}: multiply-accumulates per point
    flops_per_layer: dict  # {layer: {"original", "pruned"}}
    dead_on_s: int  # filters removed because they were silent on all of S, not chosen by the allocation
    epsilon: float | None  # PFP's global eps (None for the baselines)
    shrunk: bool
    note: str  # why the network could not be made smaller, when it could not
    settings: dict
    timings_s: dict = field(default_factory=dict)
    example_input: torch.Tensor | None = None

    @property
    def labels(self) -> dict[str, str]:
        return {w.name: w.label for w in self.widths}

    def to_dict(self) -> dict:
        return {"settings": self.settings, "keep_ratio": self.keep_ratio, "params": self.params, "flops": self.flops,
                "widths": [{**asdict(w), "label": self.labels[w.name]} for w in self.widths],
                "flops_per_layer": self.flops_per_layer, "dead_on_s": self.dead_on_s, "epsilon": self.epsilon,
                "shrunk": self.shrunk, "note": self.note}

    def export(self, directory, *, check_inputs: torch.Tensor | None = None, report: dict | None = None):
        """state_dict.pt, model.pt2 and model.onnx of the smaller network, masks.pt (the input channels each
        layer reads) and report.json, as sipp_core.io.export writes them."""
        full = dict(report if report is not None else self.to_dict())
        full.setdefault("layers", full.get("widths"))  # report.csv: one row per layer with its widths
        return export_pruned(directory, model=self.model, masks=self.channels, example=self.example_input,
                             check_inputs=check_inputs, report=full)


@dataclass
class _Candidate:
    masked: nn.Module
    small: nn.Module
    widths: list
    measured: float
    epsilon: float | None
    dead: int


def validate(method, keep_ratio, epsilon, target, delta) -> None:
    check_choice(method, STRUCTURED_METHODS, "method")
    check_choice(target, STRUCTURED_TARGETS, "target")
    if (keep_ratio is None) == (epsilon is None):
        raise BadInput("give exactly one of keep_ratio (in (0, 1]) or epsilon (> 0), not both or neither",
                       "pass keep_ratio=0.3, or epsilon with method 'pfp-rand'")
    if keep_ratio is not None and (isinstance(keep_ratio, bool) or not isinstance(keep_ratio, (int, float))
                                   or math.isnan(keep_ratio) or not 0.0 < float(keep_ratio) <= 1.0):
        raise BadInput(f"keep_ratio must be in (0, 1]; got {keep_ratio!r}", "pass e.g. keep_ratio=0.3")
    if epsilon is not None:
        check_epsilon(epsilon)
        if method != "pfp-rand":
            raise BadInput(f"epsilon mode needs the sampled method 'pfp-rand' (the guarantee is about sampling); "
                           f"{method!r} takes a keep_ratio", "use method='pfp-rand', or give keep_ratio")
    check_delta(delta)


def _check_model(model: nn.Module) -> dict[str, nn.Module]:
    layers = prunable_layers(model)
    if not layers:
        raise BadInput("this network has no layer whose channels can be removed: filter pruning removes input "
                       "channels of Linear and Conv2d (groups=1) layers, and grouped or depthwise convolutions are "
                       "never pruned", "choose a network with Linear or ordinary Conv2d layers")
    if all(m.weight.shape[1] <= 1 for m in layers.values()):
        raise BadInput("every prunable layer of this network reads a single input channel, and each layer keeps "
                       "at least one: there is no channel to remove", "use weight pruning (a SiPP method) instead")
    return layers


def _check_output(model: nn.Module, inputs: torch.Tensor) -> None:
    """The network returns one tensor: the smaller network is checked against the masked one by their outputs."""
    with torch.no_grad():
        out = model(inputs[:2])
    if not isinstance(out, torch.Tensor):
        raise BadInput(f"the network returns a {type(out).__name__}, not a tensor: channel pruning checks the smaller "
                       "network against the original by their outputs",
                       "wrap it in a module whose forward returns one tensor (e.g. its out['logits'])")


def prune_filters(model: nn.Module, inputs: torch.Tensor, *, method: str = "pfp", keep_ratio: float | None = None,
                  epsilon: float | None = None, target: str = "params", delta: float = 1e-16, seed: int = 0,
                  labels: torch.Tensor | None = None, sensitivities: dict[str, torch.Tensor] | None = None,
                  progress=None) -> FilterPruneResult:
    """Remove whole channels from a copy of `model` (see the module docstring).

    Args:
        method: "pfp" (top channels by sensitivity), "pfp-rand" (sampled and reweighted), "filter-l1" or
            "filter-random" (the same share of filters in every layer, by L1 norm or at random).
        keep_ratio: the share of parameters (target="params") or FLOPs (target="flops") to keep, or
        epsilon: pfp-rand only: the smallest network whose sampling bound gives every output a (1 +- eps)
            approximation with probability 1 - delta.
        labels: the labels of S (the loss whose zero gradients reveal filters nobody reads); without them,
            half the squared outputs.
        sensitivities: SiPP edge sensitivities of this model and S (max over patches) to reuse.
    """
    validate(method, keep_ratio, epsilon, target, delta)
    if not isinstance(inputs, torch.Tensor) or inputs.ndim < 2 or len(inputs) == 0:
        raise BadInput("inputs must be a non-empty tensor batch S shaped (|S|, *input_shape)", "pass a batch of inputs")
    check_not_all_zero(inputs)
    report = progress or (lambda f, m: None)
    work = copy.deepcopy(model).eval()
    layers = _check_model(work)
    _check_output(work, inputs)
    timings = {}
    t0 = time.perf_counter()
    if sensitivities is not None:
        scores = reduce_to_channels({n: sensitivities[n] for n in layers})
    else:
        scores = channel_sensitivities(work, inputs, progress=lambda f, m: report(0.4 * f, m))
    timings["sensitivity"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    structure = find_links(work)
    infos = layer_infos(work, tuple(inputs.shape[1:]))
    example = inputs[:2].detach().clone()
    original = {"params": count_params(work, nonzero=False), "flops": sum(layer_flops(work, example, nonzero=False).values())}
    compressible = sum(m.weight.numel() for m in layers.values())
    budgets = _budgets(layers, scores, infos, structure)

    def build(apply) -> _Candidate:
        masked = copy.deepcopy(work)
        eps = apply(masked)
        chosen_zero = {n: ~(m.weight.reshape(m.weight.shape[0], -1) != 0).any(dim=1) for n, m in prunable_layers(masked).items()}
        removed = propagate(masked, inputs, labels)
        dead = _dead_filters(masked, structure, removed, chosen_zero)
        if structure.traced:
            small, widths = shrink(masked, structure, inputs)
        else:
            small, widths = masked, _plain_widths(masked)
        size = count_params(small) if target == "params" else sum(layer_flops(small, example).values())
        return _Candidate(masked, small, widths, size / original[target], eps, dead)

    if epsilon is not None:
        counts = {b.name: channels_kept(b, epsilon, delta) for b in budgets}
        best = build(lambda net: _apply_channels(net, method, budgets, counts, seed, epsilon))
    else:
        def at(x):
            if method in ("pfp", "pfp-rand"):
                flops = target == "flops"
                budget = x * original["flops"] if flops else x * original["params"] - (original["params"] - compressible)
                eps, counts = global_epsilon(budgets, max(0.0, budget), delta, flops=flops)
                return build(lambda net: _apply_channels(net, method, budgets, counts, seed, eps))
            return build(lambda net: _apply_filters(net, method, structure, x, seed))
        best, smallest = _search(at, float(keep_ratio), report)
        if abs(best.measured - keep_ratio) > TOLERANCE * keep_ratio:
            why = (f"the smallest network it can make (one channel or filter per layer) keeps {smallest:.4f}"
                   if smallest > keep_ratio else "one channel more or less moves the ratio by more than 0.5% here")
            warnings.warn(f"{method} reached a keep ratio of {best.measured:.4f} of {target}, not {keep_ratio:g}: {why}",
                          RuntimeWarning, stacklevel=2)
    shrunk, note = structure.traced, structure.reason
    if shrunk:
        diff = _max_difference(best.masked, best.small, inputs[:16])
        if not diff <= EQUAL_ATOL:
            shrunk, note = False, f"the rebuilt network differed from the masked one by {diff:.3g}"
            best.small, best.widths = best.masked, _plain_widths(best.masked)
    timings["prune"] = time.perf_counter() - t1
    report(1.0, "filters pruned")
    small = best.small
    per_layer_orig = layer_flops(work, example, nonzero=False)
    per_layer_small = layer_flops(small, example)
    settings = dict(method=method, keep_ratio=keep_ratio, epsilon=epsilon, target=target, delta=delta, seed=seed,
                    sample_size=len(inputs))
    # a network uploaded under other names: its layers are named as in the file (infos carry the file's names)
    widths = [replace(w, file_name=infos[w.name].file_name) if w.name in infos else w for w in best.widths]
    return FilterPruneResult(
        model=small, masked_model=best.masked, widths=widths,
        channels={n: (m.weight.transpose(0, 1).reshape(m.weight.shape[1], -1) != 0).any(dim=1)
                  for n, m in prunable_layers(best.masked).items()},
        channel_sensitivities=scores, keep_ratio=best.measured,
        params={"original": original["params"], "masked": count_params(best.masked), "pruned": count_params(small)},
        flops={"original": original["flops"], "masked": sum(layer_flops(best.masked, example).values()),
               "pruned": sum(per_layer_small.values())},
        flops_per_layer={n: {"original": per_layer_orig[n], "pruned": per_layer_small.get(n, 0)} for n in per_layer_orig},
        dead_on_s=best.dead, epsilon=best.epsilon, shrunk=shrunk, note=note, settings=settings, timings_s=timings,
        example_input=example,
    )


def _budgets(layers, scores, infos, structure) -> list[LayerBudget]:
    out = []
    for n, m in layers.items():
        w = m.weight.detach()
        link = structure.links.get(n)
        cols = (w.transpose(0, 1).reshape(w.shape[1], -1) != 0).any(dim=1)
        rows = (w.reshape(w.shape[0], -1) != 0).any(dim=1)
        out.append(LayerBudget(
            name=n, sensitivities=scores[n].double().numpy(), channels_nonzero=int(cols.sum()),
            filters_nonzero=int(rows.sum()), taps=infos[n].kernel_size, patches=infos[n].patches,
            spread=link.spread if link else 1, producer=link.producer if link else None,
        ))
    return out


def _apply_channels(net: nn.Module, method: str, budgets: list[LayerBudget], counts: dict, seed: int, eps: float):
    """Multiply each layer's input channels by their multipliers (0 removes); returns eps."""
    modules = prunable_layers(net)
    with torch.no_grad():
        for index, b in enumerate(budgets):
            if method == "pfp":
                gamma = top_channels(b.sensitivities, counts[b.name])
            else:
                rng = np.random.default_rng([seed, index])
                p = b.probabilities
                gamma = sampled_channels(p, counts[b.name], rng)[0] if p.sum() > 0 else np.ones(len(p))
            w = modules[b.name].weight
            g = torch.as_tensor(gamma, dtype=w.dtype, device=w.device)
            w.mul_(g.reshape(1, -1, *([1] * (w.ndim - 2))))
    return eps


def _apply_filters(net: nn.Module, method: str, structure, share: float, seed: int):
    """Zero the same share of filters in every layer whose filters can go (those with a link)."""
    modules = prunable_layers(net)
    removable = {n: m.weight.shape[0] for n, m in modules.items() if structure.producer_link(n) is not None}
    counts = filters_kept(removable, share)
    with torch.no_grad():
        for index, (n, m) in enumerate(modules.items()):
            if n not in counts:
                continue
            w = m.weight
            keep_n = counts[n]
            if method == "filter-l1":
                keep = top_channels(filter_scores(w.detach().cpu().double().numpy()), keep_n)
            else:
                keep = np.zeros(w.shape[0])
                keep[np.random.default_rng([seed, index]).permutation(w.shape[0])[:keep_n]] = 1.0
            w[torch.as_tensor(keep == 0)] = 0.0
    return None


def _search(at, target: float, report) -> tuple[_Candidate, float]:
    """Bisect the budget x in [0, 1] until the measured keep ratio is within TOLERANCE of the target;
    the closest candidate when the steps do not allow it. Also returns the smallest ratio seen."""
    tried = {}

    def f(x):
        if x not in tried:
            tried[x] = at(x)
            report(0.4 + 0.6 * len(tried) / SEARCH_STEPS, f"budget search: {len(tried)} tried")
        return tried[x]

    lo, hi = 0.0, 1.0
    x = target
    for _ in range(SEARCH_STEPS):
        c = f(x)
        gap = c.measured - target
        if abs(gap) <= TOLERANCE * target:
            return c, min(t.measured for t in tried.values())
        if gap > 0:
            hi = x
        else:
            lo = x
        x = 0.5 * (lo + hi)
        if hi - lo < 1e-6:
            break
    best = min(tried.values(), key=lambda c: abs(c.measured - target))
    return best, min(t.measured for t in tried.values())


def _dead_filters(masked, structure, removed, chosen_zero) -> int:
    """Filters the zero-gradient step removed although their consumer still read them: silent on all of S."""
    modules = prunable_layers(masked)
    dead = 0
    for n, newly in removed.items():
        newly = newly & ~chosen_zero[n]
        link = structure.producer_link(n)
        if link is None:
            dead += int(newly.sum())
            continue
        w = modules[link.consumer].weight
        read = (w.transpose(0, 1).reshape(w.shape[1], -1) != 0).any(dim=1)
        read = read.reshape(-1, link.spread).any(dim=1)
        dead += int((newly & read).sum())
    return dead


def _plain_widths(net: nn.Module) -> list[Widths]:
    out = []
    for n, m in prunable_layers(net).items():
        w = m.weight
        cols = int((w.transpose(0, 1).reshape(w.shape[1], -1) != 0).any(dim=1).sum())
        rows = int((w.reshape(w.shape[0], -1) != 0).any(dim=1).sum())
        out.append(Widths(n, "linear" if isinstance(m, nn.Linear) else "conv2d", w.shape[1], cols, w.shape[0], rows,
                          False, 0, tuple(w.shape)))
    return out


def _max_difference(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        ya, yb = a.eval()(x), b.eval()(x)
    return float((ya - yb).abs().max() / ya.abs().max().clamp_min(1.0))
