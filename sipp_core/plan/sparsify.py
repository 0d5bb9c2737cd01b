"""Sparsifying rows (docs/sipp.md §4): which weights a row keeps, and their new values.

A row is one (output unit f, sign sigma) pair of a weight viewed as F x J
(docs/sipp.md §1). Per-row tensors in the public API are shaped (F, 2): column 0
holds the positive weights' row, column 1 the negative weights' row.

Internally a layer's rows live in a :class:`RowSet`: the 2F rows (row r = 2f + c)
with their weights of positive sensitivity sorted by sensitivity, descending,
ties by lower column index first. That one sort serves every question a plan
asks: the deterministic top-m (a prefix), eps_det(m) (a suffix sum, read off a
table) and the sampling distribution p_j = s_j / T (alias tables, built once per
cached RowSet, make a draw O(1)). Weights with s = 0
carry no signal on S and are never kept by SiPP (docs/sipp.md §8.7); weights equal to
zero belong to no row.

Three sparsifiers, vectorised over rows:

- deterministic: keep the m largest s of the row, values unchanged;
- sampling: draw m' times with replacement from p_j = s_j / T, where m' makes the
  expected number of distinct weights sum_j [1 - (1 - p_j)^m'] about m
  (:func:`draws_for_distinct`); a drawn weight becomes W_j * count_j / (m' p_j),
  an unbiased estimate of the row's pre-activation. m >= nnz keeps the row's
  s > 0 weights; m < 1 empties the row;
- hybrid: per row, sampling where C' * eps_det(m) > eps_rand(m), deterministic
  otherwise (ties and whole rows deterministic).

Randomness: every draw comes from a ``torch.Generator`` (and, for rows that need
very many draws, a numpy ``Generator``) seeded from (seed, layer name), so the
same seed gives identical masks and values. Draws are *nested*: a row's first k
draws are the same whatever larger k is asked for later, so a search over
budgets sees realised counts that only grow with the budget.

>>> mask, values = sparsify_deterministic(w, s, m)            # doctest: +SKIP
>>> mask, values = sparsify_sampling(w, s, m, seed=0)         # doctest: +SKIP
"""
from __future__ import annotations

import functools
import math
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from . import bounds as _bounds
from .bounds import eps_rand_rows

# row_method codes (shared with planner.LayerPlan.row_method)
DETERMINISTIC, SAMPLED, WHOLE, EMPTY = 0, 1, 2, 3

