"""Propagation rules of docs/nonsmoothness.md §3, applied to stored per-unit signals.

Each returns the predicted mean SMP over a stage's sampled output units from
what was measured at its input, per path: (G,) float64.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .peaks import _blocks, find_peaks


def _at(t: torch.Tensor, row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
    """t (..., N) flattened to rows, read at (row, col) pairs."""
    return t.reshape(-1, t.shape[-1])[row, col]


def relu_rule(x: torch.Tensor, pk, hl: torch.Tensor) -> torch.Tensor:
    """Predicted mean S(relu(x)) from the pre-activation x (G, n, N) and its peaks (docs/nonsmoothness.md §3).

    Kinks of x survive where x > 0 over the whole +-1 window; each zero
    crossing adds |x'(t_c)|, read from the step that crosses.
    """
    g, n, big_n = x.shape
    r, i = pk.row, pk.index  # d index i is signal index i + 1
    survive = (_at(x, r, i) > 0) & (_at(x, r, i + 1) > 0) & (_at(x, r, i + 2) > 0)
    total = torch.zeros(g * n, dtype=x.dtype).index_add_(0, r, pk.magnitude * survive)
    x2 = x.reshape(-1, big_n)
    for r0, r1 in _blocks(g * n, big_n):
        xb = x2[r0:r1]
        pos = xb > 0
        cross = pos[:, 1:] != pos[:, :-1]
        total[r0:r1] += ((xb[:, 1:] - xb[:, :-1]).abs_() * cross).sum(1)
    return (total.reshape(g, n).to(torch.float64) / hl).mean(-1)


def pool_rule(y, xm, xp, arg, hl) -> torch.Tensor:
    """Predicted mean S(max_j x_j) (docs/nonsmoothness.md §3) from, per sampled output unit and point k:
    y = x_a(k)(t_k), xm = x_a(k)(t_k-1), xp = x_a(k)(t_k+1), arg = a(k) the argmax input.

    The argmax input's own kinks survive (peaks of its second difference where
    the argmax holds over the window); a switch i -> j over step k adds
    |x_i' - x_j'|, both slopes read over that step.
    """
    g, n, big_n = y.shape
    y2, m2, p2, a2 = (t.reshape(-1, big_n) for t in (y, xm, xp, arg))
    total = torch.zeros(g * n, dtype=y.dtype)
    for r0, r1 in _blocks(g * n, big_n):
        yb, mb, pb = y2[r0:r1], m2[r0:r1], p2[r0:r1]
        sw = a2[r0:r1, 1:] != a2[r0:r1, :-1]  # (B, N-1) switch over step k
        dh = (pb - 2 * yb + mb).abs_()[:, 1:-1]  # held input's second difference, k = 1 .. N-2
        valid = ((pb != yb) | (mb != yb))[:, 1:-1]
        pk = find_peaks(dh, valid=valid, scale=torch.maximum(yb.amax(1), -yb.amin(1)))
        hold = ~sw[pk.row, pk.index] & ~sw[pk.row, pk.index + 1]
        total[r0:r1].index_add_(0, pk.row, pk.magnitude * hold)
        jump = ((pb[:, :-1] - yb[:, :-1]) - (yb[:, 1:] - mb[:, 1:])).abs_()  # |x_i' - x_j'| h over step k
        total[r0:r1] += (jump * sw).sum(1)
    return (total.reshape(g, n).to(torch.float64) / hl).mean(-1)


def linear_coeff(module: nn.Module, x1: torch.Tensor) -> torch.Tensor:
    """c_k = (1 / F) sum_f |W_fk| over all output units f (and positions), shaped like one input.

    The mean over output units of the linear rule sum_k |w_fk| S(x_k) is
    sum_k c_k S(x_k); autograd through the layer with |W| handles stride,
    padding, dilation and groups.
    """
    with torch.enable_grad():
        z = torch.zeros_like(x1, requires_grad=True)
        w = module.weight.detach().abs()
        y = F.linear(z, w) if isinstance(module, nn.Linear) else module._conv_forward(z, w, None)
        (g,) = torch.autograd.grad(y.sum(), z)
    return (g.reshape(-1) / y[0].numel()).to(torch.float64).cpu()
