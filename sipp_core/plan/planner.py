"""make_plan(): from sensitivities (or a baseline's scores) to masks, values and row bounds.

The single entry point of the plan stage (DESIGN "plan -> masks"):

    plans = make_plan("sipp-hybrid", weights, infos, keep_ratio=0.05, sensitivities=sens)
    plans["fc1"].mask, plans["fc1"].values, plans["fc1"].row_bound

Keep-ratio mode (any method) or epsilon mode (SiPP methods only); see
allocate.py for the allocation rules and sparsify.py for the sparsifiers. The
expensive per-layer step (sorting each row by sensitivity) depends only on the
weights and sensitivities, so it is cached (keyed on the tensors' storage,
version counter and checksums): moving an eps or keep-ratio slider re-runs only
the cheap part.

Row bounds (docs/sipp.md §3, per (unit, sign) row, float64):
- sampled row: eps_rand(m) with m the planned distinct count (m' >= m draws are
  made, so this is conservative);
- deterministic row: eps_det(m) (sipp-det), C' * eps_det(m) (sipp-hybrid, docs/sipp.md §8.2);
- whole row (every s > 0 weight kept): 0;
- row without signal (T = 0): 0 (it is pruned entirely: error 0 on S);
- row with signal emptied by the budget (m = 0): T = eps_det(0) (C' * T in hybrid).
  eps_rand(0) is infinite; the emptied row's relative error is exactly 1 <= T,
  so sipp-rand reports T as well, keeping bound_max finite.
Baselines have no bound: nan. :func:`implied_bounds` measures any mask with the
deterministic yardstick instead.
"""
from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch

from ..options import ALLOCATIONS, METHODS, SIPP_METHODS
from ..zoo.layers import LayerInfo
from . import bounds as _bounds
from .allocate import bound_optimal_allocation, epsilon_rows, global_topk, layer_log_term, search_budget
from .baselines import keep_budget, layerwise_plan, random_plan, snip_plan, uniform_plan, wt_plan
from .bounds import eps_rand_rows
from .sparsify import (
    DETERMINISTIC,
    EMPTY,
    SAMPLED,
    WHOLE,
    RowSet,
    as_matrix,
    assemble,
    build_rows,
    check_sensitivity,
    classify,
    draws_for_distinct,
    eps_det_rows,
    hybrid_choice,
    row_draws,
)

REALISED_REL_TOL = 0.005  # docs/sipp.md §8.5: |realised - kappa| <= 0.005 kappa


@dataclass(frozen=True, eq=False)
class LayerPlan:
    """One layer's plan. Per-row tensors are (F, 2): column 0 the positive row, column 1 the negative."""

    name: str
    mask: torch.Tensor  # bool, shaped like the weight
    values: torch.Tensor  # float32, shaped like the weight: the new weight (0 where pruned; reweighted where sampled)
    row_kept: torch.Tensor  # (F, 2) int64 distinct weights kept per row
    row_budget: torch.Tensor  # (F, 2) planned m per row (int64 for SiPP; float64 = row_kept for baselines)
    row_bound: torch.Tensor  # (F, 2) float64 the row's bound (see module doc); nan for baselines
    row_method: torch.Tensor  # (F, 2) int8: 0 deterministic, 1 sampled, 2 whole row kept, 3 empty row
    kept: int
    total: int
    bound_max: float  # over rows with signal (T > 0); nan for baselines or without such rows
    bound_mean: float


# --------------------------------------------------------------------- validation


def _check_args(method, keep_ratio, epsilon, delta, seed, allocation, c_prime):
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if (keep_ratio is None) == (epsilon is None):
        raise ValueError("give exactly one of keep_ratio (in (0, 1]) or epsilon (> 0), not both or neither")
    if keep_ratio is not None:
        if isinstance(keep_ratio, bool) or not isinstance(keep_ratio, (int, float)) or not (0.0 < keep_ratio <= 1.0):
            raise ValueError(f"keep_ratio must be a number in (0, 1]; got {keep_ratio!r}")
    if epsilon is not None:
        if method not in SIPP_METHODS:
            raise ValueError(f"epsilon mode needs a SiPP method ({', '.join(SIPP_METHODS)}); {method!r} takes keep_ratio")
        _bounds.check_epsilon(epsilon)
    _bounds.check_delta(delta)
    if isinstance(seed, bool) or not isinstance(seed, int) or not (0 <= seed < 2**63):
        raise ValueError(f"seed must be an integer in [0, 2**63); got {seed!r}")
    if allocation not in ALLOCATIONS:
        raise ValueError(f"allocation must be one of {ALLOCATIONS}; got {allocation!r}")
    if isinstance(c_prime, bool) or not isinstance(c_prime, (int, float)) or not math.isfinite(c_prime) or c_prime < 1.0:
        raise ValueError(f"c_prime must be a finite number >= 1; got {c_prime!r}")


