"""Slow reference loops for benchmarks/bench_sensitivity.py (written for this project).

Both follow the structure of the authors' torchprune sensitivity tracker (SiPP,
method/base_sens): S is fed one image per forward pass, and for every prunable layer
a Python loop over the output units computes that unit's ratios g over (J, P) and
updates a running max. They give the same numbers as ``compute_sensitivities`` (a
test checks this on tiny nets); they differ only in how much per-unit work they do.

- ``authors_loop``: every step the authors' tracker performs per point and per unit,
  in the same order: pseudo-points built by boolean-mask assignment, the layer
  output minus its bias, z+ and z- from copies of the layer with W+ and W- (signed,
  zero bias), no-signal entries of |z| set to inf, then per unit and per sign
  g = w_f * a, g /= z_f, a copy of g, the max of the two signs, the reduction over
  patches (``torch.max(dim)``, values and indices), the reduction over each input
  channel's kernel positions (the tracker's input-channel sensitivity, kept beside
  the edge sensitivity) and the running maxima. This is the figure the engine issue
  compares against ("about 2.8 s" for LeNet-300-100 on this class of machine).
- ``lean_loop``: the same loop structure with only the work needed for the edge
  sensitivities (no copies of g, no input-channel sensitivity, no bias handling).
  A lower bound on what any per-image, per-unit Python loop costs.

The definition itself, per point, unit, patch and edge, is
``sipp_core.sensitivity.reference`` (far slower: it is the tests' oracle). Both loops
here use its no-signal rule (EPS); ``lean_loop`` also its pseudo-points, while
``authors_loop`` keeps the tracker's own boolean-mask construction of them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as Fnn
from torch import nn

from sipp_core.sensitivity.reference import EPS, pseudo_points
from sipp_core.zoo.layers import prunable_layers, weight_matrix

__all__ = ["authors_loop", "lean_loop"]


def _unfold(module: nn.Module, a: torch.Tensor) -> torch.Tensor:
    """(batch, J, P): F.unfold for a Conv2d, (batch, J, 1) for a Linear."""
    if isinstance(module, nn.Conv2d):
        return Fnn.unfold(a, module.kernel_size, dilation=module.dilation, padding=module.padding,
                          stride=module.stride)
    return a.reshape(-1, a.shape[-1]).unsqueeze(-1)


def _as_batch_units_patches(z: torch.Tensor) -> torch.Tensor:
    return z.reshape(z.shape[0], z.shape[1], -1) if z.ndim > 2 else z.reshape(z.shape[0], z.shape[1], 1)


def _one_image_at_a_time(model: nn.Module, points: torch.Tensor, handles: list) -> None:
    """Feed S one image per forward pass, as the authors do, then remove the hooks ``handles``."""
    try:
        with torch.no_grad():
            for i in range(points.shape[0]):  # mini-batches of one image
                model(points[i : i + 1])
    finally:
        for h in handles:
            h.remove()


# --------------------------------------------------------------------------- the tracker's full per-point work


class _Tracker:
    """Per-layer state of the authors' tracker: signed copies of the layer and the maxima."""

    def __init__(self, module: nn.Module, patch_reduction: str):
        import copy

        self.module = module
        self.reduce_max = patch_reduction == "max"
        w = module.weight.detach()
        w_plus, w_minus = torch.zeros_like(w), torch.zeros_like(w)
        w_plus[w > 0], w_minus[w < 0] = w[w > 0], w[w < 0]
        self.plus, self.minus = copy.deepcopy(module), copy.deepcopy(module)
        for twin, weight in ((self.plus, w_plus), (self.minus, w_minus)):
            twin.weight.data = weight
            if twin.bias is not None:
                twin.bias.data = torch.zeros_like(twin.bias)
        self.sens = torch.zeros(weight_matrix(module).shape, device=w.device)
        self.sens_in = torch.zeros(w.shape[1], device=w.device)

    def _reduce(self, g: torch.Tensor, dim: int) -> torch.Tensor:
        return torch.max(g, dim=dim)[0] if self.reduce_max else torch.mean(g, dim=dim)

    def _adapt(self, a: torch.Tensor) -> torch.Tensor:
        bigger = a >= 0.0
        if bool(torch.all(bigger)):
            return a
        a_pos, a_neg = torch.zeros_like(a), torch.zeros_like(a)
        a_pos[bigger] = a[bigger]
        a_neg[~bigger] = a[~bigger]
        return torch.cat((a_pos, -a_neg))

    @staticmethod
    def _denominator(z: torch.Tensor) -> torch.Tensor:
        return z.masked_fill_(torch.le(torch.abs(z), EPS), float("inf"))

    def hook(self, module, ins, outs) -> None:
        a = self._adapt(ins[0].detach())
        if module.bias is not None:  # the tracker keeps the pre-activation without bias
            shape = [1] * outs.ndim
            shape[1 if isinstance(module, nn.Conv2d) else -1] = -1
            z_no_bias = outs.detach() - module.bias.detach().view(shape)
        else:
            z_no_bias = outs.detach().clone()
        z_plus = self._denominator(_as_batch_units_patches(self.plus(a)))
        z_minus = self._denominator(_as_batch_units_patches(self.minus(a)))
        _as_batch_units_patches(z_no_bias)
        cols = _unfold(module, a)
        w_plus = self.plus.weight.detach().reshape(self.sens.shape[0], -1)
        w_minus = self.minus.weight.detach().reshape(self.sens.shape[0], -1)
        batch = cols.shape[0]
        g_sens = torch.zeros((batch,) + tuple(self.sens.shape), device=cols.device)
        g_sens_in = torch.zeros((batch,) + tuple(self.sens_in.shape), device=cols.device)
        for f in range(w_plus.shape[0]):
            g = torch.max(self._ratio(w_plus[f], cols, z_plus[:, f]), self._ratio(w_minus[f], cols, z_minus[:, f]))
            g = self._reduce(g, -1)
            g_in = self._reduce(g.view(batch, self.sens_in.shape[0], -1), -1)
            g_sens[:, f] = g.view_as(g_sens[:, f])
            g_sens_in = torch.max(g_sens_in, g_in)
        self.sens.copy_(torch.max(self.sens, torch.max(g_sens, dim=0)[0].view(self.sens.shape)))
        self.sens_in.copy_(torch.max(self.sens_in, torch.max(g_sens_in, dim=0)[0]))

    @staticmethod
    def _ratio(w_f: torch.Tensor, cols: torch.Tensor, z_f: torch.Tensor) -> torch.Tensor:
        g = w_f.unsqueeze(0).unsqueeze(-1) * cols
        g /= z_f.unsqueeze(1)
        return g.clone().detach()


