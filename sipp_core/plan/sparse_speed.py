"""Why is the pruned model not faster? Measure it: dense vs sparse (CSR) latency and file sizes.

    rec = measure(result)                    # a PruneResult, or measure(model, masks)
    rec.to_frame()                           # one row per (layer, batch size): dense / CSR medians, speed-up
    rec.files                                # bytes: dense state_dict, CSR state_dict, compressed sparse
    EXPLANATION                              # the sentence the panel shows

Latency is the median of ``repeats`` timed runs of one layer's matrix product
(no bias, no activation), after ``warmup`` untimed runs, on the CPU by default
(the app's panel explains CPU latency; pass device="cuda" to time a GPU):

* dense:  ``F.linear(x, W)`` with the pruned weight W (zeros included), x shaped (B, J);
* CSR:    ``torch.sparse.mm(W_csr, x.T)`` with W stored as ``torch.sparse_csr``.

Only ``nn.Linear`` layers are timed; convolutions are listed as not timed (PyTorch
has no sparse convolution kernel; an im2col + CSR product would time the unfold,
not the sparsity). File sizes are measured by serialising to memory:

* ``dense``: ``torch.save`` of the full state_dict (what ``PruneResult.state_dict`` exports);
* ``dense_zip``: the same arrays through ``np.savez_compressed`` (zeros compress well);
* ``csr_torch``: ``torch.save`` of a state_dict whose pruned weights are CSR tensors (int64 indices);
* ``csr_npz``: ``np.savez_compressed`` of CSR parts with the smallest index types
  (uint8 / uint16 / int32 column indices, int32 row pointers, float32 values), the other tensors dense.
"""
from __future__ import annotations

import io
import statistics
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..zoo.layers import prunable_layers
from ..zoo.train import pick_device

__all__ = ["EXPLANATION", "LayerSpeed", "SparseSpeedReport", "measure", "file_sizes", "csr_matmul", "to_csr"]

EXPLANATION = (
    "Unstructured pruning zeroes individual weights but keeps every matrix the same shape, so a dense kernel "
    "does exactly the same work as before; storing the survivors in a sparse format (CSR) shrinks the file "
    "and can cut CPU latency at very low keep ratios, but sparse kernels pay for indexing and irregular "
    "memory access, so at moderate sparsity, on small batches and on GPUs they are often no faster and even "
    "slower than dense ones; real speed-ups need structured pruning (whole neurons or channels removed) or "
    "hardware and kernels built for sparsity."
)


@dataclass(frozen=True)
class LayerSpeed:
    """One layer at one batch size."""

    name: str
    kind: str  # "linear" or "conv2d"
    shape: tuple[int, ...]
    kept: int
    total: int
    batch_size: int
    dense_ms: float  # median latency (nan when not timed)
    csr_ms: float
    max_abs_diff: float  # |dense - CSR| on the timed input: a sanity check, about float32 round-off
    note: str = ""

    @property
    def density(self) -> float:
        return self.kept / self.total if self.total else 0.0

    @property
    def speedup(self) -> float:
        """dense time / CSR time (> 1: CSR faster)."""
        return self.dense_ms / self.csr_ms if self.csr_ms and self.csr_ms == self.csr_ms else float("nan")

    def to_dict(self) -> dict:
        return dict(name=self.name, kind=self.kind, shape=list(self.shape), kept=self.kept, total=self.total,
                    density=self.density, batch_size=self.batch_size, dense_ms=self.dense_ms,
                    csr_ms=self.csr_ms, speedup=self.speedup, max_abs_diff=self.max_abs_diff, note=self.note)


