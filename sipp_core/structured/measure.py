"""What a network costs, counted and timed: parameters, multiply-accumulates per layer, file size, latency.

FLOPs here are multiply-accumulates of the Linear and Conv2d layers for one input point: nonzero weights
times output positions (the authors' count). For a dense network that is weight count x positions; for
a masked one only nonzero weights count, though a dense kernel still computes the zeros; for the smaller
network the count is what really runs. Latency is the median of interleaved runs in one process.
"""
from __future__ import annotations

import io
import statistics
import time

import torch
from torch import nn


def count_params(model: nn.Module, nonzero: bool = True) -> int:
    """Parameters (biases and batch-norm entries included); only nonzero ones when `nonzero`."""
    if nonzero:
        return int(sum(int((p != 0).sum()) for p in model.parameters()))
    return int(sum(p.numel() for p in model.parameters()))


def layer_flops(model: nn.Module, example: torch.Tensor, nonzero: bool = True) -> dict[str, int]:
    """{layer: multiply-accumulates for one point} of every Linear / Conv2d, by one forward pass."""
    positions, handles = {}, []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            def hook(mod, args, out, name=name):
                positions[name] = out[0].numel() // out.shape[1] if out.ndim > 2 else 1
            handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model.eval()(example[:1])
    finally:
        for h in handles:
            h.remove()
    out = {}
    for name, m in model.named_modules():
        if name in positions:
            w = m.weight
            weights = int((w != 0).sum()) if nonzero else w.numel()
            out[name] = weights * positions[name]
    return out


def file_bytes(model: nn.Module) -> int:
    """Size of the network's state_dict as torch.save writes it."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


def latency_ms(models: dict[str, nn.Module], inputs: torch.Tensor, runs: int = 20, warmup: int = 3) -> dict[str, float]:
    """{name: median milliseconds of one forward pass on `inputs`}; the models take turns in every round, so
    a machine that slows down or speeds up during the measurement affects them all alike."""
    times = {k: [] for k in models}
    with torch.inference_mode():
        for m in models.values():
            m.eval()
            for _ in range(warmup):
                m(inputs)
        for _ in range(runs):
            for k, m in models.items():
                t = time.perf_counter()
                m(inputs)
                times[k].append((time.perf_counter() - t) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}
