"""Peaks of the absolute second difference and the SMP of a sampled signal (docs/nonsmoothness.md §1-2).

Everything here is batched over rows: a signal is (..., N) along the path,
its second difference (..., N - 2). ``smp`` is the public, friendly wrapper.

SMP as computed here::

    d_i  = | y_{i+1} - 2 y_i + y_{i-1} |,               i = 1 .. N-2
    thr  = max( median(d) + 10 * 1.4826 * MAD(d),  8 * eps(dtype) * max|y| )
    peak = local maximum of d above thr; peaks >= 3 samples apart (greedy, largest first)
    SMP  = sum over peaks of (d_{i-1} + d_i + d_{i+1})  /  (h * ||x_b - x_a||)

Two numerical guards beyond the formula of docs/nonsmoothness.md (both only matter where the
noise estimate would otherwise be zero):
- samples whose whole window is exactly constant (y_{i-1} = y_i = y_{i+1},
  e.g. a ReLU unit while it is off, a removed unit) are left out of the
  median and MAD: they are structure, not noise, and would pull MAD to 0 so
  that rounding noise on the live part of the signal counted as peaks;
- the threshold is at least 8 float epsilons of the signal's scale, the size
  of the rounding error of a second difference of stored values.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

MAD_SCALE = 1.4826  # MAD -> standard deviation for Gaussian noise
THRESHOLD_SIGMAS = 10.0
FLOOR_EPS = 8.0  # threshold floor in units of eps(dtype) * max|y|
MIN_SEPARATION = 3  # peaks at least this many samples apart, so +-1 windows never overlap
_BLOCK = 1 << 20  # elements per block of rows: few ops, temporaries small enough to be reused


def second_difference(y: torch.Tensor) -> torch.Tensor:
    """|y_{i+1} - 2 y_i + y_{i-1}| along the last dim: (..., N) -> (..., N - 2)."""
    return (y[..., 2:] - 2 * y[..., 1:-1] + y[..., :-2]).abs()


def noise_mask(y: torch.Tensor) -> torch.Tensor:
    """True where the second-difference window is not exactly constant: (..., N) -> (..., N - 2)."""
    return (y[..., 2:] != y[..., 1:-1]) | (y[..., :-2] != y[..., 1:-1])


class Peaks(NamedTuple):
    """Peaks of d shaped (..., M), stored sparsely (K peaks in row-major order).

    row: (K,) flat row of each peak (rows = leading dims flattened);
    index: (K,) position in d (signal index = index + 1);
    magnitude: (K,) windowed d_{i-1} + d_i + d_{i+1};
    threshold: (...,) the threshold used per row.
    """

    row: torch.Tensor
    index: torch.Tensor
    magnitude: torch.Tensor
    threshold: torch.Tensor
    shape: tuple[int, ...]

    def total(self) -> torch.Tensor:
        """Sum of peak magnitudes per row, (...,): SMP before dividing by h * path length."""
        rows = _numel(self.shape[:-1])
        out = torch.zeros(rows, dtype=self.magnitude.dtype, device=self.magnitude.device)
        return out.index_add_(0, self.row, self.magnitude).reshape(self.shape[:-1])

    def dense(self) -> torch.Tensor:
        """(..., M) bool mask of peak centres."""
        keep = torch.zeros((_numel(self.shape[:-1]), self.shape[-1]), dtype=torch.bool)
        keep[self.row, self.index] = True
        return keep.reshape(self.shape)


def no_peaks(lead: tuple[int, ...], m: int, dtype=torch.float64) -> Peaks:
    """Peaks of rows known to have none (e.g. signals affine in t)."""
    empty = torch.zeros(0, dtype=torch.long)
    return Peaks(empty, empty.clone(), torch.zeros(0, dtype=dtype), torch.full(tuple(lead), math.inf, dtype=dtype),
                 (*lead, m))


def _numel(shape) -> int:
    n = 1
    for k in shape:
        n *= int(k)
    return n


def _threshold(dn: torch.Tensor, floor: torch.Tensor | None) -> torch.Tensor:
    """median + 10 * 1.4826 * MAD per row of dn (R, M), NaN entries left out, at least `floor`.

    Medians are torch's lower medians (the ((v - 1) // 2)-th smallest of the v kept entries).
    """
    med = dn.nanmedian(dim=-1, keepdim=True).values  # (R, 1); NaN for a row with nothing kept
    mad = (dn - med).abs_().nanmedian(dim=-1).values
    thr = torch.nan_to_num(med[:, 0] + THRESHOLD_SIGMAS * MAD_SCALE * mad, nan=math.inf)  # nothing varies
    if floor is not None:
        thr = torch.maximum(thr, floor.to(thr.dtype))
    return thr  # (R,)


def _suppress(row: torch.Tensor, idx: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Greedy non-maximum suppression at distance 2, largest first, ties to the earlier index.

    Candidates (row-major order) are strict local maxima (>= left, > right), so
    two are never adjacent and only neighbours in this order 2 apart conflict.
    Each round keeps every candidate that beats its live conflicting
    neighbours - exactly the ones greedy would keep next - and drops those
    neighbours; only chains of conflicts make it loop.
    """
    k = v.shape[0]
    keep = torch.zeros(k, dtype=torch.bool)
    if k == 0:
        return keep
    link = (row[1:] == row[:-1]) & (idx[1:] - idx[:-1] == 2)  # (K-1,) conflict between j and j+1
    if not bool(link.any()):
        return torch.ones(k, dtype=torch.bool)
    f = torch.zeros(1, dtype=torch.bool)
    link_l, link_r = torch.cat([f, link]), torch.cat([link, f])
    alive = torch.ones(k, dtype=torch.bool)
    ninf = torch.full((1,), -math.inf, dtype=v.dtype)
    while bool(alive.any()):
        va = torch.where(alive, v, ninf)
        left = torch.where(link_l, torch.cat([ninf, va[:-1]]), ninf)
        right = torch.where(link_r, torch.cat([va[1:], ninf]), ninf)
        dom = alive & (va > left) & (va >= right)
        keep |= dom
        kill = dom | (link_l & torch.cat([f, dom[:-1]])) | (link_r & torch.cat([dom[1:], f]))
        alive &= ~kill
    return keep


