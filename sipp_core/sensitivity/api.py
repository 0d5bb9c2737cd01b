"""Empirical sensitivities of every prunable weight (docs/sipp.md §2): the entry points.

For a prunable layer with weight W viewed as F x J and input a(x) unfolded to
J x P (P = 1 for Linear), on the points x of the sample S:

    a+ = max(a, 0), a- = max(-a, 0)      pseudo-points, only if the layer's input has
                                         negative entries (checked per layer)
    z^sigma_{f,p}(x) = sum_{j: sign W_fj = sigma} |W_fj| a_{j,p}(x)
    g_{fj,p}(x)      = |W_fj| a_{j,p}(x) / z^{sign W_fj}_{f,p}(x)   (0 where z <= 1.19e-7)
    s_fj             = max over x of (max or mean over p of g_{fj,p}(x))

With the max patch reduction the two maxima merge, so

    s = |W| * M,  M[(f, sigma), j] = max over (x, p) of a_{j,p}(x) / z^sigma_{f,p}(x),

a max-times ("tropical") product of the reciprocals 1/z (rows x pairs) and the
unfolded inputs (pairs x columns), which BLAS cannot do. The engines, all exact
(the same float32 products, the same maxima as the per-point, per-unit definition
in reference.py):

- ``direct`` (linear.py, conv_direct.py): the product evaluated batched, blocked over
  output rows so one block stays in cache while the pairs stream past (Linear layers,
  small convs). With pseudo-points, a+ and a- of one point have disjoint supports, so
  both are done as one rank-2 product (kernels.py).
- ``screened`` (conv_screened.py; conv layers, max reduction): one batched matrix product
  of p-th powers, S_b = sum over the pairs t of a block b of (R_t A_t / scale)^p, bounds
  every block's max from above and below (p-norm against max-norm); only the few blocks
  that can still hold a (row, column) max are then evaluated exactly. A block is discarded
  only on a strict inequality that holds whatever the rounding (explicit margins for
  the float error of S and for underflow), so the result equals the direct product's.
- ``mean`` reduction (conv_direct.py): a batched matrix product per point, then the max
  over points.

Inputs are captured with forward pre-hooks during ONE batched forward pass over S
(model in eval mode, no grad); each layer's sensitivity is computed inside its hook,
so only one layer input is held at a time. A plain Conv2d's output is then not
convolved a second time: it is z+ - z- of the engine's own partial pre-activations
(conv_output.py; rounding error of the same order as the convolution's), handed
to the model by a forward hook while the module itself convolves a single point. The
model is not modified: its modules' train/eval flags are restored and every hook is
removed. On CUDA, TF32 is switched off for the duration (it would cost three digits of z).

>>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
>>> sens = compute_sensitivities(model, torch.randn(8, 4))
>>> {name: tuple(s.shape) for name, s in sens.items()}
{'0': (3, 4), '2': (2, 3)}
"""
from __future__ import annotations

import contextlib
import os
from typing import Callable

import torch
from torch import nn

from ..errors import DegenerateData
from ..options import PATCH_REDUCTIONS
from ..zoo.layers import dense_layers, file_layer_names, prunable_layers
from .budget import DEFAULT_CHUNK_BYTES, _Budget
from .conv_direct import _conv_max_direct, _conv_mean
from .conv_output import ConvOutput, as_module_output, fusable
from .conv_screened import _conv_max_screened
from .geometry import _Geometry, _Points
from .kernels import EPS, _select, _split
from .linear import _linear_max
from .precision import BOUNDS_ENV, _choose_bf16

_DIRECT_MAX_PRODUCTS = 2**25  # conv layers below this many products use the direct engine

__all__ = [
    "EPS", "PATCH_REDUCTIONS", "DEFAULT_CHUNK_BYTES", "check_not_all_zero", "compute_sensitivities",
    "layer_sensitivity", "left_dense",
]

Progress = Callable[[float, str], None]


# --------------------------------------------------------------------------- public API