@dataclass(frozen=True)
class SparseSpeedReport:
    layers: tuple[LayerSpeed, ...]
    files: dict  # name -> bytes (see the module docstring)
    batch_sizes: tuple[int, ...]
    repeats: int
    device: str
    threads: int
    torch_version: str
    explanation: str = EXPLANATION
    timings_s: dict = field(default_factory=dict)

    def totals(self) -> list[dict]:
        """Per batch size: the sum over timed layers of the dense and CSR medians."""
        out = []
        for b in self.batch_sizes:
            rows = [l for l in self.layers if l.batch_size == b and l.dense_ms == l.dense_ms]
            d = sum(l.dense_ms for l in rows)
            c = sum(l.csr_ms for l in rows)
            out.append(dict(batch_size=b, dense_ms=d, csr_ms=c, speedup=d / c if c else float("nan"),
                            layers=len(rows)))
        return out

    def to_dict(self) -> dict:
        return dict(layers=[l.to_dict() for l in self.layers], totals=self.totals(), files=dict(self.files),
                    batch_sizes=list(self.batch_sizes), repeats=self.repeats, device=self.device,
                    threads=self.threads, torch_version=self.torch_version, explanation=self.explanation,
                    timings_s=dict(self.timings_s))

    def to_frame(self):
        import pandas as pd  # deferred: only frames need pandas (~0.5 s to import)

        return pd.DataFrame([l.to_dict() for l in self.layers])

    def files_frame(self):
        import pandas as pd  # deferred: only frames need pandas (~0.5 s to import)

        dense = self.files.get("dense") or 1
        return pd.DataFrame([dict(format=k, bytes=v, relative_to_dense=v / dense) for k, v in self.files.items()])


