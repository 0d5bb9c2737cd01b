"""Baselines (docs/sipp.md §6): the same masks machinery, no sensitivities needed.

- WT: global magnitude pruning, one top-B of |W| over all prunable layers;
- layer-wise magnitude: each layer keeps the fraction kappa of its own |W|
  (per-layer counts by largest remainder, so they sum exactly to B);
- SNIP: |mean over batches of S of (dLoss/dW * W)| (:func:`snip_scores`), global top-B;
- uniform sampling: each unit keeps about max(1, kappa * fan-in) weights drawn
  uniformly with replacement, reweighted as in docs/sipp.md §4 (W_j * count_j * J / m');
  like SiPP sampling it realises a random number of distinct weights, so the
  nominal ratio is searched until the realised ratio is within 0.5% of kappa;
- random: a uniformly random mask of exactly B weights over all prunable layers.

B = round(kappa * prunable weights). Ties in every top-B: earlier layer (in the
order given), then lower flat index, first. All functions return masks (bool)
and values (float32, the new weight) shaped like the weights, on the CPU.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..zoo.layers import prunable_layers
from .allocate import global_topk, largest_remainder, search_budget
from .sparsify import NestedDraws, as_matrix, layer_seed


def keep_budget(keep_ratio: float, total: int) -> int:
    """B = round(kappa * total), halves rounded up. Raises ValueError unless kappa is in (0, 1]."""
    if isinstance(keep_ratio, bool) or not isinstance(keep_ratio, (int, float)) or not (0.0 < keep_ratio <= 1.0):
        raise ValueError(f"keep_ratio must be a number in (0, 1]; got {keep_ratio!r}")
    return int(math.floor(keep_ratio * total + 0.5))


def _apply(weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]):
    out = {}
    for n, w in weights.items():
        wm = w.detach().to("cpu", torch.float32)
        m = masks[n].reshape(w.shape)
        out[n] = (m, torch.where(m, wm, torch.zeros((), dtype=torch.float32)))
    return out


def wt_plan(weights: dict[str, torch.Tensor], keep_ratio: float) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """WT: global top-B of |W|. Returns {name: (mask, values)}."""
    names = list(weights)
    total = sum(weights[n].numel() for n in names)
    masks = global_topk([weights[n].detach().abs() for n in names], keep_budget(keep_ratio, total))
    return _apply(weights, dict(zip(names, masks)))


def layerwise_plan(weights: dict[str, torch.Tensor], keep_ratio: float) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Layer-wise magnitude: each layer keeps its own top fraction kappa of |W|."""
    names = list(weights)
    sizes = [weights[n].numel() for n in names]
    counts = largest_remainder(sizes, keep_ratio, keep_budget(keep_ratio, sum(sizes)))
    masks = {n: global_topk([weights[n].detach().abs()], c)[0] for n, c in zip(names, counts)}
    return _apply(weights, masks)


def snip_plan(weights: dict[str, torch.Tensor], scores: dict[str, torch.Tensor], keep_ratio: float):
    """SNIP: global top-B of the given scores (see :func:`snip_scores`)."""
    names = list(weights)
    for n in names:
        if n not in scores:
            raise ValueError(f"snip_scores lacks layer {n!r}; compute them with baselines.snip_scores for this model")
        if tuple(scores[n].shape) != tuple(weights[n].shape):
            raise ValueError(f"snip_scores[{n!r}] must be shaped like the weight {tuple(weights[n].shape)}; got {tuple(scores[n].shape)}")
        if not bool(torch.isfinite(scores[n]).all()):
            raise ValueError(f"snip_scores[{n!r}] must be finite")
    total = sum(weights[n].numel() for n in names)
    masks = global_topk([scores[n] for n in names], keep_budget(keep_ratio, total))
    return _apply(weights, dict(zip(names, masks)))


def random_plan(weights: dict[str, torch.Tensor], keep_ratio: float, seed: int = 0):
    """Random: exactly B weights chosen uniformly at random over all layers (seeded)."""
    names = list(weights)
    sizes = [weights[n].numel() for n in names]
    total = sum(sizes)
    state = layer_seed(seed, "__random__", 3).generate_state(1, dtype=np.uint64)[0]
    g = torch.Generator().manual_seed(int(state) >> 1)
    keep = torch.zeros(total, dtype=torch.bool)
    keep[torch.randperm(total, generator=g)[: keep_budget(keep_ratio, total)]] = True
    masks, at = {}, 0
    for n, size in zip(names, sizes):
        masks[n] = keep[at : at + size]
        at += size
    return _apply(weights, masks)


# ------------------------------------------------------------------ uniform sampling