def compute_sensitivities(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    patch_reduction: str = "max",
    progress: Progress | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> dict[str, torch.Tensor]:
    """Empirical sensitivity of every weight of every prunable layer (docs/sipp.md §2).

    Args:
        model: the network; left unchanged (its train/eval flags are restored).
        inputs: the sample S, a batch shaped (|S|, *input_shape); moved to the
            model's device and dtype. Computation runs on the model's device
            (CUDA when the model is there; TF32 is switched off meanwhile).
        patch_reduction: "max" (the paper's, default; the deterministic bound holds
            on S) or "mean" (the authors' deterministic variant, no bound).
        progress: optional ``progress(fraction, message)`` callback, once per layer.
        chunk_bytes: bound on the engines' working memory (their buffers and
            temporaries, reused across layers), beyond the layer input being
            processed, its padded / pseudo-point copy (at most twice its size) and
            the layer's output (which the forward pass holds anyway; for a plain
            Conv2d it is built by the engine, see conv_output); it is respected
            down to one point (or one block of points) per step.
            Results do not depend on it. The default is also capped internally at
            64 MiB on a CPU (steps that fit in cache are faster) and 256 MiB on a GPU.

    Returns:
        {qualified layer name: tensor shaped like the layer's weight}, float32 on the
        CPU, values in [0, 1] (up to float round-off), for every prunable layer
        (nn.Linear, nn.Conv2d with groups=1) that the forward pass calls. A layer
        called several times gets the max over all its calls. Layers that are never
        called are absent, as in :func:`sipp_core.layers.layer_infos`.

    Raises:
        ValueError: unknown patch_reduction, an empty or non-floating input batch, a
            batch that does not fit the model, chunk_bytes < 1, or non-finite
            activations.
        DegenerateData (a ValueError): every entry of ``inputs`` is 0.
    """
    _check_reduction(patch_reduction)
    chunk_bytes = _check_chunk_bytes(chunk_bytes)
    layers = prunable_layers(model)
    device, dtype = _device_and_dtype(model)
    x = _check_inputs(inputs, device, dtype)
    check_not_all_zero(x)
    if not layers:
        if progress is not None:
            progress(1.0, "no prunable layer")
        return {}

    flags = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            costs = _dry_run(model, layers, x)
        hooks = _LayerHooks(layers, costs, patch_reduction, chunk_bytes, _Budget(chunk_bytes, device), progress)
        if progress is not None:
            progress(0.0, f"forward pass over S ({x.shape[0]} points)")
        hooks.forward(model, x)
    finally:
        for m, flag in flags.items():
            m.training = flag
    return {n: hooks.results[n] for n in layers if n in hooks.results}


def layer_sensitivity(
    module: nn.Module,
    layer_input: torch.Tensor,
    *,
    patch_reduction: str = "max",
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    engine: str = "auto",
    _budget: "_Budget | None" = None,
    _output: dict | None = None,
) -> torch.Tensor:
    """Sensitivities of one prunable layer from its input batch; shaped like its weight.

    ``layer_input`` is what the layer receives (|S|, ...); computed on its device in
    float32, returned there. ``engine`` ("auto", "direct", "screened") only chooses
    how the exact max is found; every engine gives the same numbers. ``_output`` (a
    dict; conv layers with 4-d inputs only): receives "y", the layer's output (bias
    added) assembled from the engine's partial pre-activations (see conv_output).
    """
    _check_reduction(patch_reduction)
    chunk_bytes = _check_chunk_bytes(chunk_bytes)
    if engine not in ("auto", "direct", "screened"):
        raise ValueError(f"engine must be 'auto', 'direct' or 'screened'; got {engine!r}")
    kind = _layer_kind(module)
    weight = module.weight.detach()
    w = weight.reshape(weight.shape[0], -1).to(layer_input.device, torch.float32)  # (F, J)
    a = layer_input.detach().to(torch.float32)
    negative = _has_negative_entries(a)
    budget = _budget if _budget is not None else _Budget(chunk_bytes, a.device)
    with torch.no_grad(), _exact_math():
        if kind == "linear":
            m = _linear_m(a, w, budget, negative)  # (2F, J)
        else:
            m = _conv_m(module, a, w, budget, negative, patch_reduction, engine, _output)  # (2F, J)
        s = _select(m, w)  # (F, J)
    return s.reshape(weight.shape)


def left_dense(model: nn.Module) -> list[tuple[str, str]]:
    """(name, reason) for every module that owns parameters but gets no sensitivity."""
    return dense_layers(model)


def check_not_all_zero(inputs: torch.Tensor) -> None:
    """Refuse an S whose every entry is 0: the first layer would get no sensitivity at all, be
    pruned to nothing, and have no row with signal to bound (its bound would be NaN)."""
    if not bool(inputs.any()):
        raise DegenerateData(
            f"every point of S is zero ({inputs.shape[0]} points): no weight of the first layer gets any "
            "sensitivity, so SiPP would prune that layer to nothing and could give it no bound",
            "draw S from real inputs (the S-pool of a data set, normalised as the model was trained)",
        )


# --------------------------------------------------------------------------- the forward pass over S


class _LayerHooks:
    """compute_sensitivities' hooks: each prunable layer's sensitivity, computed from its input
    as the forward pass reaches it (the max over repeated calls), and a plain Conv2d's output
    handed back from the engine's own partial pre-activations (conv_output)."""

    def __init__(self, layers: dict[str, nn.Module], costs: dict[str, float], patch_reduction: str,
                 chunk_bytes: int, budget: _Budget, progress: Progress | None):
        self.layers, self.costs, self.progress = layers, costs, progress
        self.patch_reduction, self.chunk_bytes, self.budget = patch_reduction, chunk_bytes, budget
        self.names = {m: n for n, m in layers.items()}
        self.total_cost = float(sum(costs.values())) or 1.0
        self.done = 0.0
        self.results: dict[str, torch.Tensor] = {}
        self.fused: dict = {}  # module -> its output, built from the engine's z (conv_output)
        self.shown: dict[str, str] = {}  # layer -> the name progress gives it (an upload's own, file_layer_names)

    def forward(self, model: nn.Module, x: torch.Tensor) -> None:
        """One forward pass over S with the hooks on; every hook is removed after."""
        self.shown = file_layer_names(model)
        handles = [m.register_forward_pre_hook(self.before) for m in self.layers.values()]
        handles += [m.register_forward_hook(self.after) for m in self.layers.values()]
        try:
            with torch.no_grad(), _exact_math():
                model(x)
        finally:
            for h in handles:
                h.remove()

    def before(self, module, args):
        """Forward pre-hook: the layer's sensitivity from its input args[0]."""
        name = self.names[module]
        a = args[0]
        holder = {} if fusable(module, a) else None
        s = layer_sensitivity(module, a, patch_reduction=self.patch_reduction, chunk_bytes=self.chunk_bytes,
                              _budget=self.budget, _output=holder)
        s = s.to("cpu", torch.float32)
        prev = self.results.get(name)
        self.results[name] = s if prev is None else torch.maximum(prev, s)
        self.done += self.costs.get(name, 0.0)
        if self.progress is not None:
            self.progress(min(1.0, self.done / self.total_cost), f"sensitivity of {self.shown.get(name, name)}")
        if holder and "y" in holder:
            # the module convolves one point only; its output is replaced by after()
            self.fused[module] = holder["y"]
            return (a[:1], *args[1:])
        return None

    def after(self, module, args, output):
        """Forward hook: the output built from the engine's products, where before() built one."""
        return self.fused.pop(module, None)


# --------------------------------------------------------------------------- one layer


def _layer_kind(module: nn.Module) -> str:
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.Conv2d) and module.groups == 1:
        return "conv2d"
    raise ValueError(f"{type(module).__name__} is not a prunable layer (nn.Linear, nn.Conv2d with groups=1)")


