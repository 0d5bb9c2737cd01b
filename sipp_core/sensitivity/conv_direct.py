"""Conv2d engines that evaluate every product a_{j,p}(x) / z_{f,p}(x): the max reduction for small
layers (the direct engine) and the mean reduction (docs/sipp.md §2.4, §2.6)."""
from __future__ import annotations

import torch

from .budget import _Budget
from .conv_output import ConvOutput
from .geometry import _Geometry
from .kernels import _maxtimes, _recip, _signed


def _conv_mean(xp: torch.Tensor, w: torch.Tensor, geo: _Geometry, budget: _Budget,
               out_y: ConvOutput | None = None) -> torch.Tensor:
    """M (2F, J) = max over pseudo-points of the mean over patches of a_{j,p} / z_{f,p}."""
    ws4 = _signed(w).reshape(-1, geo.channels, geo.kh, geo.kw)  # (G, C, kh, kw)
    g_rows, j_cols, p = ws4.shape[0], geo.fan_in, geo.patches
    out = torch.zeros(g_rows, j_cols, device=xp.device)  # (G, J)
    per_point = j_cols * p + g_rows * p + g_rows * j_cols
    step = max(1, budget.big_elems() // per_point)
    cols = torch.empty(min(step, xp.shape[0]), j_cols, p, device=xp.device)  # (step, J, P)
    sums = torch.empty(min(step, xp.shape[0]), g_rows, j_cols, device=xp.device)  # (step, G, J)
    for i in range(0, xp.shape[0], step):
        chunk = xp[i : i + step]  # (n, C, Hp, Wp)
        n = chunk.shape[0]
        z = geo.z(chunk, ws4)  # (n, G, P)
        if out_y is not None:
            out_y.add(i, z)
        r = _recip(z)  # (n, G, P)
        geo.unfold(chunk, out=cols[:n])  # (n, J, P)
        torch.bmm(r, cols[:n].transpose(1, 2), out=sums[:n])  # (n, G, J)
        torch.maximum(out, sums[:n].amax(0), out=out)
    return out / p


def _conv_max_direct(xp: torch.Tensor, w: torch.Tensor, geo: _Geometry, budget: _Budget,
                     out_y: ConvOutput | None = None) -> torch.Tensor:
    """M (2F, J) by evaluating every product a_{j,p}(x) / z_{f,p}(x), in chunks of points."""
    ws4 = _signed(w).reshape(-1, geo.channels, geo.kh, geo.kw)  # (G, C, kh, kw)
    g_rows, j_cols, p = ws4.shape[0], geo.fan_in, geo.patches
    out = torch.zeros(g_rows, j_cols, device=xp.device)  # (G, J)
    step = max(1, budget.big_elems(2) // ((g_rows + j_cols) * p))
    for i in range(0, xp.shape[0], step):
        chunk = xp[i : i + step]  # (n, C, Hp, Wp)
        n = chunk.shape[0]
        z = geo.z(chunk, ws4)  # (n, G, P)
        if out_y is not None:
            out_y.add(i, z)
        r = _recip(z).transpose(1, 2).reshape(n * p, g_rows)  # (n P, G)
        cols = geo.unfold(chunk).transpose(1, 2).reshape(n * p, j_cols)  # (n P, J)
        _maxtimes(r, cols, budget, out=out)
    return out
