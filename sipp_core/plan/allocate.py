"""Budget allocation (docs/sipp.md §5 and §8): how many weights each row keeps.

Keep-ratio mode, budget B = round(kappa * prunable weights):

- deterministic SiPP, allocation "global" (the authors'): one global top-B over
  all sensitivities (:func:`global_topk`; weights with s = 0 are never kept, so
  ties at zero may leave the plan under B);
- sampling, hybrid, and deterministic with allocation "bound-optimal":
  minimise  sum_l (1 / F_l) sum_{r in l} eps_rand(m_r)  s.t.  sum m_r <= B,
  0 <= m_r <= nnz_r  (:func:`bound_optimal_allocation`). The objective is
  separable and convex, so for a multiplier lambda each row's optimum solves
  w_l * (-d eps_rand / dm) = lambda, which has a closed form here (a cubic in
  eps, see :func:`eps_for_gain`); lambda is found by a bracketing root finder so
  that the clipped m sum to B; the result is floored and the leftover budget is
  handed out one weight at a time to the rows whose bound drops most (docs/sipp.md §8.6),
  so the plan never exceeds B.
- sampling realises fewer (or more) distinct weights than planned, so the
  nominal budget is searched until the realised count is within 0.5% (relative)
  of B (:func:`search_budget`, docs/sipp.md §5 and 8.5).

Epsilon mode (:func:`epsilon_rows`): every row gets the smallest m that meets eps.

The bound formulas themselves (L_l, eps_rand, m(eps)) come from ``bounds.py``.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from . import bounds as _bounds
from .bounds import m_for_eps_rows
from .sparsify import RowSet, det_m_for_eps

# ------------------------------------------------------------------ bound formulas


def layer_log_term(patches: int, kernel_size: int, delta: float) -> float:
    """L_l = ln(8 (P_l + 1) k_l / delta) (docs/sipp.md §3), from bounds.log_term."""
    return float(_bounds.log_term(patches, kernel_size, delta))


def _eps_rand_np(m: np.ndarray, a: np.ndarray) -> np.ndarray:
    """eps_rand with a = 2 L T (u = a / m), numpy, for the allocator's inner loops; inf at m = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        u = a / m
        e = 0.5 * (u + np.sqrt(u * u + 6.0 * u))
    return np.where(m > 0, e, np.inf)


# ------------------------------------------------------------- Lagrangian solution