def uniform_draws(fan_in: int, target: float) -> float:
    """Draws k whose expected distinct count J (1 - (1 - 1/J)^k) equals target (< J), continuous."""
    if target <= 1.0:
        return 1.0
    return math.log1p(-target / fan_in) / math.log1p(-1.0 / fan_in)


class _UniformLayer:
    def __init__(self, name: str, weight: torch.Tensor, seed: int):
        self.w = as_matrix(weight, f"weights[{name!r}]")
        self.units, self.fan_in = self.w.shape
        j = self.fan_in
        p = torch.full((self.units, j), 1.0 / j, dtype=torch.float64)
        self.draws = NestedDraws(p, torch.full((self.units,), j, dtype=torch.int64), layer_seed(seed, name, 2))
        # a fixed uniform per unit decides which units round their draws up: nested in the ratio
        g = torch.Generator().manual_seed(int(layer_seed(seed, name, 4).generate_state(1, dtype=np.uint64)[0]) >> 1)
        self.round_up = torch.rand(self.units, generator=g, dtype=torch.float64)

    def plan(self, ratio: float):
        """(kept, mask, values, m') for a nominal ratio."""
        j = self.fan_in
        target = max(1.0, ratio * j)
        if target >= j:  # every weight of every unit
            mask = torch.ones_like(self.w, dtype=torch.bool)
            return int(mask.sum()), mask, self.w.clone(), torch.zeros(self.units, dtype=torch.int64)
        k = uniform_draws(j, target)
        draws = (math.floor(k) + (self.round_up < (k - math.floor(k))).to(torch.int64)).clamp_min(1)
        counts = self.draws.counts(draws)  # (F, J)
        mask = counts > 0
        values = (self.w.double() * counts.double() * j / draws.double()[:, None]).float()
        return int(mask.sum()), mask, values, draws


def uniform_plan(weights: dict[str, torch.Tensor], keep_ratio: float, seed: int = 0, rel_tol: float = 0.005):
    """Uniform sampling with the nominal ratio searched so the realised keep ratio is within
    ``rel_tol`` (relative) of ``keep_ratio`` where the granularity allows.

    Returns ({name: (mask, values)}, realised ratio, nominal ratio).
    """
    names = list(weights)
    layers = {n: _UniformLayer(n, weights[n], seed) for n in names}
    total = sum(weights[n].numel() for n in names)
    budget = keep_budget(keep_ratio, total)

    def evaluate(nominal: int):
        ratio = nominal / total
        res = {n: layers[n].plan(ratio) for n in names}
        return sum(int(r[0]) for r in res.values()), res

    nominal, realised, res = search_budget(evaluate, budget, upper=total, rel_tol=rel_tol)
    out = {n: (res[n][1].reshape(weights[n].shape), res[n][2].reshape(weights[n].shape)) for n in names}
    return out, realised / total, nominal / total


# ---------------------------------------------------------------------- SNIP scores


def snip_scores(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """SNIP connection sensitivity |mean over batches of S of (dLoss/dW * W)| per prunable weight.

    The loss is the mean cross-entropy of a batch. Works on a deep copy of the model
    in eval mode (no batch-norm statistics move, no dropout), so the caller's model,
    its parameters and their ``.grad`` are untouched. Returns {name: float32 CPU
    tensor shaped like the weight} for every prunable layer (layers.prunable_layers).
    """
    if not isinstance(inputs, torch.Tensor) or inputs.ndim < 2 or len(inputs) == 0:
        raise ValueError("inputs must be a non-empty batch shaped (N, *input_shape)")
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or len(labels) != len(inputs):
        raise ValueError(f"labels must be a 1-D tensor with one class index per input ({len(inputs)}); got shape {tuple(getattr(labels, 'shape', ()))}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; got {batch_size!r}")
    net = copy.deepcopy(model)
    net.eval()
    layers = prunable_layers(net)
    if not layers:
        raise ValueError("the model has no prunable layer (nn.Linear or nn.Conv2d with groups=1)")
    device = next(net.parameters()).device
    for p in net.parameters():
        p.requires_grad_(False)
        p.grad = None
    for m in layers.values():
        m.weight.requires_grad_(True)
    acc = {n: torch.zeros_like(m.weight, dtype=torch.float64) for n, m in layers.items()}
    batches = 0
    with torch.enable_grad():
        for i in range(0, len(inputs), batch_size):
            x = inputs[i : i + batch_size].to(device)
            y = labels[i : i + batch_size].to(device).long()
            for m in layers.values():
                m.weight.grad = None
            loss = F.cross_entropy(net(x), y)
            loss.backward()
            for n, m in layers.items():
                acc[n] += (m.weight.grad * m.weight.detach()).double()
            batches += 1
    return {n: (a / batches).abs().float().cpu() for n, a in acc.items()}