def _has_negative_entries(a: torch.Tensor) -> bool:
    """Whether a layer input needs pseudo-points (docs/sipp.md §2.1); refuses nan and inf."""
    lo, hi = torch.aminmax(a) if a.numel() else (torch.zeros(()), torch.zeros(()))  # nan propagates
    if not (bool(torch.isfinite(lo)) and bool(torch.isfinite(hi))):
        raise ValueError("the layer input holds nan or inf values; the model produced non-finite activations on S")
    return bool(lo < 0)


def _linear_m(a: torch.Tensor, w: torch.Tensor, budget: _Budget, negative: bool) -> torch.Tensor:
    """M (2F, J) of a Linear layer, w (F, J), from its input a (..., J)."""
    if a.shape[-1] != w.shape[1]:
        raise ValueError(f"Linear input has {a.shape[-1]} features, the layer expects {w.shape[1]}")
    return _linear_max(a.reshape(-1, w.shape[1]), w, budget, negative)


def _conv_m(module: nn.Conv2d, a: torch.Tensor, w: torch.Tensor, budget: _Budget, negative: bool,
            patch_reduction: str, engine: str, output: dict | None) -> torch.Tensor:
    """M (2F, J) of a Conv2d layer, w (F, J), by the engine that fits; its output into ``output``."""
    if a.ndim == 3:
        a = a.unsqueeze(0)  # (1, C, H, W)
    geo = _Geometry.of(module, a)
    g_rows, j_cols = 2 * w.shape[0], w.shape[1]
    products = g_rows * j_cols * a.shape[0] * (2 if negative else 1) * geo.patches
    use_direct = engine == "direct" or (engine == "auto" and products <= _DIRECT_MAX_PRODUCTS)
    out = None if output is None else ConvOutput(a.shape[0], w.shape[0], geo.patches, negative, a.device)
    if patch_reduction == "max" and not use_direct:
        # padded (and split) chunk by chunk: no padded copy of the whole input
        bf16 = not negative and _bf16_bounds(a.device)
        m = _conv_max_screened(_Points(a, geo, negative), w, geo, budget, wide=negative, out_y=out, bf16=bf16)
    else:
        xp, _ = _split(geo.pad(a), negative)  # (N or 2N, C, Hp, Wp) >= 0
        engine_of = _conv_mean if patch_reduction == "mean" else _conv_max_direct
        m = engine_of(xp, w, geo, budget, out)
    if out is not None and out.complete():
        output["y"] = as_module_output(out, module, geo.ho, geo.wo)  # (N, F, Ho, Wo)
    return m