def eps_for_gain(c: np.ndarray) -> np.ndarray:
    """The positive root e of e^3 / (e + 3) = c (c > 0), vectorised.

    With u = 2 L T / m and eps = eps_rand(m), m = L T (3 + 2 eps) / eps^2, so
    dm/deps = -2 L T (eps + 3) / eps^3 and the marginal gain of a row is
    w (-d eps / dm) = w eps^3 / (2 L T (eps + 3)). Setting it to lambda gives
    e^3 - c e - 3 c = 0 with c = 2 L T lambda / w: Cardano's formula where it has
    one real root (c <= 243/4), the trigonometric form otherwise, then two
    Newton steps to polish.
    """
    c = np.asarray(c, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        disc = (1.5 * c) ** 2 - (c / 3.0) ** 3
        u = np.cbrt(1.5 * c + np.sqrt(np.maximum(disc, 0.0)))
        e1 = u + c / (3.0 * u)  # the second cube root is c / (3 u): no cancellation
        arg = np.clip(4.5 * np.sqrt(3.0 / c), -1.0, 1.0)
        e2 = 2.0 * np.sqrt(c / 3.0) * np.cos(np.arccos(arg) / 3.0)
        e = np.where(disc >= 0, e1, e2)
        for _ in range(2):
            f = e**3 - c * e - 3.0 * c
            df = 3.0 * e * e - c
            e = np.where(df > 0, e - f / df, e)
    return e


def marginal_gain(m, total, log_term, weight) -> np.ndarray:
    """w * (-d eps_rand / dm) at m (the objective's marginal gain per weight), numpy float64."""
    m = np.asarray(m, dtype=np.float64)
    a = 2.0 * np.asarray(log_term, dtype=np.float64) * np.asarray(total, dtype=np.float64)
    e = _eps_rand_np(m, a)
    return np.asarray(weight, dtype=np.float64) * e**3 / (a * (e + 3.0))


def _m_of_lambda(lam: float, a: np.ndarray, w: np.ndarray, nnz: np.ndarray) -> np.ndarray:
    e = eps_for_gain(a * lam / w)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        m = 0.5 * a * (3.0 + 2.0 * e) / (e * e)  # = L T (3 + 2 e) / e^2; inf at lambda = 0
    return np.clip(np.nan_to_num(m, nan=np.inf), 0.0, nnz)


def _illinois(f: Callable[[float], float], lo: float, hi: float, f_lo: float, f_hi: float, xtol: float, iters: int = 200):
    """Root of a monotone f on [lo, hi] with f(lo), f(hi) of opposite signs (Illinois regula falsi)."""
    side = 0
    for _ in range(iters):
        if hi - lo <= xtol:
            break
        x = hi - f_hi * (hi - lo) / (f_hi - f_lo)
        if not (lo < x < hi):
            x = 0.5 * (lo + hi)
        fx = f(x)
        if fx == 0:
            return x, x, fx, fx
        if (fx > 0) == (f_lo > 0):
            lo, f_lo = x, fx
            if side == -1:
                f_hi *= 0.5
            side = -1
        else:
            hi, f_hi = x, fx
            if side == 1:
                f_lo *= 0.5
            side = 1
    return lo, hi, f_lo, f_hi


def _as_np(x, dtype=np.float64) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype).reshape(-1)


def continuous_allocation(total, nnz, log_term, weight, budget: float) -> tuple[np.ndarray, float]:
    """The exact continuous optimum of the section-5 problem and its multiplier lambda.

    Rows are flat vectors (any layout) of T, nnz, L and w = 1 / F_l. Returns
    (m (float64, sum <= budget up to round-off), lambda); lambda = 0 when every
    row can be kept whole.
    """
    t, z = _as_np(total), _as_np(nnz)
    lt, w = _as_np(log_term), _as_np(weight)
    active = (t > 0) & (z > 0)
    m = np.zeros_like(t)
    if not active.any() or budget <= 0:
        return m, math.inf
    a, wa, za = 2.0 * lt[active] * t[active], w[active], z[active]
    if budget >= za.sum():
        m[active] = za
        return m, 0.0
    gain_at_full = marginal_gain(za, t[active], lt[active], wa)  # lambda at which each row is just whole
    f = lambda x: float(_m_of_lambda(math.exp(x), a, wa, za).sum() - budget)  # noqa: E731 decreasing in x
    lo = math.log(max(float(gain_at_full.min()), 1e-300))
    f_lo = f(lo)
    hi = math.log(max(float(gain_at_full.max()), 1e-300)) + 1.0
    f_hi = f(hi)
    while f_hi > 0:
        hi += 4.0 + 0.5 * abs(hi)
        f_hi = f(hi)
    while f_lo < 0:
        lo -= 4.0 + 0.5 * abs(lo)
        f_lo = f(lo)
    lo, hi, f_lo, f_hi = _illinois(f, lo, hi, f_lo, f_hi, xtol=1e-13 * max(1.0, abs(hi)))
    lam = math.exp(hi)  # the side whose sum does not exceed the budget
    m[active] = _m_of_lambda(lam, a, wa, za)
    return m, lam