def _check_layers(weights, infos, sensitivities, need_sens: bool):
    if not isinstance(weights, dict) or not weights:
        raise ValueError("weights must be a non-empty dict {layer name: weight tensor}")
    if not isinstance(infos, dict):
        raise ValueError("infos must be a dict {layer name: LayerInfo}")
    missing = [n for n in weights if n not in infos]
    if missing:
        raise ValueError(f"infos lacks layers {missing}; pass layers.layer_infos(model, input_shape)")
    names = [n for n in infos if n in weights]
    for n in names:
        w = weights[n]
        if not isinstance(w, torch.Tensor):
            raise ValueError(f"weights[{n!r}] must be a torch.Tensor; got {type(w).__name__}")
        if tuple(w.shape) != tuple(infos[n].weight_shape):
            raise ValueError(f"weights[{n!r}] must have the shape in infos {tuple(infos[n].weight_shape)}; got {tuple(w.shape)}")
        if w.is_floating_point() and not bool(torch.isfinite(w).all()):
            raise ValueError(f"weights[{n!r}] must be finite (no nan or inf)")
    if need_sens:
        if not isinstance(sensitivities, dict):
            raise ValueError("sensitivities are required for SiPP methods: {layer name: tensor shaped like the weight}")
        lacking = [n for n in names if n not in sensitivities]
        if lacking:
            raise ValueError(f"sensitivities lack layers {lacking}; recompute them for this model")
        for n in names:  # values are checked when the rows are built (once per tensor, see prepared_rows)
            s = sensitivities[n]
            if not isinstance(s, torch.Tensor) or tuple(s.shape) != tuple(weights[n].shape):
                raise ValueError(f"sensitivities[{n!r}] must be a tensor shaped like the weight {tuple(weights[n].shape)}; got {tuple(getattr(s, 'shape', ()))}")
    return names


# ----------------------------------------------------------------------- row cache

_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 64  # layers
_CACHE_LOCK = threading.Lock()


