"""Measured error (docs/sipp.md §7): what the bounds promise against what happens.

Layer-local error feeds the ORIGINAL network's input a(x) of a layer to both the
original and the pruned weights, which is exactly what the row bounds talk
about. Signs are kept apart: z+ and z- are compared separately, and a relative
error is |zhat^s - z^s| / z^s where z^s > float32 eps (docs/sipp.md §7 and 8.9).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
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


REFERENCE_BYTES = 64 * 2**20  # keep the original side of a measurement up to this size (small networks)


def _pseudo_points(a: torch.Tensor) -> torch.Tensor:
    """Inputs with negative entries split into a+ and a- (the sensitivities' pseudo-points, docs/sipp.md §2.1,
    8.9); inputs with none stay as they are."""
    return torch.cat([a.clamp(min=0), (-a).clamp(min=0)]) if (a < 0).any() else a


@torch.no_grad()
def _original_side(module: nn.Module, a: torch.Tensor) -> tuple:
    """(pseudo-points, z+, z-): what a layer's error measurement needs from the original weights."""
    a = _pseudo_points(a)
    wp, wn = _signed_parts(module.weight.detach())
    return a, _apply(module, a, wp), _apply(module, a, wn)


def _pruned_parts(w: torch.Tensor, v: torch.Tensor) -> tuple:
    """(v+, v-): the pruned weights on the original positive and negative supports. Reweighting keeps each
    weight's sign, so the pruned row sigma is |v| on sigma's support."""
    return torch.where(w > 0, v.abs(), 0.0), torch.where(w < 0, v.abs(), 0.0)


@torch.no_grad()
def _point_errors(module: nn.Module, a: torch.Tensor, z: tuple, n: int, v: tuple) -> torch.Tensor:
    """(N, F, 2) relative error of each row per image: max over pseudo-points and patches.

    a, z: the layer's pseudo-points and the original (z+, z-) on them; n: images; v: the pruned (v+, v-).
    """
    errs = []
    for full, approx in zip(z, v):
        zh = _apply(module, a, approx)
        rel = (zh - full).abs() / full.clamp(min=NO_SIGNAL)
        # -1 marks "no signal" (and a NaN error); max over patches, then over an image's pseudo-points
        e = torch.where(full > NO_SIGNAL, rel, -1.0).nan_to_num_(nan=-1.0).amax(dim=2)  # (B', F)
        errs.append(e.reshape(-1, n, e.shape[1]).amax(dim=0))
    out = torch.stack(errs, dim=-1)  # (N, F, 2)
    return torch.where(out < 0, float("nan"), out)


@dataclass(frozen=True, eq=False)
class Reference:
    """The original network's side of measure_layer_errors on fixed points, which no pruning changes: per batch
    and layer, the pseudo-points and z+, z-. Kept (see reference()) so that re-pruning computes only the pruned
    side: about a third of the work, and no forward pass."""

    x: torch.Tensor
    names: tuple
    batches: list  # per batch: (images, {name: (pseudo-points, z+, z-)})
    nbytes: int


def _batches(original: nn.Module, names: list, x: torch.Tensor, batch_size: int, device):
    """Per batch of x: (images, {name: layer input}) from one forward pass of the original network.

    A program uploaded for a fixed batch size (io.exported_upload.PerBatch) runs its layers once per piece of that
    size, the last piece padded with copies of its last point, and a hook keeps a layer's last input only: so it
    gets batches of exactly its size (one call each), and the padding's rows are cut off its layers' inputs."""
    fixed = getattr(original, "fixed_batch", None)
    batch_size = int(fixed) if fixed else batch_size
    was_training = original.training
    original.eval()
    try:
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size]
            with torch.no_grad(), capture_inputs(original, names) as inputs:
                original(xb.to(device))
            yield len(xb), {n: a[: len(xb)] for n, a in inputs.items()}
    finally:
        original.train(was_training)


def reference(original: nn.Module, names, x: torch.Tensor, *, batch_size: int = 256,
              max_bytes: int = REFERENCE_BYTES) -> Reference | None:
    """The Reference of `original` on points x for layers `names`, or None when it would hold more than
    max_bytes (large networks recompute it on every measurement instead)."""
    modules = prunable_layers(original)
    names = tuple(n for n in names if n in modules)
    device = next(original.parameters()).device
    batches, total = [], 0
    for n_img, inputs in _batches(original, list(names), x, batch_size, device):
        parts = {n: _original_side(modules[n], inputs[n]) for n in names}
        total += sum(t.element_size() * t.nelement() for p in parts.values() for t in p)
        if total > max_bytes:
            return None
        batches.append((n_img, parts))
    return Reference(x, names, batches, total)


def measure_layer_errors(
    original: nn.Module,
    plans: dict,
    x: torch.Tensor,
    *,
    batch_size: int = 256,
    ref: Reference | None = None,
) -> dict[str, LayerError]:
    """Layer-local relative errors of every planned layer on points x (see module doc).

    ref: reference(original, ..., x) computed before (same network, same points, the same or more layers):
    the same numbers, computed faster.
    """
    modules = prunable_layers(original)
    names = [n for n in plans if n in modules]
    device = next(original.parameters()).device
    per_layer: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    if ref is not None and (ref.x is not x or not set(names) <= set(ref.names)):
        ref = None  # made for other points or layers: measure without it
    batches = ref.batches if ref is not None else (
        (n_img, {n: _original_side(modules[n], inputs[n]) for n in names})
        for n_img, inputs in _batches(original, names, x, batch_size, device))
    pruned = {}
    for n in names:
        w = modules[n].weight.detach()
        pruned[n] = _pruned_parts(w, plans[n].values.to(device=w.device, dtype=w.dtype).reshape(w.shape))
    for n_img, parts in batches:
        for n in names:
            a, zp, zn = parts[n]
            per_layer[n].append(_point_errors(modules[n], a, (zp, zn), n_img, pruned[n]).cpu())
    out = {}
    for n in names:
        pe = torch.cat(per_layer[n])  # (N, F, 2)
        valid = ~torch.isnan(pe)
        vals = pe[valid].double()
        bound = plans[n].row_bound.double()  # (F, 2)
        if vals.numel():
            mx, mean = float(vals.max()), float(vals.mean())
            p95 = float(np.quantile(vals[: 2**24].numpy(), 0.95))  # = torch.quantile, faster
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