# A row whose m' exceeds this many draws per weight (plus a constant) is drawn with
# numpy's conditional-binomial multinomial (cost O(nnz)) instead of m' explicit draws.
_BIG_FACTOR = 4
_BIG_EXTRA = 16
_MAX_DRAWS = 2**53  # m' is capped here (p_j below ~1e-16 of a row cannot be reached anyway)


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True, eq=False)
class RowSet:
    """One layer's 2F rows in sorted, compact form (row r = 2f + c, c = 0 for +, 1 for -).

    Only weights with W != 0 and s > 0 are stored; column i of a row is its
    (i+1)-th largest sensitivity (ties: lower column index j first).
    """

    out_units: int  # F
    fan_in: int  # J
    s: torch.Tensor  # (R, n) float64 sorted sensitivities, 0 padding
    col: torch.Tensor  # (R, n) int64 column j in the F x J view (0 on padding)
    dest: torch.Tensor  # (R, n) int64 flat index f * J + j in the F x J view (F * J on padding)
    w: torch.Tensor  # (R, n) float32 the weights at those positions (0 on padding)
    p: torch.Tensor  # (R, n) float64 sampling probabilities s_j / T (0 on padding and rows without signal)
    log_q: torch.Tensor  # (R, n) float64 log(1 - p): the chance a draw misses the weight, in logs
    nnz: torch.Tensor  # (R,) int64 weights with s > 0 in the row
    total: torch.Tensor  # (R,) float64 T = sum of the row's s
    suffix: torch.Tensor  # (R, n + 1) float64: suffix[r, m] = eps_det(m) = sum of s after the top m
    weight: torch.Tensor  # (F, J) float32 the original weight

    @property
    def rows(self) -> int:
        return self.s.shape[0]

    @property
    def width(self) -> int:
        return self.s.shape[1]

    @functools.cached_property
    def alias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Walker alias tables of p (built on first use, then kept with the cached rows)."""
        return alias_table(self.p, self.nnz)


def as_matrix(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """A weight-shaped tensor viewed as F x J on the CPU in float32."""
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor; got {type(tensor).__name__}")
    if tensor.ndim < 1 or tensor.numel() == 0:
        raise ValueError(f"{name} must be a non-empty tensor with at least one dimension; got shape {tuple(tensor.shape)}")
    return tensor.detach().reshape(tensor.shape[0], -1).to("cpu", torch.float32)


def check_sensitivity(sens: torch.Tensor, weight: torch.Tensor, name: str = "sensitivities") -> torch.Tensor:
    """Validate a sensitivity tensor against its weight; return it as F x J float32."""
    if not isinstance(sens, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor shaped like the weight; got {type(sens).__name__}")
    if tuple(sens.shape) != tuple(weight.shape):
        raise ValueError(f"{name} must be shaped like the weight {tuple(weight.shape)}; got {tuple(sens.shape)}")
    s = as_matrix(sens, name) + 0.0  # + 0.0 turns -0.0 into 0.0
    if not bool(torch.isfinite(s).all()):
        raise ValueError(f"{name} must be finite (no nan or inf)")
    if bool((s < 0).any()):
        raise ValueError(f"{name} must be non-negative (>= 0)")
    return s


def build_rows(weight: torch.Tensor, sens: torch.Tensor, name: str = "sensitivities") -> RowSet:
    """Sort a layer's rows by sensitivity (the one O(F J log J) step of planning).

    The sort, T, nnz and the eps_det table come from ``bounds.sorted_rows`` (the
    single source of eps_det); this adds the compact layout and the sampling
    quantities. ``name`` labels the sensitivity tensor in error messages.
    """
    w2 = as_matrix(weight, "weight")
    check_sensitivity(sens, weight, name)  # named messages before bounds' own checks
    sr = _bounds.sorted_rows(sens.detach().to("cpu"), weight.detach().to("cpu"))  # (F, 2, n_row)
    f_units, j = w2.shape
    r = 2 * f_units
    nnz = sr.nnz.reshape(r).to(torch.int64)  # row r = 2 f + c
    n = max(1, int(nnz.max()))
    valid = torch.arange(n)[None, :] < nnz[:, None]  # (R, n): the row's weights with s > 0
    vals = torch.where(valid, sr.s.reshape(r, -1)[:, :n], torch.zeros((), dtype=torch.float64))
    cols = torch.where(valid, sr.col.reshape(r, -1)[:, :n], torch.zeros((), dtype=torch.int64))
    suffix = sr.tail.reshape(r, -1)[:, : n + 1].contiguous()  # eps_det(m) for m = 0..n (0 from nnz on)
    unit = torch.arange(r) // 2
    dest = torch.where(valid, unit[:, None] * j + cols, torch.full((), f_units * j, dtype=torch.int64))
    wv = torch.where(valid, torch.take(w2, unit[:, None] * j + cols), torch.zeros((), dtype=torch.float32))
    total = sr.total.reshape(r).clone()
    t = torch.where(total > 0, total, torch.ones_like(total))[:, None]
    p = vals / t
    return RowSet(
        out_units=f_units, fan_in=j, s=vals, col=cols, dest=dest, w=wv, p=p, log_q=torch.log1p(-p),
        nnz=nnz, total=total, suffix=suffix, weight=w2,
    )


def to_rows(t: torch.Tensor, name: str, dtype=torch.int64) -> torch.Tensor:
    """An (F, 2) per-row tensor (or anything with 2F elements) as a flat (2F,) tensor."""
    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(t)
    if t.ndim != 2 or t.shape[1] != 2:
        raise ValueError(f"{name} must be shaped (F, 2) (column 0: positive row, column 1: negative row); got {tuple(t.shape)}")
    return t.reshape(-1).to(dtype)


def eps_det_rows(rows: RowSet, m: torch.Tensor) -> torch.Tensor:
    """(R,) float64 eps_det(m_r) = sum of s over the weights a top-m_r row prunes."""
    idx = m.to(torch.int64).clamp(0, rows.width)
    return rows.suffix.gather(1, idx[:, None])[:, 0]


def det_m_for_eps(rows: RowSet, eps: float) -> torch.Tensor:
    """(R,) int64 the smallest m with eps_det(m) <= eps (0 for rows without signal)."""
    return (rows.suffix[:, :-1] > eps).sum(dim=1)


# --------------------------------------------------------------- expected distinct


def expected_distinct(p: torch.Tensor, k) -> torch.Tensor:
    """Expected number of distinct weights in k draws: sum_j [1 - (1 - p_j)^k] per row.

    p: (R, n) or (n,) probabilities; k: draws per row (scalar or (R,)).
    """
    p = torch.as_tensor(p, dtype=torch.float64)
    squeeze = p.ndim == 1
    p = p.reshape(1, -1) if squeeze else p
    k = torch.as_tensor(k, dtype=torch.float64).reshape(-1)
    k = k.expand(p.shape[0]) if k.numel() == 1 else k
    e = -torch.expm1(k[:, None] * torch.log1p(-p)).sum(dim=1)
    return e[0] if squeeze else e


def draws_for_distinct(p: torch.Tensor, m: torch.Tensor, start: torch.Tensor | None = None, *,
                       log_q: torch.Tensor | None = None) -> torch.Tensor:
    """m' per row: the whole number of draws whose expected distinct count is closest to m.

    E(k) = sum_j [1 - (1 - p_j)^k] is increasing and concave in k, so Newton's
    method started left of the root climbs to it monotonically (a vectorised
    bisection would need about 50 passes over the rows; Newton needs a handful).
    Start: the root for uniform p over the row's nnz weights, a lower bound by
    concavity (Jensen), or ``start`` (an earlier answer) where larger: a start
    right of the root lands left of it after one step. Rows need 1 <= m < nnz.

    p: (R, n) probabilities (rows sum to 1 over their positive entries); m: (R,).
    log_q: log(1 - p), if the caller has it. Returns (R,) int64, each >= 1 (capped at 2**53).
    """
    p = torch.as_tensor(p, dtype=torch.float64)
    m = torch.as_tensor(m, dtype=torch.float64).reshape(-1)
    if p.ndim != 2 or p.shape[0] != m.shape[0]:
        raise ValueError(f"p must be (R, n) and m (R,); got {tuple(p.shape)} and {tuple(m.shape)}")
    if m.numel() == 0:
        return torch.empty(0, dtype=torch.int64)
    lq = torch.log1p(-p) if log_q is None else log_q  # (R, n); 0 on padding
    width = float(p.shape[1])
    nnz = (p > 0).sum(dim=1).double()
    uni = torch.log1p(-m / nnz.clamp_min(2.0)) / torch.log1p(-1.0 / nnz.clamp_min(2.0))  # uniform-p root
    k = torch.maximum(torch.nan_to_num(uni, nan=0.0, posinf=float(_MAX_DRAWS)), m)
    if start is not None:
        k = torch.maximum(k, torch.as_tensor(start, dtype=torch.float64).reshape(-1))
    out = torch.empty_like(m)
    active = torch.arange(m.shape[0])
    lq_a, m_a, k_a = lq, m, k
    for _ in range(200):
        q = torch.mul(lq_a, k_a[:, None]).exp_()  # (A, n) chance a weight is never drawn; 1 on padding
        e = width - q.sum(dim=1)
        de = -q.mul_(lq_a).sum(dim=1)  # E'(k) > 0
        gap = m_a - e
        k_new = torch.maximum(k_a + gap / de.clamp_min(1e-300), m_a).clamp(max=float(_MAX_DRAWS))
        done = (gap.abs() <= 1e-7 * m_a) | ((k_new - k_a).abs() <= 1e-6 * k_a.clamp_min(1.0)) | (k_new >= _MAX_DRAWS)
        out[active[done]] = k_new[done]
        keep = torch.nonzero(~done)[:, 0]
        if keep.numel() == 0:
            break
        if keep.numel() < done.numel():
            active, lq_a, m_a = active[keep], torch.index_select(lq_a, 0, keep), m_a[keep]
            k_new = k_new[keep]
        k_a = k_new
    else:
        out[active] = k_a  # did not converge in 200 steps: the last (lower) iterate
    # the nearer of the two whole numbers around the root: one pass gives both
    lo = torch.floor(out)
    q_lo = torch.mul(lq, lo[:, None]).exp_()  # (R, n)
    e_lo = width - q_lo.sum(dim=1)
    e_hi = width - q_lo.mul_(1.0 - p).sum(dim=1)
    pick = torch.where((e_hi - m).abs() < (m - e_lo).abs(), lo + 1, lo)
    return pick.clamp(1, _MAX_DRAWS).to(torch.int64)


# -------------------------------------------------------------------- nested draws


def layer_seed(seed: int, name: str, purpose: int) -> np.random.SeedSequence:
    """The seed sequence of one layer's draws: a function of (seed, layer name, purpose) only,
    so adding or reordering other layers does not change a layer's draws."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not (0 <= int(seed) < 2**63):
        raise ValueError(f"seed must be an integer in [0, 2**63); got {seed!r}")
    return np.random.SeedSequence([int(seed), zlib.crc32(name.encode("utf-8")), int(purpose)])


