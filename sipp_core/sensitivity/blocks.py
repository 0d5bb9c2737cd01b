"""Blocks of (point, patch) pairs for the screened conv engine: how a chunk of points is cut into
blocks, its two layouts, and the exact max of chosen blocks (docs/sipp.md §2.6)."""
from __future__ import annotations

import torch

from .budget import _Budget
from .geometry import _Geometry
from .kernels import _pow

_BLOCK = 64  # (point, patch) pairs per screening block
_PIECE_ELEMS = 2**18  # elements scaled and squared together (few ops, mostly in cache)


class _Blocks:
    """Layouts of one chunk for the screened engine.

    Natural layout (points, X, ppad): X rows (G reciprocal rows or J input columns) of
    each point's patches, zero-padded past P to ppad = per_point * size (group = 1), and,
    for groups of points, past the chunk's last point to a whole group. Block-major
    layout (blocks, X, size): one block's rows side by side, for one batched product.
    """

    def __init__(self, geo: _Geometry, per_point: int, size: int, group: int):
        self.geo = geo
        self.per_point = per_point  # blocks per point (1 for groups of points)
        self.size = size  # (point, patch) pairs per block
        self.group = group  # points per block (1 for blocks inside a point)
        p = geo.patches
        self.ppad = per_point * size if group == 1 else p
        self.padded = self.ppad != p

    @staticmethod
    def of(geo: _Geometry) -> "_Blocks":
        """Blocks of about _BLOCK (point, patch) pairs.

        P >= _BLOCK: each point's P patches form ``per_point`` blocks of ``size`` consecutive
        patches (size divides P when a divisor lies near _BLOCK, preferably whole output rows;
        else the last block is zero-padded). Smaller P: blocks of ``group`` whole points.
        """
        p = geo.patches
        if p < _BLOCK:
            group = max(1, _BLOCK // p)
            return _Blocks(geo, 1, group * p, group)
        divisors = [d for d in range(_BLOCK // 2, 2 * _BLOCK + 1) if p % d == 0]
        if divisors:
            size = min(divisors, key=lambda d: (d % geo.wo != 0, abs(d - _BLOCK), d))
            return _Blocks(geo, p // size, size, 1)
        per_point = -(-p // _BLOCK)
        return _Blocks(geo, per_point, -(-p // per_point), 1)

    def count(self, n: int) -> int:
        """Blocks of a chunk of n points."""
        return -(-n // self.group) * self.per_point

    def rows(self, n: int) -> int:
        """Points in the natural layout of a chunk of n points (whole groups)."""
        return -(-n // self.group) * self.group

    def unfold(self, xc: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
        """The unfolded points xc (n, C, Hp, Wp), natural layout (rows, J, ppad), in buf."""
        n, p, rows = xc.shape[0], self.geo.patches, self.rows(xc.shape[0])
        out = buf[:rows]  # (rows, J, ppad)
        self.geo.unfold(xc, out=out[:n, :, :p])
        if self.padded:
            out[:n, :, p:].zero_()
        if rows > n:
            out[n:].zero_()
        return out

    def block_major(self, nat: torch.Tensor, out: torch.Tensor, scale=None, power: int = 1,
                    scratch: torch.Tensor | None = None) -> torch.Tensor:
        """nat (rows, X, ppad) -> (blocks, X, size) in ``out``, optionally (nat * scale[X]) ** power.

        Without sub-blocks or groups the layouts coincide and nat itself is used when no
        scaling is asked for. The power is taken piece by piece (few ops per piece); when
        ``out`` is narrower than the product (bfloat16) the pieces are squared in
        ``scratch`` and only the last squaring is rounded.
        """
        if scale is None and self.per_point == 1 and self.group == 1 and out.dtype == nat.dtype:
            return nat
        src, dst, scale_view = self._views(nat, out, scale)
        blocks = nat.shape[0] // self.group * self.per_point
        if scale_view is None:
            dst.copy_(src)
            return out[:blocks]
        narrow = out.dtype.itemsize < torch.promote_types(nat.dtype, scale.dtype).itemsize
        piece = max(1, (min(scratch.numel(), _PIECE_ELEMS) if narrow else _PIECE_ELEMS) // max(1, dst[0].numel()))
        for i in range(0, dst.shape[0], piece):
            d = dst[i : i + piece]
            if narrow:
                t = scratch[: d.numel()].view(d.shape)
                torch.mul(src[i : i + piece], scale_view, out=t)
                d.copy_(_pow(t, power))  # squared in place, rounded once by the copy (no temporary)
            else:
                torch.mul(src[i : i + piece], scale_view, out=d)
                _pow(d, power)
        return out[:blocks]

    def _views(self, nat: torch.Tensor, out: torch.Tensor, scale):
        """(source, destination, scale) views in which block_major is one elementwise copy."""
        rows, x, ppad = nat.shape
        per_point, size, group = self.per_point, self.size, self.group
        blocks = rows // group * per_point
        if group == 1:
            src = nat.view(rows, x, per_point, size).transpose(1, 2)  # (rows, per_point, X, size)
            dst = out[:blocks].view(rows, per_point, x, size)  # (rows, per_point, X, size)
            scale_view = None if scale is None else scale.view(1, 1, x, 1)
        else:
            src = nat.view(rows // group, group, x, ppad).transpose(1, 2)  # (rows / group, X, group, P)
            dst = out[:blocks].view(rows // group, x, group, ppad)  # (rows / group, X, group, P)
            scale_view = None if scale is None else scale.view(1, x, 1, 1)
        return src, dst, scale_view


# --------------------------------------------------------------------------- exact maxima of blocks


def _exact_blocks(block, r, j, rj, r_nat, a_nat, lay: _Blocks, m, budget: _Budget) -> None:
    """m[r, j] = max(m[r, j], max over the block's pairs of R[r, pair] * A[j, pair]).

    block, r, j: (T,) int64, block = q * per_point + sub-block, rj = the flat index of (r, j)
    in m; r_nat (rows, G, ppad) the chunk's reciprocals and a_nat (rows, J, ppad) its
    unfolded inputs in natural layout.
    """
    if block.numel() == 0:
        return
    g_rows, j_cols = r_nat.shape[1], a_nat.shape[1]
    whole = lay.group == 1
    if whole:
        ri, ai = _row_index(block, r, g_rows, lay), _row_index(block, j, j_cols, lay)  # (T, 1) each
    r_rows, a_rows = _rows_view(r_nat, lay), _rows_view(a_nat, lay)
    step = max(1, budget.elems(4) // lay.size)
    for s0 in range(0, block.numel(), step):
        s1 = s0 + step
        if whole:
            rsel, asel = ri[s0:s1], ai[s0:s1]  # (t, 1)
        else:
            rsel = _row_index(block[s0:s1], r[s0:s1], g_rows, lay)  # (t, group)
            asel = _row_index(block[s0:s1], j[s0:s1], j_cols, lay)  # (t, group)
        rv = _gather(r_rows, rsel, lay.size, budget, "ex_r")  # (t, size)
        av = _gather(a_rows, asel, lay.size, budget, "ex_a")  # (t, size)
        _update_max(m, rj[s0:s1], rv, av)


def _exact_blocks_take(block, r, j, rj, r_nat, xc, geo: _Geometry, lay: _Blocks, m, budget: _Budget) -> None:
    """As :func:`_exact_blocks`, reading the inputs straight from the padded points xc (n, C, Hp, Wp)."""
    if block.numel() == 0:
        return
    device = xc.device
    per_point, size, group, p = lay.per_point, lay.size, lay.group, geo.patches
    n_pts = xc.shape[0]
    point_size = geo.channels * geo.hp * geo.wp
    patch_off = geo.patch_offsets(device)  # (P,)
    x_flat = xc.reshape(-1)  # (n C Hp Wp,)
    ri = _row_index(block, r, r_nat.shape[1], lay) if group == 1 else None  # (T, 1)
    base = geo.column_offsets(device)[j]  # (T,)
    if group == 1:
        pos = torch.arange(per_point * size, device=device).clamp(max=p - 1)  # padding: any valid patch (R = 0)
        patch_table = patch_off[pos].view(per_point, size)  # (per_point, size)
        sub = block % per_point  # (T,)
        base += block.div(per_point, rounding_mode="floor") * point_size
    else:
        t = torch.arange(size, device=device)  # (size,)
        t_point, t_off = t // p, patch_off[t % p]  # (size,) each
    rows = _rows_view(r_nat, lay)
    step = max(1, budget.elems(6) // size)
    for s0 in range(0, block.numel(), step):
        s1 = s0 + step
        idx = ri[s0:s1] if ri is not None else _row_index(block[s0:s1], r[s0:s1], r_nat.shape[1], lay)
        rv = _gather(rows, idx, size, budget, "ex_r")  # (t, size)
        if group == 1:
            av = torch.take(x_flat, base[s0:s1, None] + patch_table[sub[s0:s1]])  # (t, size)
        else:
            pt = (block[s0:s1, None] * group + t_point).clamp_(max=n_pts - 1)  # (t, size); past the chunk: R = 0
            av = torch.take(x_flat, pt.mul_(point_size).add_(base[s0:s1, None]).add_(t_off))  # (t, size)
        _update_max(m, rj[s0:s1], rv, av)


def _row_index(bl, x, xs: int, lay: _Blocks) -> torch.Tensor:
    """(T, g) rows of :func:`_rows_view` (g = group, or 1) holding row x[i] of block bl[i]
    of a natural layout (rows, xs, ppad). With g = 1 computed once for all steps (fewer
    small ops; no larger than the block list); groups: step by step (g times larger)."""
    if lay.group == 1:
        per_point = lay.per_point
        return ((bl.div(per_point, rounding_mode="floor") * xs + x) * per_point + bl % per_point)[:, None]
    pts = bl[:, None] * lay.group + torch.arange(lay.group, device=bl.device)  # (T, group)
    return pts.mul_(xs).add_(x[:, None])


def _rows_view(nat: torch.Tensor, lay: _Blocks) -> torch.Tensor:
    """nat (rows, X, ppad) as rows of one block's (or, for groups, one point's) patches."""
    return nat.reshape(-1, lay.size if lay.group == 1 else lay.ppad)


def _gather(rows: torch.Tensor, idx: torch.Tensor, size: int, budget: _Budget, key: str) -> torch.Tensor:
    """(T, size): the rows idx (T, g) of ``rows``, side by side.

    index_select on a 2-d view: an order of magnitude faster than advanced indexing
    with two index tensors."""
    t = idx.shape[0]
    out = budget.buffer(key, (idx.numel(), rows.shape[1]), rows.dtype, rows.device)  # (T g, row length)
    return torch.index_select(rows, 0, idx.view(-1), out=out).view(t, size)


def _update_max(m, rj, rv, av) -> None:
    """m.view(-1)[rj] = max(m.view(-1)[rj], max of rv * av along dim 1), in place (rv is overwritten)."""
    best = rv.mul_(av).amax(dim=1)  # (T,)
    m.view(-1).scatter_reduce_(0, rj, best, reduce="amax", include_self=True)