def _fingerprint(t: torch.Tensor):
    """Storage, layout and version counter, plus 64 spread-out entries as a cheap checksum
    (catches writes through ``.data``, which do not bump the version counter, in most cases)."""
    flat = t.detach().reshape(-1)
    probe = flat[:: max(1, flat.numel() // 64)][:64].tolist()
    return (t.data_ptr(), tuple(t.shape), tuple(t.stride()), t.dtype, str(t.device), t._version, tuple(probe))


def prepared_rows(name: str, weight: torch.Tensor, sens: torch.Tensor) -> RowSet:
    """build_rows with a small cache keyed on the tensors' identity, version and checksum.

    The cache holds references to the tensors, so their storage (hence data_ptr)
    cannot be reused by another tensor while the entry lives. Thread-safe.
    """
    key = (name, _fingerprint(weight), _fingerprint(sens))
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit[0]
    rows = build_rows(weight, sens, f"sensitivities[{name!r}]")
    with _CACHE_LOCK:
        _CACHE[key] = (rows, weight, sens)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return rows


def clear_cache() -> None:
    """Drop the cached sorted rows (memory or tests)."""
    with _CACHE_LOCK:
        _CACHE.clear()


# --------------------------------------------------------------------- row stats


def _row_layout(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, 2)


def _summary(bound: torch.Tensor, total: torch.Tensor):
    sig = total > 0
    if not bool(sig.any()) or bool(torch.isnan(bound).all()):
        return math.nan, math.nan
    b = bound[sig]
    return float(b.max()), float(b.mean())


def _sipp_layer_plan(name, rows: RowSet, weight, method, code, m, draws, counts, log_term, c_prime) -> LayerPlan:
    mask, values, kept = assemble(rows, code, m, draws, counts)
    hybrid = method == "sipp-hybrid"
    det_scale = c_prime if hybrid else 1.0
    e_det = eps_det_rows(rows, m) * det_scale
    lt = torch.full((rows.rows,), log_term, dtype=torch.float64)
    bound = torch.where(code == SAMPLED, eps_rand_rows(m, rows.total, lt), e_det)
    bound = torch.where(code == WHOLE, torch.zeros_like(bound), bound)
    bound = torch.where(code == EMPTY, rows.total * det_scale, bound)  # T = 0 rows: 0
    bmax, bmean = _summary(bound, rows.total)
    return LayerPlan(
        name=name, mask=mask.reshape(weight.shape), values=values.reshape(weight.shape),
        row_kept=_row_layout(kept.to(torch.int64)), row_budget=_row_layout(m.to(torch.int64).clone()),
        row_bound=_row_layout(bound), row_method=_row_layout(code.to(torch.int8)),
        kept=int(mask.sum()), total=int(mask.numel()), bound_max=bmax, bound_mean=bmean,
    )


def _baseline_layer_plan(name, weight, mask, values, sampled: bool) -> LayerPlan:
    w2 = as_matrix(weight, f"weights[{name!r}]")
    m2 = mask.reshape(w2.shape)
    pos, neg = w2 > 0, w2 < 0
    kept = torch.stack([(m2 & pos).sum(1), (m2 & neg).sum(1)], 1).to(torch.int64)  # (F, 2)
    length = torch.stack([pos.sum(1), neg.sum(1)], 1)
    code = torch.full(kept.shape, SAMPLED if sampled else DETERMINISTIC, dtype=torch.int8)
    code[kept == length] = WHOLE
    code[kept == 0] = EMPTY
    return LayerPlan(
        name=name, mask=mask.reshape(weight.shape), values=values.reshape(weight.shape).float(), row_kept=kept,
        row_budget=kept.double(), row_bound=torch.full(kept.shape, math.nan, dtype=torch.float64), row_method=code,
        kept=int(mask.sum()), total=int(mask.numel()), bound_max=math.nan, bound_mean=math.nan,
    )


# ---------------------------------------------------------------------- SiPP modes


class _Layer:
    """Per-call state of one SiPP layer: rows, L_l, draws, and m' from the previous evaluation."""

    def __init__(self, name, rows: RowSet, info: LayerInfo, delta: float, seed: int):
        self.name, self.rows = name, rows
        self.log_term = layer_log_term(info.patches, info.kernel_size, delta)
        self.seed = seed
        self._draws_src = None
        self.prev_m = None
        self.prev_draws = None

    @property
    def draws_src(self):
        if self._draws_src is None:  # alias tables are built on first use (sampling only)
            self._draws_src = row_draws(self.rows, self.seed, self.name)
        return self._draws_src

    def draws(self, m: torch.Tensor, sampled: torch.Tensor) -> torch.Tensor:
        """m' for sampled rows, reusing the previous evaluation's answer where m is unchanged."""
        out = torch.zeros(self.rows.rows, dtype=torch.int64)
        if not bool(sampled.any()):
            return out
        todo = sampled.clone()
        start = None
        if self.prev_m is not None:
            same = sampled & (m == self.prev_m) & (self.prev_draws > 0)
            out[same] = self.prev_draws[same]
            todo &= ~same
            start = torch.where(self.prev_draws > 0, self.prev_draws.double(), m.double())
        idx = torch.nonzero(todo)[:, 0]
        if idx.numel():
            st = None if start is None else start[idx]
            out[idx] = draws_for_distinct(torch.index_select(self.rows.p, 0, idx), m[idx].double(), st,
                                          log_q=torch.index_select(self.rows.log_q, 0, idx))
        self.prev_m, self.prev_draws = m.clone(), out.clone()
        return out

    def choose(self, m: torch.Tensor, method: str, c_prime: float, sampled=None) -> torch.Tensor:
        """Method codes for planned m (keep-ratio mode decides hybrid rows here)."""
        if sampled is None:
            if method == "sipp-rand":
                sampled = torch.ones(self.rows.rows, dtype=torch.bool)
            elif method == "sipp-det":
                sampled = torch.zeros(self.rows.rows, dtype=torch.bool)
            else:
                lt = torch.full((self.rows.rows,), self.log_term, dtype=torch.float64)
                sampled = hybrid_choice(eps_det_rows(self.rows, m), eps_rand_rows(m, self.rows.total, lt), c_prime)
        return classify(self.rows, m, sampled)


def _evaluate(layers: list[_Layer], ms: list[torch.Tensor], method, c_prime, sampled=None):
    """Decide, draw and count every layer for given m; returns (realised distinct, per-layer state)."""
    realised, state = 0, []
    for i, (lay, m) in enumerate(zip(layers, ms)):
        code = lay.choose(m, method, c_prime, None if sampled is None else sampled[i])
        is_s = code == SAMPLED
        draws = lay.draws(m, is_s)
        counts = lay.draws_src.counts(draws) if bool(is_s.any()) else None
        fixed = torch.where(code == WHOLE, lay.rows.nnz, torch.where(code == DETERMINISTIC, m, torch.zeros_like(m)))
        realised += int(fixed.sum())
        if counts is not None:
            realised += int(((counts > 0) & is_s[:, None]).sum())
        state.append((code, m, draws, counts))
    return realised, state


def _sipp_plans(method, weights, infos, names, sensitivities, keep_ratio, epsilon, delta, seed, allocation, c_prime):
    rows = {n: prepared_rows(n, weights[n], sensitivities[n]) for n in names}
    layers = [_Layer(n, rows[n], infos[n], delta, seed) for n in names]
    if epsilon is not None:
        ms, sampled = [], []
        for lay in layers:
            m, s = epsilon_rows(lay.rows, method, epsilon, lay.log_term, c_prime)
            ms.append(m)
            sampled.append(s)
        _, state = _evaluate(layers, ms, method, c_prime, sampled)
    else:
        total = sum(weights[n].numel() for n in names)
        budget = keep_budget(keep_ratio, total)
        sizes = [lay.rows.rows for lay in layers]
        t_all = torch.cat([lay.rows.total for lay in layers])
        z_all = torch.cat([lay.rows.nnz for lay in layers])
        l_all = torch.cat([torch.full((r,), lay.log_term, dtype=torch.float64) for lay, r in zip(layers, sizes)])
        w_all = torch.cat([torch.full((r,), 1.0 / lay.rows.out_units, dtype=torch.float64) for lay, r in zip(layers, sizes)])

        def split(m_all):
            return list(torch.from_numpy(m_all).split(sizes))

        if method == "sipp-det" and allocation == "global":
            scores = [torch.where(lay.rows.weight != 0, as_matrix(sensitivities[n], n), torch.zeros(())) for n, lay in zip(names, layers)]
            masks = global_topk(scores, budget, positive_only=True)
            ms = []
            for lay, mk in zip(layers, masks):
                w2 = lay.rows.weight
                ms.append(torch.stack([(mk & (w2 > 0)).sum(1), (mk & (w2 < 0)).sum(1)], 1).reshape(-1))
            _, state = _evaluate(layers, ms, method, c_prime)
        elif method == "sipp-det":
            ms = split(bound_optimal_allocation(t_all, z_all, l_all, w_all, budget))
            _, state = _evaluate(layers, ms, method, c_prime)
        else:
            def evaluate(nominal):
                return _evaluate(layers, split(bound_optimal_allocation(t_all, z_all, l_all, w_all, nominal)),
                                 method, c_prime)

            _, _, state = search_budget(evaluate, budget, upper=int(z_all.sum()), rel_tol=REALISED_REL_TOL)
    out = {}
    for n, lay, (code, m, draws, counts) in zip(names, layers, state):
        out[n] = _sipp_layer_plan(n, lay.rows, weights[n], method, code, m, draws, counts, lay.log_term, c_prime)
    return out


# ------------------------------------------------------------------------ make_plan


def make_plan(
    method: str,
    weights: dict[str, torch.Tensor],
    infos: dict[str, LayerInfo],
    *,
    keep_ratio: float | None = None,
    epsilon: float | None = None,
    delta: float = 1e-16,
    seed: int = 0,
    sensitivities: dict | None = None,
    snip_scores: dict | None = None,
    allocation: str = "global",
    c_prime: float = 3.0,
) -> dict[str, LayerPlan]:
    """Plan masks and values for every layer in ``weights`` (in the order of ``infos``).

    Args:
        method: one of METHODS.
        weights: {layer name: weight tensor}; every name must be in ``infos``.
        infos: {layer name: LayerInfo} (layers.layer_infos); gives P_l and k_l for L_l.
        keep_ratio: share of prunable weights to keep, in (0, 1] (budget B = round(kappa N)), or
        epsilon: the per-row error target, > 0 (SiPP methods only).
        delta: failure probability in (0, 1); enters L_l in both modes (docs/sipp.md §8.4).
        seed: seeds every random choice; the same arguments give identical plans.
        sensitivities: {name: tensor shaped like the weight}; required by the SiPP methods.
        snip_scores: {name: tensor shaped like the weight}; required by "snip".
        allocation: sipp-det in keep-ratio mode only: "global" (the authors' global top-B)
            or "bound-optimal" (docs/sipp.md §8.1). Other methods and epsilon mode ignore it.
        c_prime: C' of the hybrid rule (docs/sipp.md §8.2); used by sipp-hybrid only.

    Returns: {name: LayerPlan}. Raises: ValueError naming the bad argument and its range.

    >>> plans = make_plan("sipp-rand", w, infos, keep_ratio=0.1, sensitivities=s)   # doctest: +SKIP
    >>> sum(p.kept for p in plans.values()) / sum(p.total for p in plans.values())  # doctest: +SKIP
    """
    _check_args(method, keep_ratio, epsilon, delta, seed, allocation, c_prime)
    names = _check_layers(weights, infos, sensitivities, method in SIPP_METHODS)
    return _make_plan(method, weights, infos, names, keep_ratio, epsilon, delta, seed, sensitivities, snip_scores,
                      allocation, c_prime)


def _make_plan(method, weights, infos, names, keep_ratio, epsilon, delta, seed, sensitivities, snip_scores,
               allocation, c_prime):
    if method in SIPP_METHODS:
        return _sipp_plans(method, weights, infos, names, sensitivities, keep_ratio, epsilon, delta, seed,
                           allocation, c_prime)
    ws = {n: weights[n] for n in names}
    sampled = False
    if method == "wt":
        res = wt_plan(ws, keep_ratio)
    elif method == "layerwise":
        res = layerwise_plan(ws, keep_ratio)
    elif method == "snip":
        if not isinstance(snip_scores, dict):
            raise ValueError("snip_scores are required for method 'snip' (baselines.snip_scores(model, inputs, labels))")
        res = snip_plan(ws, snip_scores, keep_ratio)
    elif method == "random":
        res = random_plan(ws, keep_ratio, seed)
    else:  # uniform
        res, _, _ = uniform_plan(ws, keep_ratio, seed, REALISED_REL_TOL)
        sampled = True
    return {n: _baseline_layer_plan(n, ws[n], res[n][0], res[n][1], sampled) for n in names}


def realised_keep_ratio(plans: dict[str, LayerPlan]) -> float:
    """Kept prunable weights over all prunable weights of a plan."""
    total = sum(p.total for p in plans.values())
    return sum(p.kept for p in plans.values()) / total if total else 0.0


def implied_bounds(plans: dict[str, LayerPlan], weights: dict[str, torch.Tensor], sensitivities: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The deterministic yardstick for ANY plan: per row, the sum of s over its pruned weights.

    For a mask without reweighting (WT, layer-wise, SNIP, random, sipp-det) this is
    eps_det of that mask: it holds exactly on every point of S with the max patch
    reduction, as for deterministic SiPP. For reweighted (sampled) plans it is only
    a measure of how much sensitivity was dropped, not a bound. Rows are (unit, sign)
    by the sign of the original weight. Returns {name: (F, 2) float64}.
    """
    out = {}
    for n, plan in plans.items():
        w2 = as_matrix(weights[n], f"weights[{n!r}]")
        s2 = check_sensitivity(sensitivities[n], weights[n], f"sensitivities[{n!r}]").double()
        pruned = ~plan.mask.reshape(w2.shape)
        out[n] = torch.stack([(s2 * (pruned & (w2 > 0))).sum(1), (s2 * (pruned & (w2 < 0))).sum(1)], 1)
    return out