def find_peaks(
    d: torch.Tensor, *, valid: torch.Tensor | None = None, scale: torch.Tensor | None = None
) -> Peaks:
    """Peaks of second differences d (..., M), batched over leading dims.

    Args:
        d: nonnegative second differences, e.g. ``second_difference(y)``.
        valid: optional bool (..., M); False entries are left out of median/MAD
            (``noise_mask(y)``): exactly-constant windows.
        scale: optional (...,) signal scale (max|y|); the threshold is at least
            ``FLOOR_EPS * eps(d.dtype) * scale``.
    Returns:
        Peaks (sparse; ``.total()`` per row, ``.dense()`` mask).
    """
    shape = tuple(d.shape)
    m = shape[-1]
    d2 = d.reshape(-1, m)
    v2 = None if valid is None else valid.reshape(-1, m)
    s2 = None if scale is None else scale.reshape(-1)
    acc = _Collector(d2.shape[0], d.dtype)
    for r0, r1 in _blocks(d2.shape[0], m):
        dn = d2[r0:r1] if v2 is None else d2[r0:r1].masked_fill(~v2[r0:r1], math.nan)
        acc.add(dn, None if s2 is None else s2[r0:r1], r0)
    return acc.finish(shape)


def signal_peaks(y: torch.Tensor, *, relu: bool = False) -> Peaks:
    """Peaks of a signal y (..., N) along its last dim, with both numerical guards.

    relu=True measures relu(y) instead, without materialising it.
    """
    if y.shape[-1] < 3:
        raise ValueError(f"a signal needs at least 3 points for a second difference, got {y.shape[-1]}")
    n = y.shape[-1]
    y2 = y.reshape(-1, n)
    acc = _Collector(y2.shape[0], y.dtype)
    for r0, r1 in _blocks(y2.shape[0], n):
        yb = y2[r0:r1].clamp(min=0) if relu else y2[r0:r1]
        dy = yb[:, 1:] - yb[:, :-1]
        d = (dy[:, 1:] - dy[:, :-1]).abs_()
        moving = dy != 0
        d.masked_fill_(~(moving[:, 1:] | moving[:, :-1]), math.nan)  # window exactly constant
        acc.add(d, torch.maximum(yb.amax(1), -yb.amin(1)), r0)
    return acc.finish((*y.shape[:-1], n - 2))


