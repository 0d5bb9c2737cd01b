"""Filters nobody needs: after channels are removed, a filter whose output no longer reaches the loss on
S gets an exactly zero weight gradient, and is removed too.

That catches a producer's filter j once its consumer dropped channel j, and also filters that are dead
on every point of S (a ReLU that never fires), which the allocation did not choose; those are counted
separately so the user sees how many went that way.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..zoo.layers import prunable_layers

BATCH = 64  # points per backward pass: bounds the memory of the activations


def zero_gradient_rows(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """{layer: bool (filters,)} of filters whose weight gradient is exactly zero over all of S, with the
    network in eval mode (cross-entropy on the labels, or half the squared outputs without labels).
    The model's weights are not changed; its gradients are cleared afterwards."""
    layers = prunable_layers(model)
    was_training = model.training
    model.eval()
    flags = {n: m.weight.requires_grad for n, m in layers.items()}
    for m in layers.values():
        m.weight.requires_grad_(True)
        m.weight.grad = None
    try:
        with torch.enable_grad():
            for start in range(0, len(inputs), BATCH):
                out = model(inputs[start:start + BATCH])
                if labels is not None:
                    loss = F.cross_entropy(out, labels[start:start + BATCH].long(), reduction="sum")
                else:
                    loss = 0.5 * out.pow(2).sum()
                loss.backward()
        zero = {}
        for n, m in layers.items():
            g = m.weight.grad
            zero[n] = torch.zeros(m.weight.shape[0], dtype=torch.bool) if g is None else \
                (g.reshape(g.shape[0], -1) == 0).all(dim=1).cpu()
    finally:
        for n, m in layers.items():
            m.weight.grad = None
            m.weight.requires_grad_(flags[n])
        model.train(was_training)
    return zero


def propagate(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Zero, in place, every filter (weight row) of `model` with a zero gradient on S; returns the rows
    that were nonzero before and are zero now, by layer."""
    zero = zero_gradient_rows(model, inputs, labels)
    removed = {}
    with torch.no_grad():
        for n, m in prunable_layers(model).items():
            rows = m.weight.reshape(m.weight.shape[0], -1)
            newly = zero[n] & (rows != 0).any(dim=1).cpu()
            if newly.any():
                m.weight[newly.to(m.weight.device)] = 0.0
            removed[n] = newly
    return removed
