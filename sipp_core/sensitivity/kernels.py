"""The numerical pieces every engine shares: the no-signal rule, signed weights, pseudo-points,
powers, and the blocked max-times product (docs/sipp.md §2.6).

out[g, j] = max_k r[k, g] * a[k, j] over pairs k (points, or (point, patch) pairs).
Blocked over rows so one block of the output stays in cache while all pairs
stream past it; buffers are allocated once (fresh large allocations are slow).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as Fnn

from .budget import _Budget

EPS = float(torch.finfo(torch.float32).eps)  # z <= EPS counts as "no signal" (docs/sipp.md §2.2)

_ROW_BLOCK_ELEMS = 2**17  # output block (rows x J) per pass, ~512 KiB
_PASS_ELEMS = 2**21  # products per pass into an output block (measured best on 2 cores)


def _recip(z: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """1/z where z > EPS, 0 elsewhere ("no signal"), in place on z or into out."""
    Fnn.threshold_(z, EPS, math.inf)  # z <= EPS -> inf, whose reciprocal is 0: two passes, no mask
    return z.reciprocal_() if out is None else torch.reciprocal(z, out=out)


def _signed(w: torch.Tensor) -> torch.Tensor:
    """(2F, J): rows 0..F-1 hold |W+|, rows F..2F-1 hold |W-|."""
    return torch.cat([w.clamp(min=0), (-w).clamp(min=0)])


def _select(m: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """s = |W| * M[(f, sign W_fj), j]; 0 for zero weights."""
    f_units = w.shape[0]
    zero = torch.zeros((), dtype=m.dtype, device=m.device)
    picked = torch.where(w > 0, m[:f_units], torch.where(w < 0, m[f_units:], zero))  # (F, J)
    return w.abs() * picked


def _split(x: torch.Tensor, negative: bool) -> tuple[torch.Tensor, bool]:
    """(batch, False) if non-negative, else (its pseudo-points [max(x,0); max(-x,0)], True)."""
    if negative:
        return torch.cat([x.clamp(min=0), (-x).clamp(min=0)]), True
    return x, False


def _pow(x: torch.Tensor, power: int) -> torch.Tensor:
    """x ** power for power a power of two, by repeated squaring (in place on x)."""
    k = power
    while k > 1:
        x.mul_(x)
        k //= 2
    return x


# --------------------------------------------------------------------------- the max-times product


def _maxtimes(r: torch.Tensor, a: torch.Tensor, budget: _Budget, out: torch.Tensor | None = None) -> torch.Tensor:
    """(G, J) max over k of the outer products r[k] (x) a[k]; r (K, G), a (K, J), >= 0."""
    return _maxtimes_impl(r, a, budget, out, rank2=False)


def _maxtimes2(r2: torch.Tensor, a2: torch.Tensor, budget: _Budget, out: torch.Tensor | None = None) -> torch.Tensor:
    """Same for rank-2 terms r2[k] @ a2[k] with r2 (K, G, 2), a2 (K, 2, J): one point's two
    pseudo-points, whose supports are disjoint, so the sum is the one non-zero product."""
    return _maxtimes_impl(r2, a2, budget, out, rank2=True)


def _maxtimes_impl(r, a, budget: _Budget, out, rank2: bool) -> torch.Tensor:
    k_pairs, g_rows = r.shape[0], r.shape[1]
    j_cols = a.shape[-1]
    if out is None:
        out = torch.zeros(g_rows, j_cols, device=a.device)
    if k_pairs == 0:
        return out
    rows = max(1, min(g_rows, _ROW_BLOCK_ELEMS // j_cols, budget.elems() // j_cols))
    step = max(1, min(k_pairs, budget.big_elems(4) // (rows * j_cols), _PASS_ELEMS // (rows * j_cols)))
    buf = budget.buffer("mt_buf", (step, rows, j_cols), device=a.device)  # (step, rows, J)
    red = budget.buffer("mt_red", (rows, j_cols), device=a.device)  # (rows, J)
    for g0 in range(0, g_rows, rows):
        o = out[g0 : g0 + rows]  # (nr, J)
        nr = o.shape[0]
        rr = r[:, g0 : g0 + nr]  # (K, nr) or (K, nr, 2)
        for k0 in range(0, k_pairs, step):
            nk = min(step, k_pairs - k0)
            b = buf[:nk, :nr]  # (nk, nr, J)
            if rank2:
                torch.bmm(rr[k0 : k0 + nk], a[k0 : k0 + nk], out=b)
            else:
                torch.mul(rr[k0 : k0 + nk, :, None], a[k0 : k0 + nk, None, :], out=b)
            m = red[:nr]  # (nr, J)
            torch.amax(b, 0, out=m)
            torch.maximum(o, m, out=o)
    return out