def _blocks(rows: int, m: int):
    """Row ranges of about _BLOCK elements: temporaries small enough to be reused, not page-faulted."""
    step = max(1, _BLOCK // max(m, 1))
    for r0 in range(0, rows, step):
        yield r0, min(rows, r0 + step)


class _Collector:
    """Threshold and local-maximum candidates block by block, then one sparse suppression."""

    def __init__(self, rows: int, dtype):
        self.thr = torch.empty(rows, dtype=dtype)
        self.parts = []

    def add(self, dn: torch.Tensor, scale: torch.Tensor | None, r0: int):
        # dn: (B, M) second differences, NaN where left out of the noise estimate (they are 0)
        m = dn.shape[1]
        floor = None if scale is None else FLOOR_EPS * torch.finfo(dn.dtype).eps * scale
        t = _threshold(dn, floor)
        self.thr[r0 : r0 + dn.shape[0]] = t
        r, i = (dn > t.unsqueeze(1)).nonzero(as_tuple=True)  # sparse: few exceed it; NaN never does
        dv = dn[r, i]
        zero = torch.zeros((), dtype=dn.dtype)
        dl = torch.where(i > 0, dn[r, (i - 1).clamp(min=0)].nan_to_num(0.0), zero)
        dr = torch.where(i < m - 1, dn[r, (i + 1).clamp(max=m - 1)].nan_to_num(0.0), zero)
        cand = (dv >= dl) & (dv > dr)  # d >= 0, so 0 outside the path is as good as -inf here
        self.parts.append((r[cand] + r0, i[cand], dv[cand], (dv + dl + dr)[cand]))

    def finish(self, shape) -> Peaks:
        r, i, dv, win = (torch.cat(z) for z in zip(*self.parts)) if self.parts else (
            torch.zeros(0, dtype=torch.long),) * 2 + (torch.zeros(0, dtype=self.thr.dtype),) * 2
        keep = _suppress(r, i, dv)
        return Peaks(r[keep], i[keep], win[keep], self.thr.reshape(shape[:-1]), tuple(shape))


class SMPResult(NamedTuple):
    """``value``: the SMP (float for a 1-D signal, a (C,) tensor for N x C);
    ``peaks``: signal indices of the peak centres (a LongTensor, or one per column)."""

    value: float | torch.Tensor
    peaks: torch.Tensor | tuple[torch.Tensor, ...]


def smp(signal, step: float, path_length: float = 1.0) -> SMPResult:
    """Sum of the magnitude of peaks of a signal sampled along a straight path.

    SMP = (sum over peaks of the +-1-windowed |second difference|) / (step * path_length),
    which tends to the total jump of the derivative along the path per unit
    of input distance as the sampling gets finer (docs/nonsmoothness.md §2).

    Args:
        signal: (N,) or (N, C) samples y(t_i), t_i = i * step (tensor or array-like).
        step: h, the spacing in t (1 / (N - 1) for t in [0, 1]).
        path_length: ||x_b - x_a||; 1.0 leaves the value in units of t.
    Returns:
        SMPResult(value, peaks): for (N, C), value is (C,) and peaks a tuple of C index tensors.
    Raises:
        ValueError: fewer than 3 samples, more than 2 dims, step or path_length not positive.

    >>> t = torch.linspace(0, 1, 101, dtype=torch.float64)
    >>> r = smp((t - 0.5).abs(), step=0.01)   # slope jumps from -1 to +1 at t = 0.5
    >>> round(r.value, 6), r.peaks.tolist()
    (2.0, [50])
    """
    y = torch.as_tensor(signal)
    if not torch.is_floating_point(y):
        y = y.to(torch.float64)
    if y.ndim not in (1, 2):
        raise ValueError(f"signal must be (N,) or (N, C), got shape {tuple(y.shape)}")
    if not (step > 0 and math.isfinite(step)):
        raise ValueError(f"step must be a positive finite number, got {step!r}")
    if not (path_length > 0 and math.isfinite(path_length)):
        raise ValueError(f"path_length must be a positive finite number, got {path_length!r}")
    cols = y.reshape(y.shape[0], -1).T  # (C, N)
    pk = signal_peaks(cols)
    value = pk.total() / (step * path_length)  # (C,)
    idx = tuple(torch.nonzero(row).reshape(-1) + 1 for row in pk.dense())
    if y.ndim == 1:
        return SMPResult(float(value[0]), idx[0])
    return SMPResult(value, idx)
