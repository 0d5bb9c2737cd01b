"""Channel sensitivities: how much one input channel of a layer can matter, measured on a batch S.

For a layer's input channel j (a feature map of a Conv2d's input, or one input feature of a Linear),

    s_j = max over points x of S, output units i, patches p and kernel taps k of
          |W_ijk| a_jkp(x) / z^sigma_ip(x),

the largest share any single weight tap of channel j takes of its unit's same-sign partial
pre-activation z^sigma (bias excluded; inputs split into non-negative pseudo-points a+ and a- where
they have negative entries; a denominator of at most float32's epsilon counts as no signal). That is
exactly the maximum, over the channel's weights, of SiPP's edge sensitivities with the max patch
reduction (docs/sipp.md §2), so it is computed by the same batched, memory-bounded engine and then
reduced over output units and taps. It lies in [0, 1]; a channel whose weights are all zero scores 0.
"""
from __future__ import annotations

import torch
from torch import nn

from ..sensitivity.api import compute_sensitivities
from ..sensitivity.budget import DEFAULT_CHUNK_BYTES

__all__ = ["channel_sensitivities", "reduce_to_channels"]


def channel_sensitivities(model: nn.Module, inputs: torch.Tensor, *, progress=None,
                          chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> dict[str, torch.Tensor]:
    """{layer name: tensor of shape (in_channels,)} for every prunable layer, keyed like
    ``compute_sensitivities``; the model is left unchanged.

    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> {k: tuple(v.shape) for k, v in channel_sensitivities(net, torch.rand(8, 3)).items()}
    {'0': (3,), '2': (4,)}
    """
    edges = compute_sensitivities(model, inputs, patch_reduction="max", progress=progress, chunk_bytes=chunk_bytes)
    return reduce_to_channels(edges)


def reduce_to_channels(edges: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-channel maxima of edge sensitivities computed with the max patch reduction (the app's cache)."""
    out = {}
    for name, s in edges.items():
        per_channel = s.reshape(s.shape[0], s.shape[1], -1)  # (F, C, taps): Linear has one tap
        out[name] = per_channel.amax(dim=(0, 2))  # (C,)
    return out
