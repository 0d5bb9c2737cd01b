"""A Conv2d's own output, assembled from the partial pre-activations the sensitivity
engines compute anyway.

The engines compute z = [z+; z-] (the positive- and negative-weight parts of every
pre-activation) for every point of S. The layer's output without bias is z+ - z-
(for a layer with pseudo-points, (z+ - z-)(a+) - (z+ - z-)(a-), since a = a+ - a-).
Handing that to the model in place of its own convolution saves the forward pass over
S one convolution per layer (about a sixth of compute_sensitivities on a CIFAR ResNet
on the CPU). Its rounding error is of the same order as the convolution's own (both
are bounded by a few float32 ulps of sum |W| a = z+ + z-).

Only a plain nn.Conv2d whose forward is exactly ``F.conv2d`` on the hooked input is
fused, with no other hooks on it that would see the substituted input, float32
throughout and autocast off; anything else runs the model's own convolution.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules import module as _module


class ConvOutput:
    """Collects W a (n, F, P) from chunks of z (k, 2F, P) of the engine's point list:
    points 0 .. n-1 are the inputs (their positive parts a+ when ``negative``), and with
    ``negative`` points n .. 2n-1 their negative parts a-."""

    def __init__(self, n: int, f_units: int, patches: int, negative: bool, device):
        self.y = torch.empty(n, f_units, patches, device=device)
        self.n, self.f, self.negative = n, f_units, negative
        self.filled = torch.zeros(2 if negative else 1, n, dtype=torch.bool)  # which parts arrived

    def add(self, first: int, z: torch.Tensor) -> None:
        """z (k, 2F, P) of points first .. first + k - 1; call before z is changed in place.

        The a+ part of a point must come before its a- part (the engines go through the
        points in order). A part that arrived already is skipped (an engine may compute a
        chunk's z twice)."""
        k, f, n = z.shape[0], self.f, self.n
        pos = max(0, min(k, n - first))  # the first pos points are inputs or their a+
        if pos and not bool(self.filled[0, first : first + pos].any()):
            torch.sub(z[:pos, :f], z[:pos, f:], out=self.y[first : first + pos])
            self.filled[0, first : first + pos] = True
        i0, i1 = first + pos - n, first + k - n
        if pos < k and not bool(self.filled[1, i0:i1].any()):
            if not bool(self.filled[0, i0:i1].all()):
                raise RuntimeError("ConvOutput: a- part of a point before its a+ part")
            self.y[i0:i1].sub_(z[pos:, :f]).add_(z[pos:, f:])
            self.filled[1, i0:i1] = True

    def complete(self) -> bool:
        return bool(self.filled.all())


def fusable(module: nn.Module, a: torch.Tensor, own_hooks: int = 1) -> bool:
    """Whether compute_sensitivities may hand ``module`` an output built by ConvOutput
    instead of letting it convolve ``a``: see the module docstring."""
    return (
        type(module) is nn.Conv2d
        and module.groups == 1
        and a.ndim == 4
        and a.dtype == torch.float32
        and module.weight.dtype == torch.float32
        and (module.bias is None or module.bias.dtype == torch.float32)
        and not torch.is_autocast_enabled(a.device.type)
        and len(module._forward_pre_hooks) == own_hooks
        and len(module._forward_hooks) == own_hooks
        and not module._backward_hooks
        and not _module._global_forward_pre_hooks
        and not _module._global_forward_hooks
    )


def as_module_output(out: ConvOutput, module: nn.Conv2d, ho: int, wo: int) -> torch.Tensor:
    """The (n, F, Ho, Wo) output the module would have returned (bias added)."""
    y = out.y.view(out.n, out.f, ho, wo)
    if module.bias is not None:
        y.add_(module.bias.detach().view(1, -1, 1, 1))
    return y
