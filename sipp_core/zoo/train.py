"""Training and evaluation of zoo models, seeded, with a progress callback."""
from __future__ import annotations

import copy
import math
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

Progress = Callable[[float, str], None]

# Per-model defaults chosen so the shipped networks train in seconds to minutes on a
# 2-core CPU and reach the accuracies stated in README.
DEFAULT_EPOCHS = {"lenet300": 30, "lenet5": 30, "mlp": 60, "cnn": 20}
DEFAULT_LR = 1e-3


def pick_device(device: str | None = None) -> torch.device:
    """'auto'/None -> CUDA when present, else CPU; 'cuda' without a GPU is a clear error."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available; use 'auto' or 'cpu'")
    if str(device) not in ("cpu",) and not str(device).startswith("cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    return torch.device(device)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """Logits for x (CPU float32), batched, in eval mode; x is moved to the model's device."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        outs = [model(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict(model, x).argmax(1) == y).float().mean())


def run_epoch(model, opt, sched, x, y, order, batch_size, device, *, after_step=None, should_stop=None):
    """One pass over x in `order`; returns (summed loss, points seen, cancelled).

    `after_step` runs after every optimizer step (masked training re-zeroes pruned weights there);
    `should_stop` is polled before every batch so a cancel lands within one step.
    """
    total, n = 0.0, 0
    for i in range(0, len(x), batch_size):
        if should_stop is not None and should_stop():
            return total, n, True
        idx = order[i : i + batch_size]
        xb, yb = x[idx].to(device), y[idx].to(device)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if after_step is not None:
            after_step()
        total += float(loss.detach()) * len(idx)
        n += len(idx)
    return total, n, False


def seconds_per_step(model: nn.Module, x, y, batch_size: int, device, lr: float = DEFAULT_LR) -> float:
    """Median time of one training step, measured on a copy (the model and its RNG use are untouched)."""
    probe = copy.deepcopy(model).to(device).train()
    opt = torch.optim.Adam(probe.parameters(), lr=lr)
    xb, yb = x[:batch_size].to(device), y[:batch_size].to(device)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        loss = F.cross_entropy(probe(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return sorted(times)[1]


def format_duration(seconds: float) -> str:
    """'40 s', '3.5 min', '1.2 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def train_model(
    model: nn.Module,
    record,
    *,
    epochs: int,
    lr: float = DEFAULT_LR,
    batch_size: int = 64,
    weight_decay: float = 0.0,
    seed: int = 0,
    device: str | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[nn.Module, float]:
    """Train `model` in place on record's train split with Adam and cosine decay.

    Returns (model in eval mode on the CPU, test accuracy). `should_stop` lets a UI cancel;
    a cancelled run raises InterruptedError so no half-trained model is cached.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    dev = pick_device(device)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout-free nets: only init order and shuffling need seeds
    model.to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    x, y = record.x_train, record.y_train
    steps_per_epoch = math.ceil(len(x) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    if progress is not None:  # a long run announces itself with an estimate before it starts
        est = seconds_per_step(model, x, y, batch_size, dev, lr) * steps_per_epoch * epochs
        progress(0.0, f"training {epochs} epochs x {steps_per_epoch} steps on {dev.type}: about "
                      f"{format_duration(est)} (timed from 3 steps)")
    start = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        total, n, _ = run_epoch(model, opt, sched, x, y, order, batch_size, dev)
        if should_stop is not None and should_stop():
            raise InterruptedError(f"training cancelled after {epoch + 1} of {epochs} epochs")
        if progress is not None:
            elapsed = time.perf_counter() - start
            eta = elapsed / (epoch + 1) * (epochs - epoch - 1)
            progress((epoch + 1) / epochs, f"epoch {epoch + 1}/{epochs}: loss {total / n:.4f}, about {eta:.0f} s left")
    model.to("cpu").eval()
    return model, accuracy(model, record.x_test, record.y_test)