def alias_table(p: torch.Tensor, nnz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Walker alias tables for many rows at once, so that a draw costs O(1) instead of a search.

    p: (R, n) rows whose first nnz[r] entries are positive and sorted descending (the
    RowSet layout), each summing to 1. With q = nnz * p, the "heavy" entries (q >= 1)
    form a prefix and the "light" ones (q < 1) the rest. Laying the heavies' excesses
    q - 1 and the lights' deficits 1 - q end to end (cumulative sums E and D), light k
    takes as alias the first heavy whose cumulative excess exceeds the deficit consumed
    before k, and a heavy that runs dry keeps 1 minus its overshoot and aliases the next
    heavy: Vose's sequential algorithm, vectorised with two per-row searches.

    Returns (prob (R, n) float64, alias (R, n) int64): a draw picks column i uniformly
    among the row's nnz, keeps it with probability prob[i], else takes alias[i].
    """
    rows_, n = p.shape
    nnz = nnz.to(torch.int64)
    idx = torch.arange(n)[None, :]
    valid = idx < nnz[:, None]
    zero = torch.zeros((), dtype=torch.float64)
    q = p.to(torch.float64) * nnz[:, None].to(torch.float64)
    heavy = valid & (q >= 1.0)
    light = valid & ~heavy
    nh = heavy.sum(dim=1)
    hmax = max(1, int(nh.max()))
    de = torch.where(light, 1.0 - q, zero)
    d_cum = de.cumsum(dim=1)  # (R, n); 0 over the heavy prefix
    hidx = torch.arange(hmax)[None, :]
    e_cum = torch.where(heavy[:, :hmax], q[:, :hmax] - 1.0, zero).cumsum(dim=1)  # (R, hmax)
    e_cum = torch.where(hidx < nh[:, None], e_cum, torch.full((), math.inf, dtype=torch.float64))
    last = (nh - 1).clamp_min(0)[:, None]
    t = torch.minimum(torch.searchsorted(e_cum, (d_cum - de).contiguous(), right=True), last)  # (R, n)
    k = torch.searchsorted(d_cum, e_cum.contiguous()).clamp_max(n - 1)  # (R, hmax)
    over = d_cum.gather(1, k) - e_cum
    exhausted = (hidx < last) & (e_cum < d_cum[:, -1:])
    prob = torch.where(light, q, torch.ones((), dtype=torch.float64))
    prob[:, :hmax] = torch.where(exhausted, 1.0 - over, prob[:, :hmax])
    alias = torch.where(light, t, idx.expand(rows_, n))
    alias[:, :hmax] = torch.where(exhausted, hidx + 1, alias[:, :hmax])
    return torch.where(valid, prob.clamp(0.0, 1.0), zero), alias


class NestedDraws:
    """Multinomial draws for many rows at once, nested in the number of draws.

    Row r's k-th draw is fixed once made: counts(k) uses the first k[r] draws of
    each row, so counts only grow with k. A draw takes one seeded uniform u: column
    i = floor(u nnz) and the fraction left over decide through the row's alias table
    (Walker). A row asked for more than ``_BIG_FACTOR * nnz + _BIG_EXTRA`` draws is
    instead drawn whole by numpy's multinomial (O(nnz) per row; not nested).

    p: (R, n) probabilities (first nnz[r] entries positive); tables: alias_table(p, nnz),
    or None when p is uniform over each row's nnz leading entries.
    """

    def __init__(self, p: torch.Tensor, nnz: torch.Tensor, seed_seq: np.random.SeedSequence,
                 tables: tuple[torch.Tensor, torch.Tensor] | None = None):
        self.p = p
        self.nnz = nnz.to(torch.int64)
        self.rows, self.width = p.shape
        self.tables = None if tables is None else (tables[0].reshape(-1), tables[1].reshape(-1))
        t_seed, np_seed = seed_seq.generate_state(2, dtype=np.uint64)
        self.generator = torch.Generator().manual_seed(int(t_seed) >> 1)
        self.np_seed = int(np_seed)
        self.capacity = torch.zeros(self.rows, dtype=torch.int64)
        self.flat = torch.empty(0, dtype=torch.int64)  # r * n + i of each draw
        self.row = torch.empty(0, dtype=torch.int64)
        self.pos = torch.empty(0, dtype=torch.int64)  # the draw's place in its row's stream

    def big(self, k: torch.Tensor) -> torch.Tensor:
        return k > _BIG_FACTOR * self.nnz + _BIG_EXTRA

    def _extend(self, need: torch.Tensor) -> None:
        extra = (need - self.capacity).clamp_min(0)
        total = int(extra.sum())
        if total == 0:
            return
        row = torch.repeat_interleave(torch.arange(self.rows), extra)  # (D,)
        first = torch.cumsum(extra, 0) - extra  # offset of each row's block
        pos = torch.arange(total).add_(torch.index_select(self.capacity - first, 0, row))
        u = torch.rand(total, generator=self.generator, dtype=torch.float64)
        nz = torch.index_select(self.nnz, 0, row)
        x = u.mul_(nz)
        i = torch.minimum(x.to(torch.int64), nz.sub_(1))
        base = row * self.width
        if self.tables is None:
            flat = base.add_(i)
        else:
            prob, alias = self.tables
            g = base + i
            keep = x.sub_(i) < torch.index_select(prob, 0, g)
            flat = base.add_(torch.where(keep, i, torch.index_select(alias, 0, g)))
        if self.flat.numel():
            flat, row, pos = torch.cat([self.flat, flat]), torch.cat([self.row, row]), torch.cat([self.pos, pos])
        self.flat, self.row, self.pos = flat, row, pos
        self.capacity = torch.maximum(self.capacity, need)

    def counts(self, k: torch.Tensor) -> torch.Tensor:
        """(R, n) int64 counts of the first k[r] draws of each row (k = 0: no draws)."""
        k = k.to(torch.int64).clamp_min(0)
        big = self.big(k)
        small_k = torch.where(big, torch.zeros_like(k), k)
        short = small_k > self.capacity
        if bool(short.any()):
            self._extend(torch.where(short, small_k, self.capacity))
        if bool((small_k == self.capacity).all()):
            flat = self.flat  # every draw made is used
        else:
            flat = self.flat[self.pos < torch.index_select(small_k, 0, self.row)]
        counts = torch.bincount(flat, minlength=self.rows * self.width).reshape(self.rows, self.width)
        if bool(big.any()):
            rng = np.random.default_rng(self.np_seed)
            p = self.p.numpy()
            for r in torch.nonzero(big)[:, 0].tolist():
                nz = int(self.nnz[r])
                pr = p[r, :nz] / p[r, :nz].sum()
                counts[r, :nz] = torch.from_numpy(rng.multinomial(int(k[r]), pr).astype(np.int64))
        return counts


def row_draws(rows: RowSet, seed: int, name: str, purpose: int = 0) -> NestedDraws:
    """Nested draws over a layer's rows from p_j = s_j / T."""
    return NestedDraws(rows.p, rows.nnz, layer_seed(seed, name, purpose), rows.alias)


# ------------------------------------------------------------------------ assembly


def classify(rows: RowSet, m: torch.Tensor, sampled: torch.Tensor) -> torch.Tensor:
    """(R,) int8 method codes: m >= nnz -> WHOLE, m < 1 or no signal -> EMPTY, else sampled or deterministic."""
    m = m.to(torch.int64)
    code = torch.where(sampled, torch.tensor(SAMPLED, dtype=torch.int8), torch.tensor(DETERMINISTIC, dtype=torch.int8))
    code = torch.where(m >= rows.nnz, torch.tensor(WHOLE, dtype=torch.int8), code)
    code = torch.where((m < 1) | (rows.nnz == 0), torch.tensor(EMPTY, dtype=torch.int8), code)
    return code


def assemble(rows: RowSet, method: torch.Tensor, m: torch.Tensor, draws: torch.Tensor, counts: torch.Tensor | None):
    """Masks and values of one layer from per-row decisions.

    Returns (mask (F, J) bool, values (F, J) float32, kept (R,) int64).
    Deterministic rows keep their top m (values unchanged), whole rows their
    s > 0 weights, sampled rows the drawn weights reweighted by count / (m' p).
    """
    m = m.to(torch.int64)
    keep_top = torch.where(method == WHOLE, rows.nnz, torch.where(method == DETERMINISTIC, m, torch.zeros_like(m)))
    keep = torch.arange(rows.width)[None, :] < keep_top[:, None]  # (R, n)
    vals = torch.where(keep, rows.w, torch.zeros((), dtype=torch.float32))
    is_s = (method == SAMPLED)[:, None]
    if bool(is_s.any()):
        if counts is None:
            raise ValueError("counts are needed for sampled rows")
        c = counts.to(torch.float64)
        drawn = c > 0
        scale = c / (draws.to(torch.float64).clamp_min(1.0)[:, None] * torch.where(drawn, rows.p, torch.ones_like(rows.p)))
        vals = torch.where(is_s, (rows.w.double() * scale).float(), vals)
        keep = torch.where(is_s, drawn, keep)
    kept = keep.sum(dim=1)
    size = rows.out_units * rows.fan_in
    dest = torch.where(keep, rows.dest, torch.full((), size, dtype=torch.int64)).reshape(-1)
    mask = torch.zeros(size + 1, dtype=torch.bool).scatter_(0, dest, keep.reshape(-1))
    values = torch.zeros(size + 1, dtype=torch.float32).scatter_(0, dest, vals.reshape(-1))
    shape = (rows.out_units, rows.fan_in)
    return mask[:size].reshape(shape), values[:size].reshape(shape), kept


def sample_rows(rows: RowSet, m: torch.Tensor, sampled: torch.Tensor, draws_src: NestedDraws, start=None):
    """m' and counts for the rows flagged ``sampled`` (others: 0 draws)."""
    draws = torch.zeros(rows.rows, dtype=torch.int64)
    idx = torch.nonzero(sampled)[:, 0]
    if idx.numel():
        st = None if start is None else start[idx]
        draws[idx] = draws_for_distinct(torch.index_select(rows.p, 0, idx), m[idx].double(), st,
                                        log_q=torch.index_select(rows.log_q, 0, idx))
    return draws, draws_src.counts(draws)


# ---------------------------------------------------------------- public per-layer


def _check_m(m, rows: RowSet) -> torch.Tensor:
    mm = to_rows(torch.as_tensor(m), "m", torch.float64)
    if mm.shape[0] != rows.rows:
        raise ValueError(f"m must be shaped (F, 2) with F = {rows.out_units}; got {rows.rows // 2} rows")
    if bool(torch.isnan(mm).any()) or bool((mm < 0).any()):
        raise ValueError("m must be >= 0 (weights to keep per row)")
    return torch.floor(mm).clamp(max=float(rows.width)).to(torch.int64)


def _reshape(mask, values, weight):
    return mask.reshape(weight.shape), values.reshape(weight.shape)


def sparsify_deterministic(weight: torch.Tensor, sens: torch.Tensor, m) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the top-m weights of each row by sensitivity (ties by index); values unchanged.

    weight, sens: same shape (F, ...); m: (F, 2) weights to keep per row (floored;
    capped at the row's s > 0 weights). Returns (mask bool, values float32), shaped like weight.
    """
    rows = build_rows(weight, sens)
    mm = _check_m(m, rows)
    code = classify(rows, mm, torch.zeros(rows.rows, dtype=torch.bool))
    mask, values, _ = assemble(rows, code, mm, torch.zeros_like(mm), None)
    return _reshape(mask, values, weight)


def sparsify_sampling(weight: torch.Tensor, sens: torch.Tensor, m, *, seed: int = 0, name: str = "layer"):
    """Importance-sample each row (docs/sipp.md §4): m' draws from p_j = s_j / T, reweighted to be unbiased.

    m: (F, 2) target distinct weights per row (floored). m >= nnz keeps the row's
    s > 0 weights; m < 1 empties it. Returns (mask bool, values float32), shaped like weight.
    """
    rows = build_rows(weight, sens)
    mm = _check_m(m, rows)
    code = classify(rows, mm, torch.ones(rows.rows, dtype=torch.bool))
    draws, counts = sample_rows(rows, mm, code == SAMPLED, row_draws(rows, seed, name))
    mask, values, _ = assemble(rows, code, mm, draws, counts)
    return _reshape(mask, values, weight)


def hybrid_choice(eps_det_m: torch.Tensor, eps_rand_m: torch.Tensor, c_prime: float = 3.0) -> torch.Tensor:
    """True where a row is sampled: C' * eps_det(m) > eps_rand(m) (ties go deterministic)."""
    return c_prime * eps_det_m > eps_rand_m


def sparsify_hybrid(
    weight: torch.Tensor, sens: torch.Tensor, m, *, log_term: float, c_prime: float = 3.0, seed: int = 0,
    name: str = "layer",
):
    """Hybrid (docs/sipp.md §4): per row, sampling where C' eps_det(m) > eps_rand(m), else deterministic.

    log_term: the layer's L_l (see bounds.log_term). Returns (mask, values, sampled (F, 2) bool).
    """

    rows = build_rows(weight, sens)
    mm = _check_m(m, rows)
    er = eps_rand_rows(mm.double(), rows.total, torch.full((rows.rows,), float(log_term), dtype=torch.float64))
    cand = hybrid_choice(eps_det_rows(rows, mm), er, c_prime)
    code = classify(rows, mm, cand)
    draws, counts = sample_rows(rows, mm, code == SAMPLED, row_draws(rows, seed, name))
    mask, values, _ = assemble(rows, code, mm, draws, counts)
    mask, values = _reshape(mask, values, weight)
    return mask, values, (code == SAMPLED).reshape(-1, 2)