# --------------------------------------------------------------------------- validation, setup


def _check_reduction(patch_reduction) -> None:
    if patch_reduction not in PATCH_REDUCTIONS:
        raise ValueError(f"patch_reduction must be 'max' or 'mean'; got {patch_reduction!r}")


def _check_chunk_bytes(chunk_bytes) -> int:
    if isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, int) or chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be a positive integer (bytes); got {chunk_bytes!r}")
    return chunk_bytes


def _device_and_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where and in what the model computes: its first parameter's device and (floating) dtype."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    return device, dtype


def _check_inputs(inputs, device, dtype) -> torch.Tensor:
    if not isinstance(inputs, torch.Tensor):
        raise ValueError(
            f"inputs must be a torch.Tensor batch shaped (|S|, *input_shape); got {type(inputs).__name__}"
        )
    if inputs.ndim < 2 or inputs.shape[0] == 0:
        raise ValueError(
            f"inputs must be a non-empty batch shaped (|S|, *input_shape); got shape {tuple(inputs.shape)}"
        )
    if not inputs.is_floating_point():
        raise ValueError(f"inputs must be floating point (normalised data); got {inputs.dtype}")
    x = inputs.detach().to(device=device, dtype=dtype)
    if not bool(torch.isfinite(x).all()):
        raise ValueError("inputs hold nan or inf values")
    return x


def _dry_run(model: nn.Module, layers: dict[str, nn.Module], x: torch.Tensor) -> dict[str, float]:
    """Check the batch fits the model on a couple of points; return each layer's cost estimate."""
    costs: dict[str, float] = {}
    names = {m: n for n, m in layers.items()}

    def hook(module, args):
        a = args[0]
        f_units, fan_in = module.weight.shape[0], module.weight[0].numel()
        per_point = a[0].numel() / max(1, fan_in) if isinstance(module, nn.Linear) else _patches(module, a)
        costs[names[module]] = costs.get(names[module], 0.0) + float(f_units * fan_in * max(1.0, per_point))

    handles = [m.register_forward_pre_hook(hook) for m in layers.values()]
    try:
        model(x[: min(2, x.shape[0])])
    except Exception as err:  # noqa: BLE001 - any failure here means the batch does not fit
        raise ValueError(
            f"inputs of shape {tuple(x.shape)} (|S| = {x.shape[0]}, input shape {tuple(x.shape[1:])}) "
            f"do not fit the model: {type(err).__name__}: {err}"
        ) from err
    finally:
        for h in handles:
            h.remove()
    return costs


def _patches(module: nn.Conv2d, a: torch.Tensor) -> float:
    try:
        return float(_Geometry.of(module, a if a.ndim == 4 else a.unsqueeze(0)).patches)
    except Exception:  # noqa: BLE001 - only a progress weight
        return 1.0


@contextlib.contextmanager
def _exact_math():
    """Full float32 matmuls/convs on CUDA (TF32 would cost ~3 digits); restored after."""
    if not torch.cuda.is_available():
        yield
        return
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


_BF16_CPU: bool | None = None  # the CPU's bounds path, chosen once per process (tests reset it here)


def _bf16_bounds(device: torch.device) -> bool:
    """Whether the screened engine's bounds (their matrix product) run in bfloat16.

    Automatically only on CPUs with native bfloat16 dot products (twice the float32
    rate there, emulated and slow elsewhere). ``SIPP_CONV_BOUNDS=float32`` or
    ``bfloat16`` forces a path, so that both are tested on every machine; the
    sensitivities are the same either way (the bounds only decide which blocks are
    evaluated exactly). bfloat16 is taken only if the product accumulates in float32,
    which the margins assume (checked once: 512 ones sum to 256 in bfloat16). Not on
    CUDA: cuBLAS may reduce in bfloat16."""
    global _BF16_CPU
    if device.type != "cpu":
        return False
    if _BF16_CPU is None:
        _BF16_CPU = _choose_bf16(os.environ.get(BOUNDS_ENV, "auto").strip().lower() or "auto")
    return _BF16_CPU