def to_csr(w: torch.Tensor) -> torch.Tensor:
    """W (F, J) as torch.sparse_csr, without PyTorch's "CSR support is in beta" warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return w.to_sparse_csr()


def csr_matmul(w_csr: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """x @ W.T with W in CSR: (B, J) -> (B, F)."""
    return torch.sparse.mm(w_csr, x.t()).t()


def _median_ms(fn, repeats: int, warmup: int, sync) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def _resolve(model_or_result, masks):
    if hasattr(model_or_result, "model") and hasattr(model_or_result, "masks"):  # PruneResult
        model = model_or_result.model
        masks = masks if masks is not None else model_or_result.masks
    elif isinstance(model_or_result, nn.Module):
        model = model_or_result
    else:
        raise TypeError(f"expected a PruneResult or an nn.Module, got {type(model_or_result).__name__}")
    layers = prunable_layers(model)
    if masks is None:  # infer from the zeros of the pruned weights
        masks = {n: m.weight.detach() != 0 for n, m in layers.items()}
    unknown = sorted(set(masks) - set(layers))
    if unknown:
        raise ValueError(f"masks name layers the model does not have as prunable layers: {unknown[:5]}")
    for n, mask in masks.items():
        if tuple(mask.shape) != tuple(layers[n].weight.shape):
            raise ValueError(f"mask of {n} is shaped {tuple(mask.shape)}, its weight {tuple(layers[n].weight.shape)}")
    return model, layers, masks


def _masked_weight(module: nn.Module, mask: torch.Tensor) -> torch.Tensor:
    w = module.weight.detach().float().cpu()
    return w * mask.to(w.device, torch.bool)


def _index_dtype(n: int):
    for dt in (np.uint8, np.uint16, np.int32):
        if n <= np.iinfo(dt).max:
            return dt
    return np.int64


def file_sizes(model: nn.Module, masks: dict[str, torch.Tensor]) -> dict[str, int]:
    """Bytes of the state_dict serialised four ways (see the module docstring)."""
    layers = prunable_layers(model)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    for n, mask in masks.items():  # make sure pruned entries are exactly zero
        state[f"{n}.weight"] = _masked_weight(layers[n], mask).to(state[f"{n}.weight"].dtype)

    def nbytes(write) -> int:
        buf = io.BytesIO()
        write(buf)
        return len(buf.getvalue())

    sparse_names = {f"{n}.weight" for n in masks}
    csr_state = {}
    npz_parts: dict[str, np.ndarray] = {}
    for k, v in state.items():
        key = k.replace(".", "__")
        if k in sparse_names:
            mat = v.reshape(v.shape[0], -1).float()
            csr = to_csr(mat)
            csr_state[k] = csr
            npz_parts[key + "__crow"] = csr.crow_indices().numpy().astype(np.int32)
            npz_parts[key + "__col"] = csr.col_indices().numpy().astype(_index_dtype(mat.shape[1] - 1))
            npz_parts[key + "__val"] = csr.values().numpy().astype(np.float32)
            npz_parts[key + "__shape"] = np.asarray(v.shape, dtype=np.int64)
        else:
            csr_state[k] = v
            npz_parts[key] = v.numpy()
    dense_arrays = {k.replace(".", "__"): v.numpy() for k, v in state.items()}
    return dict(
        dense=nbytes(lambda b: torch.save(state, b)),
        dense_zip=nbytes(lambda b: np.savez_compressed(b, **dense_arrays)),
        csr_torch=nbytes(lambda b: torch.save(csr_state, b)),
        csr_npz=nbytes(lambda b: np.savez_compressed(b, **npz_parts)),
    )


@torch.no_grad()
def measure(
    model_or_result,
    masks: dict[str, torch.Tensor] | None = None,
    *,
    batch_sizes=(1, 256),
    repeats: int = 30,
    warmup: int = 5,
    device: str = "cpu",
    threads: int | None = None,
    seed: int = 0,
    progress=None,
) -> SparseSpeedReport:
    """Dense vs CSR latency of every pruned Linear layer, and file sizes dense vs sparse.

    Args:
        model_or_result: a PruneResult (its .model and .masks are used) or a pruned nn.Module.
        masks: layer name -> bool mask shaped like the weight; default the result's masks, or the
            nonzeros of the model's prunable weights.
        batch_sizes: input batch sizes to time (default 1 and 256).
        repeats, warmup: timed and untimed runs per measurement; the median is reported.
        device: "cpu" (default) or "cuda"; CSR products on CUDA use cuSPARSE.
        threads: CPU threads for the timing (torch.set_num_threads, restored afterwards; process-wide
            while it runs); default: leave the current setting. On a busy machine 1 thread gives steadier
            numbers for layers this small.
        progress: optional progress(fraction, message).

    Returns: SparseSpeedReport. Timings are noisy on a shared machine: never compare them across runs
    without repeating.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0; got {repeats}, {warmup}")
    batch_sizes = tuple(int(b) for b in batch_sizes)
    if not batch_sizes or min(batch_sizes) < 1:
        raise ValueError(f"batch_sizes must be positive integers; got {batch_sizes}")

    dev = pick_device(device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    model, layers, masks = _resolve(model_or_result, masks)
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None; got {threads!r}")
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        rows, t0, t1 = _time_layers(layers, masks, batch_sizes, repeats, warmup, dev, sync, seed, progress)
        used_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(old_threads)
    files = file_sizes(model, masks)
    if progress is not None:
        progress(1.0, "measured file sizes")
    return SparseSpeedReport(
        layers=tuple(rows), files=files, batch_sizes=batch_sizes, repeats=repeats, device=str(dev),
        threads=used_threads, torch_version=torch.__version__,
        timings_s=dict(latency=t1 - t0, files=time.perf_counter() - t1),
    )


def _time_layers(layers, masks, batch_sizes, repeats, warmup, dev, sync, seed, progress):
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    rows = []
    names = list(masks)
    for i, name in enumerate(names):
        module, mask = layers[name], masks[name]
        kept, total = int(mask.sum()), int(mask.numel())
        if not isinstance(module, nn.Linear):
            for b in batch_sizes:
                rows.append(LayerSpeed(name, "conv2d", tuple(module.weight.shape), kept, total, b, float("nan"),
                                       float("nan"), float("nan"),
                                       "not timed: PyTorch has no sparse convolution kernel"))
            continue
        w = _masked_weight(module, mask).to(dev)  # (F, J)
        w_csr = to_csr(w)
        for b in batch_sizes:
            x = torch.randn(b, w.shape[1], generator=gen).to(dev)  # (B, J)
            dense_out = F.linear(x, w)
            sparse_out = csr_matmul(w_csr, x)
            diff = float((dense_out - sparse_out).abs().max()) if dense_out.numel() else 0.0
            d_ms = _median_ms(lambda: F.linear(x, w), repeats, warmup, sync)
            c_ms = _median_ms(lambda: csr_matmul(w_csr, x), repeats, warmup, sync)
            rows.append(LayerSpeed(name, "linear", tuple(w.shape), kept, total, b, d_ms, c_ms, diff))
        if progress is not None:
            progress((i + 1) / (len(names) + 1), f"timed {name}")
    return rows, t0, time.perf_counter()