def round_allocation(m_cont, total, nnz, log_term, weight, budget: int) -> np.ndarray:
    """Integer m <= nnz with sum <= budget: floor m_cont, then give the leftover budget one
    weight at a time to the rows whose w * eps_rand drops most (docs/sipp.md §8.6).

    The objective is separable and convex in m, so taking the largest single-weight
    drops first is the greedy optimum from the floors. Returns int64 numpy.
    """
    t, z = _as_np(total), _as_np(nnz, np.int64)
    lt, w = _as_np(log_term), _as_np(weight)
    m = np.minimum(np.floor(_as_np(m_cont) + 1e-9), z).astype(np.int64)
    active = (t > 0) & (z > 0)
    m[~active] = 0
    left = int(budget) - int(m.sum())
    while left < 0:  # round-off pushed the floors over: take back the cheapest weights
        cand = np.nonzero(m > 0)[0]
        cost = w[cand] * (_eps_rand_np(m[cand] - 1.0, 2 * lt[cand] * t[cand]) - _eps_rand_np(m[cand] * 1.0, 2 * lt[cand] * t[cand]))
        take = cand[np.argsort(cost, kind="stable")[: -left]]
        m[take] -= 1
        left = int(budget) - int(m.sum())
    rows = np.nonzero(active & (m < z))[0]
    if left == 0 or rows.size == 0:
        return m
    a = 2.0 * lt[rows] * t[rows]
    depth = 2
    while True:
        k = np.arange(1, depth + 1)[None, :]  # candidate increments per row
        base = m[rows][:, None].astype(np.float64)
        before = _eps_rand_np(base + k - 1, a[:, None])
        after = _eps_rand_np(base + k, a[:, None])
        with np.errstate(invalid="ignore"):
            drop = w[rows][:, None] * (before - after)
        drop = np.where(np.isinf(before), np.inf, drop)
        drop = np.where(base + k <= z[rows][:, None], drop, -np.inf)
        flat = drop.reshape(-1)
        order = np.argsort(-flat, kind="stable")[:left]
        order = order[flat[order] > -np.inf]  # never past nnz
        took = np.bincount(order // depth, minlength=rows.size)
        if not np.any((took == depth) & (m[rows] + depth < z[rows])) or depth >= left:
            m[rows] += took
            return m
        depth *= 4


def bound_optimal_allocation(total, nnz, log_term, weight, budget: int) -> np.ndarray:
    """The section-5 allocation: exact continuous optimum, then docs/sipp.md §8.6 rounding. int64 numpy."""
    m_cont, _ = continuous_allocation(total, nnz, log_term, weight, budget)
    return round_allocation(m_cont, total, nnz, log_term, weight, budget)


def allocation_objective(m, total, nnz, log_term, weight) -> float:
    """sum_r w_r eps_rand(m_r) over rows with signal (inf when such a row has m = 0)."""
    t, lt, w = _as_np(total), _as_np(log_term), _as_np(weight)
    z = _as_np(nnz)
    active = (t > 0) & (z > 0)
    e = _eps_rand_np(_as_np(m)[active], 2.0 * lt[active] * t[active])
    return float((w[active] * e).sum())


# ------------------------------------------------------------------- global top-B


def global_topk(scores: list[torch.Tensor], budget: int, *, positive_only: bool = False) -> list[torch.Tensor]:
    """One top-``budget`` over all tensors together; ties broken by position (earlier tensor,
    then lower flat index, first). ``positive_only`` never keeps a score <= 0 (the result
    may then stay under budget). Returns bool masks shaped like the scores.
    """
    flat = torch.cat([s.detach().reshape(-1).to("cpu", torch.float32) for s in scores])
    n = flat.numel()
    budget = int(max(0, min(budget, n)))
    keep = torch.zeros(n, dtype=torch.bool)
    if budget > 0:
        thr = torch.kthvalue(flat, n - budget + 1).values  # the budget-th largest score
        keep = flat > thr
        need = budget - int(keep.sum())
        if need > 0:
            ties = torch.nonzero(flat == thr)[:, 0][:need]
            keep[ties] = True
        if positive_only:
            keep &= flat > 0
    out, at = [], 0
    for s in scores:
        out.append(keep[at : at + s.numel()].reshape(s.shape))
        at += s.numel()
    return out


def largest_remainder(sizes: list[int], ratio: float, budget: int) -> list[int]:
    """Split ``budget`` over groups in proportion ratio * size, summing exactly to budget
    (floors, then the largest remainders), each at most its size."""
    want = np.asarray(sizes, dtype=np.float64) * ratio
    base = np.minimum(np.floor(want).astype(np.int64), np.asarray(sizes, dtype=np.int64))
    left = int(budget) - int(base.sum())
    if left > 0:
        room = np.asarray(sizes) - base
        order = [i for i in np.argsort(-(want - base), kind="stable") if room[i] > 0]
        for i in order[:left]:
            base[i] += 1
    return [int(b) for b in base]


# ------------------------------------------------------------------ epsilon mode


def epsilon_rows(rows: RowSet, method: str, epsilon: float, log_term: float, c_prime: float = 3.0):
    """Per-row m for a target epsilon (docs/sipp.md §5, epsilon mode) and whether the row is sampled.

    deterministic: the smallest m with eps_det(m) <= eps; sampling: m(eps) capped at
    nnz; hybrid: the smaller of the two, its deterministic side measured as
    C' * eps_det (the smallest m with eps_det(m) <= eps / C'); ties go deterministic.
    Returns (m (R,) int64, sampled (R,) bool).
    """
    if method == "sipp-det":
        return det_m_for_eps(rows, epsilon), torch.zeros(rows.rows, dtype=torch.bool)
    lt = torch.full((rows.rows,), float(log_term), dtype=torch.float64)
    m_rand = torch.minimum(m_for_eps_rows(epsilon, rows.total, lt), rows.nnz)
    if method == "sipp-rand":
        return m_rand, m_rand < rows.nnz
    if method == "sipp-hybrid":
        m_det = det_m_for_eps(rows, epsilon / c_prime)
        sampled = m_rand < m_det
        return torch.where(sampled, m_rand, m_det), sampled
    raise ValueError(f"method must be one of sipp-det, sipp-rand, sipp-hybrid for epsilon mode; got {method!r}")


# --------------------------------------------------------------- realised ratio


def search_budget(evaluate: Callable[[int], tuple[int, object]], target: int, *, upper: int, rel_tol: float = 0.005,
                  max_evals: int = 24):
    """Search the nominal budget until the realised count is within rel_tol * target of target.

    ``evaluate(nominal) -> (realised, payload)`` must be deterministic and roughly
    increasing in ``nominal`` (nested draws make it monotone up to method switches).
    Starts at nominal = target, steps by the miss while only one side is known, then
    interpolates inside the bracket. Returns (nominal, realised, payload) of the closest
    evaluation (the first within tolerance). The tolerance cannot be met when it is
    below one weight and no nominal budget lands exactly (tiny nets), or when the
    target exceeds what the method can realise (``upper``); then the closest is returned.
    """
    tol = rel_tol * target
    seen: dict[int, int] = {}
    best = None
    lo = hi = None  # (nominal, realised) below / above the target
    nominal = int(min(max(target, 0), upper))
    for _ in range(max_evals):
        realised, payload = evaluate(nominal)
        seen[nominal] = realised
        err = realised - target
        if best is None or abs(err) < abs(best[1] - target):
            best = (nominal, realised, payload)
        if abs(err) <= tol:
            break
        if err < 0:
            lo = (nominal, realised) if lo is None or nominal > lo[0] else lo
        else:
            hi = (nominal, realised) if hi is None or nominal < hi[0] else hi
        if lo is not None and hi is not None:
            if hi[0] - lo[0] <= 1:
                break
            span = hi[1] - lo[1]
            guess = lo[0] + (target - lo[1]) * (hi[0] - lo[0]) / span if span > 0 else 0.5 * (lo[0] + hi[0])
            nxt = int(round(min(max(guess, lo[0] + 1), hi[0] - 1)))
            if nxt in seen:
                nxt = (lo[0] + hi[0]) // 2
        else:
            nxt = nominal - err
            nxt = nominal + (1 if err < 0 else -1) if nxt == nominal else nxt
            nxt = int(min(max(nxt, 0), upper))
        if nxt in seen:
            break
        nominal = nxt
    return best
