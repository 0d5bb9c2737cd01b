"""Measured error (docs/sipp.md §7): what the bounds promise against what happens.

Layer-local error feeds the ORIGINAL network's input a(x) of a layer to both the
original and the pruned weights, which is exactly what the row bounds talk
about. Signs are kept apart: z+ and z- are compared separately, and a relative
error is |zhat^s - z^s| / z^s where z^s > float32 eps (docs/sipp.md §7 and 8.9).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..zoo.layers import capture_inputs, conv_padded, prunable_layers
from ..zoo.train import predict

NO_SIGNAL = 1.1920929e-07


@dataclass(frozen=True, eq=False)
class LayerError:
    """Per-layer measured error on one set of points."""

    name: str
    row_error: torch.Tensor  # (F, 2) float64: max over points of the row's relative error (nan: never any signal)
    point_error: torch.Tensor  # (N, F, 2) float32: per (image, row), max over pseudo-points and patches
    max: float
    mean: float
    p95: float
    failure_rate: float  # share of (row, point) pairs above the row's bound (nan without bounds)
    pairs: int  # (row, point) pairs with signal


def _signed_parts(weight: torch.Tensor):
    return weight.clamp(min=0), (-weight).clamp(min=0)


def _apply(module: nn.Module, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The layer's linear map with weight w and no bias, output as (B, F, P)."""
    if isinstance(module, nn.Linear):
        out = F.linear(a, w)  # (B, ..., F): middle positions are patches, as in unfold_input
        return out.reshape(out.shape[0], -1, out.shape[-1]).transpose(1, 2)
    a, padding = conv_padded(module, a)
    out = F.conv2d(a, w, None, module.stride, padding, module.dilation)
    return out.flatten(2)


@torch.no_grad()
def _layer_point_errors(module: nn.Module, a: torch.Tensor, w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(N, F, 2) relative error of each row per image: max over pseudo-points and patches."""
    n = a.shape[0]
    if (a < 0).any():  # same pseudo-points as the sensitivities (docs/sipp.md §2.1, 8.9)
        a = torch.cat([a.clamp(min=0), (-a).clamp(min=0)])
    wp, wn = _signed_parts(w)
    # Reweighting keeps each weight's sign, so the pruned row sigma is |v| on sigma's support.
    vp = torch.where(w > 0, v.abs(), torch.zeros_like(v))
    vn = torch.where(w < 0, v.abs(), torch.zeros_like(v))
    errs = []
    for full, approx in ((wp, vp), (wn, vn)):
        z = _apply(module, a, full)  # (B', F, P)
        zh = _apply(module, a, approx)
        rel = (zh - z).abs() / z.clamp(min=NO_SIGNAL)
        rel = torch.where(z > NO_SIGNAL, rel, torch.full_like(rel, float("nan")))
        e = torch.nan_to_num(rel, nan=-1.0).amax(dim=2)  # (B', F) max over patches
        e = e.reshape(-1, n, e.shape[1]).amax(dim=0)  # max over an image's pseudo-points
        errs.append(e)
    out = torch.stack(errs, dim=-1)  # (N, F, 2); -1 marks "no signal"
    return torch.where(out < 0, torch.full_like(out, float("nan")), out)


def measure_layer_errors(
    original: nn.Module,
    plans: dict,
    x: torch.Tensor,
    *,
    batch_size: int = 256,
) -> dict[str, LayerError]:
    """Layer-local relative errors of every planned layer on points x (see module doc)."""
    modules = prunable_layers(original)
    names = [n for n in plans if n in modules]
    device = next(original.parameters()).device
    per_layer: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    was_training = original.training
    original.eval()
    try:
        for i in range(0, len(x), batch_size):
            with torch.no_grad(), capture_inputs(original, names) as inputs:
                original(x[i : i + batch_size].to(device))
            for n in names:
                m = modules[n]
                w = m.weight.detach()
                v = plans[n].values.to(device=w.device, dtype=w.dtype).reshape(w.shape)
                per_layer[n].append(_layer_point_errors(m, inputs[n], w, v).cpu())
    finally:
        original.train(was_training)
    out = {}
    for n in names:
        pe = torch.cat(per_layer[n])  # (N, F, 2)
        valid = ~torch.isnan(pe)
        vals = pe[valid].double()
        bound = plans[n].row_bound.double()  # (F, 2)
        if vals.numel():
            mx, mean = float(vals.max()), float(vals.mean())
            p95 = float(torch.quantile(vals[: 2**24], 0.95))
        else:
            mx = mean = p95 = 0.0
        if torch.isnan(bound).all():
            fail = float("nan")
        else:
            above = (pe.double() > bound.unsqueeze(0)) & valid
            fail = float(above.sum()) / max(int(valid.sum()), 1)
        row = torch.where(valid, pe, torch.full_like(pe, -1.0)).amax(dim=0).double()
        row = torch.where(row < 0, torch.full_like(row, float("nan")), row)
        out[n] = LayerError(n, row, pe, mx, mean, p95, fail, int(valid.sum()))
    return out


@dataclass(frozen=True)
class EndToEnd:
    accuracy_before: float
    accuracy_after: float
    agreement: float  # top-1 agreement of the pruned copy with the original
    logits_rel_error: float  # mean over points of ||f'(x) - f(x)|| / ||f(x)||


def end_to_end(original: nn.Module, pruned: nn.Module, x: torch.Tensor, y: torch.Tensor, before_logits=None) -> EndToEnd:
    lo = predict(original, x) if before_logits is None else before_logits
    lp = predict(pruned, x)
    rel = (lp - lo).norm(dim=1) / lo.norm(dim=1).clamp(min=1e-12)
    return EndToEnd(
        accuracy_before=float((lo.argmax(1) == y).float().mean()),
        accuracy_after=float((lp.argmax(1) == y).float().mean()),
        agreement=float((lp.argmax(1) == lo.argmax(1)).float().mean()),
        logits_rel_error=float(rel.mean()),
    )

