"""Training a pruned network with its mask fixed, and what the cascade and training in isolation share.

Mask-fixed training (:func:`train_masked`). Pruned weights must stay exactly zero while the rest
trains. Two guards, both needed: a gradient hook multiplies each masked weight's gradient by the mask
(so Adam's moment estimates of pruned weights stay zero), and after every optimizer step the weight is
multiplied by the mask again (weight decay, or moments left over from earlier dense training, would
otherwise revive pruned weights). Each result records that check (``pruned_weights_zero``).

The shared setup: the batch S drawn exactly as ``pipeline.prepare`` draws it, the method's masks, the argument
checks and the JSON form of a result.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..options import DELTA_S, METHODS
from ..plan.bounds import draw_sample
from ..plan.bounds import sample_size as sample_size_formula
from ..plan.pruning import prune
from ..zoo.train import DEFAULT_LR, Progress, accuracy, pick_device, run_epoch
from .run_records import to_jsonable

__all__ = ["TrainLog", "apply_masks", "check_common", "densities", "draw_s", "dumps", "mask_ratio", "masks_hold",
           "prune_masks", "random_masks", "train_masked"]


# ---------------------------------------------------------------------------------------------------
# masks


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """Zero the masked-out weights in place (masks: layer name -> bool tensor shaped like the weight)."""
    modules = dict(model.named_modules())
    missing = [n for n in masks if n not in modules or not hasattr(modules[n], "weight")]
    if missing:
        raise ValueError(f"masks name layers the model does not have: {missing[:5]}")
    with torch.no_grad():
        for n, mask in masks.items():
            w = modules[n].weight
            if tuple(mask.shape) != tuple(w.shape):
                raise ValueError(f"mask of {n} is shaped {tuple(mask.shape)}, its weight {tuple(w.shape)}")
            w.mul_(mask.to(device=w.device, dtype=w.dtype))
    return model


def masks_hold(model: nn.Module, masks: dict[str, torch.Tensor]) -> bool:
    """True when every masked-out weight is exactly zero."""
    modules = dict(model.named_modules())
    return all(
        bool((modules[n].weight.detach()[~m.to(modules[n].weight.device, torch.bool)] == 0).all())
        for n, m in masks.items()
    )


def random_masks(
    reference: dict[str, torch.Tensor], *, scope: str = "layerwise", seed: int = 0
) -> dict[str, torch.Tensor]:
    """Random masks with the same kept counts as `reference`: per layer ("layerwise") or in total ("global")."""
    if scope not in ("layerwise", "global"):
        raise ValueError(f"random_scope must be 'layerwise' or 'global'; got {scope!r}")
    gen = torch.Generator().manual_seed(seed)
    if scope == "layerwise":
        out = {}
        for n, m in reference.items():
            flat = torch.zeros(m.numel(), dtype=torch.bool)
            flat[torch.randperm(m.numel(), generator=gen)[: int(m.sum())]] = True
            out[n] = flat.reshape(m.shape)
        return out
    sizes = [m.numel() for m in reference.values()]
    flat = torch.zeros(sum(sizes), dtype=torch.bool)
    flat[torch.randperm(sum(sizes), generator=gen)[: sum(int(m.sum()) for m in reference.values())]] = True
    return {n: part.reshape(m.shape) for (n, m), part in zip(reference.items(), torch.split(flat, sizes))}


def mask_ratio(masks: dict[str, torch.Tensor]) -> float:
    total = sum(m.numel() for m in masks.values())
    return sum(int(m.sum()) for m in masks.values()) / total if total else 0.0


def densities(masks: dict[str, torch.Tensor]) -> dict[str, float]:
    return {n: float(m.float().mean()) for n, m in masks.items()}


# ---------------------------------------------------------------------------------------------------
# training with a fixed mask


@dataclass
class TrainLog:
    """What one training run did. ``test_accuracy[i]`` is measured after epoch i + 1."""

    epochs_done: int = 0
    loss: list = field(default_factory=list)
    test_accuracy: list = field(default_factory=list)
    snapshots: dict = field(default_factory=dict)  # epoch -> state_dict (CPU copies), for rewinding
    cancelled: bool = False
    seconds: float = 0.0
    pruned_weights_zero: bool | None = None  # checked after training when a mask was given

    def to_dict(self) -> dict:
        return dict(epochs_done=self.epochs_done, loss=list(self.loss), test_accuracy=list(self.test_accuracy),
                    cancelled=self.cancelled, seconds=self.seconds, pruned_weights_zero=self.pruned_weights_zero)


def train_masked(
    model: nn.Module,
    masks: dict[str, torch.Tensor] | None,
    record,
    *,
    epochs: int,
    schedule_epochs: int | None = None,
    lr: float = DEFAULT_LR,
    batch_size: int = 64,
    weight_decay: float = 0.0,
    seed: int = 0,
    device: str | None = "auto",
    snapshot_epochs=(),
    track_accuracy: bool = True,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainLog:
    """Train `model` in place on record's train split with the masked-out weights held at exactly zero.

    Same algorithm as ``train.train_model`` (Adam, cosine decay per step, seeded shuffling); with
    ``masks=None`` and equal arguments it reproduces train_model's weights. The model ends on the CPU
    in eval mode.

    Args:
        masks: layer name -> bool tensor shaped like the weight (True = kept), or None for dense training.
        epochs: epochs to run now.
        schedule_epochs: length of the cosine schedule (default `epochs`); run fewer epochs than the
            schedule to stop early on the same trajectory (e.g. to get theta_k for rewinding).
        snapshot_epochs: epochs after which a CPU copy of the state_dict is kept (0 = before training).
        track_accuracy: measure test accuracy after every epoch.
        should_stop: polled after every batch; when it returns True the run stops (cancelled=True).
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    schedule_epochs = int(schedule_epochs or epochs or 1)
    if schedule_epochs < epochs:
        raise ValueError(f"schedule_epochs ({schedule_epochs}) must be >= epochs ({epochs})")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr}")
    dev = pick_device(device)
    log = TrainLog()
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.to(dev).train()
    modules = dict(model.named_modules())
    hooks = []
    dev_masks = {}
    if masks:
        apply_masks(model, masks)
        for n, m in masks.items():
            w = modules[n].weight
            mf = m.to(device=dev, dtype=w.dtype)
            dev_masks[n] = mf
            hooks.append(w.register_hook(lambda g, mf=mf: g * mf))
    @torch.no_grad()
    def rezero():  # Adam's momentum would otherwise revive pruned weights
        for name, mf in dev_masks.items():
            modules[name].weight.mul_(mf)

    snapshot_epochs = set(int(e) for e in snapshot_epochs)
    if 0 in snapshot_epochs:
        log.snapshots[0] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    x, y = record.x_train, record.y_train
    steps_per_epoch = math.ceil(len(x) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=schedule_epochs * steps_per_epoch)
    try:
        for epoch in range(epochs):
            order = torch.randperm(len(x), generator=gen)
            total, n, log.cancelled = run_epoch(model, opt, sched, x, y, order, batch_size, dev,
                                                after_step=rezero if dev_masks else None, should_stop=should_stop)
            if log.cancelled:
                break
            log.epochs_done = epoch + 1
            log.loss.append(total / max(n, 1))
            if track_accuracy:
                log.test_accuracy.append(accuracy(model, record.x_test, record.y_test))
            if epoch + 1 in snapshot_epochs:
                log.snapshots[epoch + 1] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            if progress is not None:
                acc = f", test accuracy {log.test_accuracy[-1]:.4f}" if track_accuracy else ""
                progress((epoch + 1) / epochs, f"epoch {epoch + 1}/{epochs}: loss {log.loss[-1]:.4f}{acc}")
    finally:
        for h in hooks:
            h.remove()
        model.to("cpu").eval()
    if masks:
        log.pruned_weights_zero = masks_hold(model, masks)
    log.seconds = time.perf_counter() - start
    return log


# ---------------------------------------------------------------------------------------------------
# shared setup


def draw_s(net: nn.Module, record, sample_size: int | None, seed: int):
    """The batch S exactly as pipeline.prepare draws it: the |S| formula (capped at the pool) or a given size."""

    n_pool = len(record.x_pool)
    size = sample_size_formula(net, record.input_shape, DELTA_S) if sample_size is None else int(sample_size)
    if sample_size is None:
        size = min(size, n_pool)
    idx = draw_sample(n_pool, size, seed)
    return record.x_pool[idx], record.y_pool[idx]


def prune_masks(net, s_x, s_y, *, method, keep_ratio, delta, seed, sensitivities=None):
    return prune(net, s_x, method=method, keep_ratio=keep_ratio, delta=delta, seed=seed, labels=s_y,
                 sensitivities=sensitivities)


def check_common(method: str, lr: float, epochs: int) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number; got {lr!r}")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer; got {epochs!r}")


def dumps(obj) -> str:
    return json.dumps(to_jsonable(obj), indent=2)
