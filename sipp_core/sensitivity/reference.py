"""The empirical sensitivity straight from its definition (docs/sipp.md §2), as plain loops.

Deliberately slow. It exists to be obviously right, not fast: the engines of this
package (api.py) are checked against it (tests/sensitivity/test_sensitivity.py), the Learn page
shows its per-point numbers (ui/learn_core.py), and the benchmark's slow loops
(benchmarks/sens_reference.py) share its pseudo-point rule. Everything is float64
and one point at a time: Python loops over points, output units, patches and edges;
a conv input is read by explicit index arithmetic on the padded image (no unfold, no
batching, no torch kernel). It takes seconds on a layer of a few thousand weights;
never run it on a real network.

>>> layer = torch.nn.Linear(3, 2)
>>> sensitivity_by_definition(layer, torch.rand(4, 3)).shape
(2, 3)
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .kernels import EPS

__all__ = ["EPS", "pad_value", "point_inputs", "point_ratios", "pseudo_points", "sensitivity_by_definition"]


def pseudo_points(x):
    """docs/sipp.md §2.1: the points x (N, ...) themselves when no entry is negative, else the 2N pseudo-points
    [max(x, 0); max(-x, 0)]; a numpy array or a torch tensor, returned as the same kind."""
    if not bool((x < 0).any()):
        return x
    if isinstance(x, torch.Tensor):
        return torch.cat([x.clamp(min=0), (-x).clamp(min=0)])
    return np.concatenate([np.maximum(x, 0), np.maximum(-x, 0)])


def pad_value(x: np.ndarray, c: int, i: int, j: int, pads, mode: str) -> float:
    """Input value at (c, i, j) of the padded image x (C, H, W); pads = (left, right, top, bottom)."""
    left, _, top, _ = pads
    h, w = x.shape[1], x.shape[2]
    i, j = i - top, j - left
    if 0 <= i < h and 0 <= j < w:
        return float(x[c, i, j])
    if mode == "zeros":
        return 0.0
    if mode == "reflect":
        i = -i if i < 0 else (2 * (h - 1) - i if i >= h else i)
        j = -j if j < 0 else (2 * (w - 1) - j if j >= w else j)
        return float(x[c, i, j])
    raise NotImplementedError(mode)


def point_inputs(module: nn.Module, x: np.ndarray) -> list[list[float]]:
    """docs/sipp.md §1: a[j][p] of one point x: its features (P = 1) for a Linear layer; for a Conv2d, by index
    arithmetic, j = (c, u, v) in the weight's order and p = (h, w) in the output's."""
    if isinstance(module, nn.Linear):
        return [[float(v)] for v in x.reshape(-1)]
    kh, kw = module.kernel_size
    sh, sw = module.stride
    dh, dw = module.dilation
    pads = tuple(int(v) for v in module._reversed_padding_repeated_twice)
    hp = x.shape[1] + pads[2] + pads[3]
    wp = x.shape[2] + pads[0] + pads[1]
    ho = (hp - dh * (kh - 1) - 1) // sh + 1
    wo = (wp - dw * (kw - 1) - 1) // sw + 1
    cols = []
    for c in range(x.shape[0]):
        for u in range(kh):
            for v in range(kw):
                row = []
                for h in range(ho):
                    for w in range(wo):
                        row.append(pad_value(x, c, h * sh + u * dh, w * sw + v * dw, pads, module.padding_mode))
                cols.append(row)
    return cols


def point_ratios(w: np.ndarray, a: list[list[float]], no_signal: float = EPS):
    """docs/sipp.md §2.2-2.3 for one (pseudo-)point: z+ and z- (F, P) and the ratios g (F, J, P).

    w (F, J) float64; a[j][p] from :func:`point_inputs`. g is 0 for a zero weight and where
    the weight's own z is at most ``no_signal``."""
    f_units, fan_in = w.shape
    n_patches = len(a[0])
    z_pos, z_neg = np.zeros((f_units, n_patches)), np.zeros((f_units, n_patches))
    g = np.zeros((f_units, fan_in, n_patches))
    for f in range(f_units):
        for p in range(n_patches):
            z_pos[f, p] = sum(w[f, j] * a[j][p] for j in range(fan_in) if w[f, j] > 0)
            z_neg[f, p] = sum(-w[f, j] * a[j][p] for j in range(fan_in) if w[f, j] < 0)
            for j in range(fan_in):
                if w[f, j] == 0:
                    continue
                z = z_pos[f, p] if w[f, j] > 0 else z_neg[f, p]
                g[f, j, p] = abs(w[f, j]) * a[j][p] / z if z > no_signal else 0.0
    return z_pos, z_neg, g


def sensitivity_by_definition(module: nn.Module, inputs: torch.Tensor, reduction: str = "max") -> np.ndarray:
    """docs/sipp.md §2.4: s_fj = max over points of (the max or mean over patches of g_{fj,p}), (F, J) float64.

    ``inputs``: the layer's input batch (N, ...); pseudo-points are decided on the whole batch."""
    w = module.weight.detach().double().reshape(module.weight.shape[0], -1).numpy()
    f_units, fan_in = w.shape
    s = np.zeros((f_units, fan_in))
    for point in pseudo_points(inputs.detach().double().numpy()):
        a = point_inputs(module, point)
        _, _, g = point_ratios(w, a)
        n_patches = len(a[0])
        for f in range(f_units):
            for j in range(fan_in):
                reduced = 0.0
                for p in range(n_patches):
                    reduced = max(reduced, g[f, j, p]) if reduction == "max" else reduced + g[f, j, p] / n_patches
                s[f, j] = max(s[f, j], reduced)
    return s
