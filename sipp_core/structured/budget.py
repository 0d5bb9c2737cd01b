"""How many channels each layer keeps: PFP's sampling bound, turned into channel counts, with one global eps.

For layer l with channel sensitivities s (sum S_l, distribution p = s / S_l), P_l output patches and
kappa_l taps per channel, the number of draws that gives a (1 +- eps) approximation of every output
with probability 1 - delta is

    m_l(eps) = ceil( K (6 + 2 eps) S_l * 2 C ln(8 (P_l + 1) kappa_l / delta) / eps^2 ),   C = K = 3,

and m draws hit u_l(m) = ceil( sum_j 1 - (1 - p_j)^m ) distinct channels on average: the channel count
kept, for every variant. Keep-ratio mode looks for the one eps shared by all layers whose predicted
size (weights, or multiply-accumulates) fits the budget (docs/pfp.md §3).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PFP_C = 3.0  # the authors' constants C and K
PFP_K = 3.0
EPS_RANGE = (1e-300, 1e150)  # where the global eps is searched (the authors' bracket)


@dataclass(frozen=True)
class LayerBudget:
    """What the allocation needs to know of one layer (channels are the layer's input channels)."""

    name: str
    sensitivities: np.ndarray  # (c,) float64, in [0, 1]
    channels_nonzero: int  # input channels with any nonzero weight
    filters_nonzero: int  # output filters with any nonzero weight
    taps: int  # kappa: weights per (filter, channel); 1 for Linear
    patches: int  # P: output positions per point; 1 for Linear
    spread: int = 1  # input features per channel of this layer's producer (a flatten in between)
    producer: str | None = None  # the linked layer whose filters are this layer's channels
    fixed_outputs: bool = False  # the classifier: its outputs are never removed

    @property
    def total(self) -> float:
        return float(self.sensitivities.sum())

    @property
    def probabilities(self) -> np.ndarray:
        t = self.total
        if t <= np.finfo(np.float32).eps:
            return np.zeros_like(self.sensitivities)
        p = self.sensitivities / t
        p[p <= np.finfo(np.float32).eps] = 0.0
        return p


def log_draws(layer: LayerBudget, epsilon: float, delta: float) -> float:
    """ln m_l(eps) (may be +inf when eps^2 underflows); -inf for a layer with no sensitivity."""
    coef = layer.total * 2.0 * PFP_C * math.log(8.0 * (layer.patches + 1) * layer.taps / delta)
    if coef <= 0.0:
        return -math.inf
    return math.log(PFP_K * (6.0 + 2.0 * epsilon) * coef) - 2.0 * math.log(epsilon)


def draws(layer: LayerBudget, epsilon: float, delta: float) -> float:
    """m_l(eps) = ceil(K (6 + 2 eps) coef / eps^2), at least 1 (inf when it overflows)."""
    lm = log_draws(layer, epsilon, delta)
    if lm > 700:
        return math.inf
    return max(1.0, math.ceil(math.exp(lm))) if lm > -math.inf else 1.0


def expected_distinct(p: np.ndarray, m: float) -> int:
    """u(m) = ceil(sum_j 1 - (1 - p_j)^m): distinct channels that m draws from p hit on average."""
    positive = p[p > 0]
    if math.isinf(m):
        return int(len(positive))
    miss = np.exp(m * np.log1p(-np.minimum(positive, 1.0 - 1e-16)))
    # rounding guard: a sum that is an integer up to float error must not round up one channel too many
    return int(math.ceil(float(np.sum(1.0 - miss)) - 1e-9))


def channels_kept(layer: LayerBudget, epsilon: float, delta: float) -> int:
    """n_l(eps) = clamp(min(c_nz, u_l(m_l(eps))), lower=1)."""
    u = expected_distinct(layer.probabilities, draws(layer, epsilon, delta))
    return max(1, min(layer.channels_nonzero, u))


def predicted_size(layers: list[LayerBudget], counts: dict[str, int], flops: bool) -> float:
    """Weights (or multiply-accumulates) the kept channels leave: n_l * f'_l * kappa_l (* P_l), where a
    producer's filters shrink by the channels its linked consumer dropped."""
    by_name = {l.name: l for l in layers}
    dropped_filters = {}
    for l in layers:
        if l.producer is not None and l.producer in by_name:
            dropped = (l.channels_nonzero - counts[l.name]) // max(1, l.spread)
            dropped_filters[l.producer] = dropped
    size = 0.0
    for l in layers:
        filters = l.filters_nonzero if l.fixed_outputs else max(1, l.filters_nonzero - dropped_filters.get(l.name, 0))
        size += counts[l.name] * filters * l.taps * (l.patches if flops else 1)
    return size


def global_epsilon(layers: list[LayerBudget], budget: float, delta: float, flops: bool = False) -> tuple[float, dict]:
    """(eps, {layer: channels}) for the smallest eps whose predicted size fits `budget`.

    The predicted size falls in steps as eps grows, so the search bisects ln eps over the authors'
    bracket; when even the largest eps does not fit, that end is returned (each layer keeps 1 channel).
    """
    def counts_at(eps):
        return {l.name: channels_kept(l, eps, delta) for l in layers}

    lo, hi = math.log(EPS_RANGE[0]), math.log(EPS_RANGE[1])
    if predicted_size(layers, counts_at(math.exp(lo)), flops) <= budget:
        eps = math.exp(lo)
        return eps, counts_at(eps)
    if predicted_size(layers, counts_at(math.exp(hi)), flops) > budget:
        eps = math.exp(hi)
        return eps, counts_at(eps)
    for _ in range(200):  # 200 halvings of a 1,036-wide interval of ln eps: far below one step
        mid = 0.5 * (lo + hi)
        if predicted_size(layers, counts_at(math.exp(mid)), flops) <= budget:
            hi = mid
        else:
            lo = mid
        if hi - lo < 1e-12:
            break
    eps = math.exp(hi)
    return eps, counts_at(eps)


def adapt_draws(p: np.ndarray, n: int) -> int:
    """The number of draws m~ whose expected distinct count reaches n (capped at #positive - 1): the
    sampled variant draws m~ times so that it keeps about n channels."""
    positive = int((p > 0).sum())
    if n <= 1 or positive <= 1:
        return max(0, min(n, positive))
    n = min(n, positive - 1)
    hi = 1
    while expected_distinct(p, hi) < n:
        hi *= 2
    lo = hi // 2
    while lo + 1 < hi:  # smallest m with u(m) >= n
        mid = (lo + hi) // 2
        if expected_distinct(p, mid) >= n:
            hi = mid
        else:
            lo = mid
    return hi
