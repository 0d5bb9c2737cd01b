"""Retrain a filter-pruned network: the smaller network itself, with its remaining zero weights held at zero.

Most removed channels are gone from the smaller network's shapes; what is left at zero (a filter of a
residual stream that every consumer dropped, a column kept because the channel reaches the layer anyway)
stays zero through training, as in the authors' retraining with a frozen mask.
"""
from __future__ import annotations

import copy

from torch import nn

from ..zoo.layers import prunable_layers
from .masked_training import TrainLog, train_masked


def zero_masks(model: nn.Module) -> dict:
    """{layer: bool mask of nonzero weights} of every Linear / Conv2d layer."""
    return {n: (m.weight.detach() != 0) for n, m in prunable_layers(model).items()}


def retrain_filters(model: nn.Module, record, *, epochs: int, lr: float = 1e-3, seed: int = 0, device: str | None = "cpu",
                    progress=None, should_stop=None) -> tuple[nn.Module, TrainLog]:
    """(retrained copy of `model`, its training log); `model` (e.g. FilterPruneResult.model) is not changed."""
    net = copy.deepcopy(model)
    log = train_masked(net, zero_masks(net), record, epochs=epochs, lr=lr, seed=seed, device=device,
                       progress=progress, should_stop=should_stop)
    return net, log
