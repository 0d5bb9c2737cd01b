"""The screened conv engine's search for candidate blocks: the bounds S as comparable keys, maxima
over runs of blocks, and the blocks whose bound reaches a cut (docs/sipp.md §2.6)."""
from __future__ import annotations

import torch


def _keys(s: torch.Tensor) -> torch.Tensor:
    """A view of S (>= 0) that compares like S: bfloat16 bit patterns as int16 (same
    order for non-negative values; integer comparisons and reductions are vectorised)."""
    return s.view(torch.int16) if s.dtype == torch.bfloat16 else s


def _key_values(keys: torch.Tensor, dtype) -> torch.Tensor:
    """float64 values of keys from :func:`_keys`."""
    return (keys.view(torch.bfloat16) if dtype == torch.bfloat16 else keys).double()


def _keys_at_most(cut: torch.Tensor, dtype) -> torch.Tensor:
    """The largest keys of ``dtype`` values <= cut (float64, >= 0 or inf): rounding never
    raises a threshold, so no block at or above it is lost."""
    c = cut.to(dtype)
    if dtype == torch.float64:
        return c
    up = c.double() > cut
    if dtype == torch.bfloat16:
        return c.view(torch.int16).sub_(up.to(torch.int16))  # c > 0 here: the next value below
    return torch.where(up, torch.nextafter(c, torch.zeros_like(c)), c)


def _first_argmax(x: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """Index along dim 0 of the first maximum of x (n, M), given top = x.amax(0): three
    vectorised passes (torch's argmax along a leading dim is an order of magnitude slower)."""
    n = x.shape[0]
    wtype = torch.uint8 if n < 2**8 else torch.int16 if n < 2**15 else torch.int32  # narrow: faster
    weight = torch.arange(n, 0, -1, device=x.device).to(wtype).view(n, *([1] * (x.ndim - 1)))  # (n, 1, ...)
    return n - ((x == top) * weight).amax(dim=0).long()


def _run_blocks(run: torch.Tensor, col: torch.Tensor, gj: int, length: int) -> torch.Tensor:
    """(length, R) flat positions (block * GJ + pair) in S of the blocks of runs run[i] of pair col[i]."""
    first = run * (length * gj) + col  # (R,)
    return first + torch.arange(0, length * gj, gj, device=run.device)[:, None]


def _candidates(keys: torch.Tensor, gmax: torch.Tensor, cut: torch.Tensor, length: int) -> torch.Tensor:
    """Flat positions (block * GJ + pair) of the keys (blocks, GJ) >= cut[pair], given gmax,
    the max over each run of ``length`` blocks: only the pairs, then the runs, that reach
    their cut are searched (few, once each pair's best block is known)."""
    gj = keys.shape[1]
    cols = (gmax.amax(dim=0) >= cut).nonzero().squeeze(1)  # (C,) pairs that reach their cut
    run, i = (gmax.index_select(1, cols) >= cut[cols]).nonzero().unbind(1)  # (R,) each
    col = cols[i]  # (R,)
    pos = _run_blocks(run, col, gj, length)  # (length, R)
    return pos[keys.take(pos) >= cut[col]]