def authors_loop(model: nn.Module, points: torch.Tensor, patch_reduction: str = "max") -> dict[str, torch.Tensor]:
    """Edge sensitivities by the authors' tracker's per-point, per-unit work (see the module doc)."""
    layers = prunable_layers(model)
    trackers = {n: _Tracker(m, patch_reduction) for n, m in layers.items()}
    _one_image_at_a_time(model, points, [m.register_forward_hook(trackers[n].hook) for n, m in layers.items()])
    # the tracker stores max(g+, g-) per edge; for a weight of either sign only its own sign's g is non-zero
    return {n: t.sens.abs().reshape(layers[n].weight.shape) for n, t in trackers.items()}


# --------------------------------------------------------------------------- the same loop, edge work only


def lean_loop(model: nn.Module, points: torch.Tensor, patch_reduction: str = "max") -> dict[str, torch.Tensor]:
    """One image per forward pass; per layer, W+ and W- (no bias) give z+ and z- (|z| <= eps
    set to inf); a Python loop over output units computes that unit's g over (J, P) for W+ and
    W-, keeps the larger, reduces over patches and updates the running max over points."""
    layers = prunable_layers(model)
    sens = {n: torch.zeros(weight_matrix(m).shape, device=points.device) for n, m in layers.items()}
    plus, minus = {}, {}
    for n, m in layers.items():
        w = m.weight.detach()
        plus[n], minus[n] = w.clamp(min=0), w.clamp(max=0)

    def run(name, module, a):
        a = pseudo_points(a)  # docs/sipp.md §2.1
        if isinstance(module, nn.Linear):
            zp = Fnn.linear(a, plus[name]).reshape(a.shape[0], -1, 1)
            zm = Fnn.linear(a, minus[name]).reshape(a.shape[0], -1, 1)
        else:
            kw = dict(stride=module.stride, padding=module.padding, dilation=module.dilation)
            zp = Fnn.conv2d(a, plus[name], **kw).flatten(2)
            zm = Fnn.conv2d(a, minus[name], **kw).flatten(2)
        au = _unfold(module, a)
        zp = zp.masked_fill(zp.abs() <= EPS, float("inf"))
        zm = zm.masked_fill(zm.abs() <= EPS, float("inf"))
        wp = plus[name].reshape(plus[name].shape[0], -1)
        wm = minus[name].reshape(minus[name].shape[0], -1)
        g_sens = torch.zeros(a.shape[0], *sens[name].shape, device=a.device)
        for f in range(wp.shape[0]):
            g = torch.max(wp[f][None, :, None] * au / zp[:, f][:, None, :],
                          wm[f][None, :, None] * au / zm[:, f][:, None, :])
            g = g.amax(-1) if patch_reduction == "max" else g.mean(-1)
            g_sens[:, f] = g
        sens[name].copy_(torch.max(sens[name], g_sens.amax(0)))

    hooks = [m.register_forward_pre_hook(lambda mod, args, n=n: run(n, mod, args[0].detach()))
             for n, m in layers.items()]
    _one_image_at_a_time(model, points, hooks)
    return {n: s.abs().reshape(layers[n].weight.shape) for n, s in sens.items()}
