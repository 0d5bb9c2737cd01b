"""Empirical sensitivities of every prunable weight (docs/sipp.md §2).

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
(the same float32 products, the same maxima as the per-point, per-unit definition):

- ``direct``: the product evaluated batched, blocked over output rows so one block
  stays in cache while the pairs stream past (Linear layers, small convs). With
  pseudo-points, a+ and a- of one point have disjoint supports, so both are done as
  one rank-2 product.
- ``screened`` (conv layers, max reduction): one batched matrix product of p-th powers,
  S_b = sum over the pairs t of a block b of (R_t A_t / scale)^p, bounds every block's
  max from above and below (p-norm against max-norm); only the few blocks that can
  still hold a (row, column) max are then evaluated exactly. A block is discarded
  only on a strict inequality that holds whatever the rounding (explicit margins for
  the float error of S and for underflow), so the result equals the direct product's.
- ``mean`` reduction: a batched matrix product per point, then the max over points.

Inputs are captured with forward pre-hooks during ONE batched forward pass over S
(model in eval mode, no grad); each layer's sensitivity is computed inside its hook,
so only one layer input is held at a time. A plain Conv2d's output is then not
convolved a second time: it is z+ - z- of the engine's own partial pre-activations
(sipp_core.conv_output; rounding error of the same order as the convolution's), handed
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
import math
import os
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as Fnn
from torch import nn

from ..errors import BadInput, DegenerateData
from ..options import PATCH_REDUCTIONS
from ..zoo.layers import dense_layers, prunable_layers
from .conv_output import ConvOutput, as_module_output, fusable

EPS = float(torch.finfo(torch.float32).eps)  # z <= EPS counts as "no signal" (docs/sipp.md §2.2)
DEFAULT_CHUNK_BYTES = 512 * 2**20

# working tensors are also kept below this size when chunk_bytes is larger: small
# temporaries stay in cache and are recycled by the allocator instead of being
# mapped fresh from the OS on every call
_CACHE_FRIENDLY_BYTES = 4 * 2**20
_BIG_BYTES = 64 * 2**20  # the screened engine's working set: a span's bounds and one chunk
_GPU_STEP_BYTES = 256 * 2**20
_PIECE_ELEMS = 2**18  # elements scaled and squared together (few ops, mostly in cache)
_BLOCK = 64  # (point, patch) pairs per screening block
_POWER = 16  # p of the float32 and bfloat16 p-norm bounds (float64 layers use 32)
_DIRECT_MAX_PRODUCTS = 2**25  # conv layers below this many products use the direct engine
_CHUNK_SHARE = 0.25  # at most this share of the screened engine's budget for one chunk
_MIN_CHUNK = 8  # points: the screened engine's chunks are not made smaller to fit fewer spans
_RUN = 8  # blocks per run in candidate selection (one max per run first)

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
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
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
        total_cost = float(sum(costs.values())) or 1.0
        names = {m: n for n, m in layers.items()}
        results: dict[str, torch.Tensor] = {}
        state = {"done": 0.0}
        budget = _Budget(chunk_bytes, device)

        fused: dict = {}  # module -> its output, built from the engine's z (conv_output)

        def hook(module, args):
            name = names[module]
            a = args[0]
            holder = {} if fusable(module, a) else None
            s = layer_sensitivity(module, a, patch_reduction=patch_reduction, chunk_bytes=chunk_bytes,
                                  _budget=budget, _output=holder)
            s = s.to("cpu", torch.float32)
            prev = results.get(name)
            results[name] = s if prev is None else torch.maximum(prev, s)
            state["done"] += costs.get(name, 0.0)
            if progress is not None:
                progress(min(1.0, state["done"] / total_cost), f"sensitivity of {name}")
            if holder and "y" in holder:
                # the module convolves one point only; its output is replaced by post_hook
                fused[module] = holder["y"]
                return (a[:1], *args[1:])
            return None

        def post_hook(module, args, output):
            return fused.pop(module, None)

        if progress is not None:
            progress(0.0, f"forward pass over S ({x.shape[0]} points)")
        handles = [m.register_forward_pre_hook(hook) for m in layers.values()]
        handles += [m.register_forward_hook(post_hook) for m in layers.values()]
        try:
            with torch.no_grad(), _exact_math():
                model(x)
        finally:
            for h in handles:
                h.remove()
    finally:
        for m, flag in flags.items():
            m.training = flag
    return {n: results[n] for n in layers if n in results}


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
    if isinstance(module, nn.Linear):
        kind = "linear"
    elif isinstance(module, nn.Conv2d) and module.groups == 1:
        kind = "conv2d"
    else:
        raise ValueError(f"{type(module).__name__} is not a prunable layer (nn.Linear, nn.Conv2d with groups=1)")
    weight = module.weight.detach()
    w = weight.reshape(weight.shape[0], -1).to(layer_input.device, torch.float32)  # (F, J)
    a = layer_input.detach().to(torch.float32)
    lo, hi = torch.aminmax(a) if a.numel() else (torch.zeros(()), torch.zeros(()))  # nan propagates
    if not (bool(torch.isfinite(lo)) and bool(torch.isfinite(hi))):
        raise ValueError("the layer input holds nan or inf values; the model produced non-finite activations on S")
    negative = bool(lo < 0)
    budget = _budget if _budget is not None else _Budget(chunk_bytes, a.device)
    with torch.no_grad(), _exact_math():
        if kind == "linear":
            if a.shape[-1] != w.shape[1]:
                raise ValueError(f"Linear input has {a.shape[-1]} features, the layer expects {w.shape[1]}")
            m = _linear_max(a.reshape(-1, w.shape[1]), w, budget, negative)
        else:
            if a.ndim == 3:
                a = a.unsqueeze(0)
            geo = _Geometry.of(module, a)
            g_rows, j_cols = 2 * w.shape[0], w.shape[1]
            products = g_rows * j_cols * a.shape[0] * (2 if negative else 1) * geo.patches
            use_direct = engine == "direct" or (engine == "auto" and products <= _DIRECT_MAX_PRODUCTS)
            out = None if _output is None else ConvOutput(a.shape[0], w.shape[0], geo.patches, negative, a.device)
            if patch_reduction == "max" and not use_direct:
                # padded (and split) chunk by chunk: no padded copy of the whole input
                m = _conv_max_screened(_Points(a, geo, negative), w, geo, budget, wide=negative, out_y=out)
            else:
                xp, _ = _split(geo.pad(a), negative)  # (N, C, Hp, Wp) >= 0
                if patch_reduction == "mean":
                    m = _conv_mean(xp, w, geo, budget, out)
                else:
                    m = _conv_max_direct(xp, w, geo, budget, out)
            if out is not None and out.complete():
                _output["y"] = as_module_output(out, module, geo.ho, geo.wo)
        s = _select(m, w)
    return s.reshape(weight.shape)


def left_dense(model: nn.Module) -> list[tuple[str, str]]:
    """(name, reason) for every module that owns parameters but gets no sensitivity."""
    return dense_layers(model)


# --------------------------------------------------------------------------- validation, setup


def _check_reduction(patch_reduction) -> None:
    if patch_reduction not in PATCH_REDUCTIONS:
        raise ValueError(f"patch_reduction must be 'max' or 'mean'; got {patch_reduction!r}")


def _check_chunk_bytes(chunk_bytes) -> int:
    if isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, int) or chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be a positive integer (bytes); got {chunk_bytes!r}")
    return chunk_bytes


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


def check_not_all_zero(inputs: torch.Tensor) -> None:
    """Refuse an S whose every entry is 0: the first layer would get no sensitivity at all, be
    pruned to nothing, and have no row with signal to bound (its bound would be NaN)."""
    if not bool(inputs.any()):
        raise DegenerateData(
            f"every point of S is zero ({inputs.shape[0]} points): no weight of the first layer gets any "
            "sensitivity, so SiPP would prune that layer to nothing and could give it no bound",
            "draw S from real inputs (the S-pool of a data set, normalised as the model was trained)",
        )


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


class _Budget:
    """Sizes of chunked temporaries (float32 elements) and a workspace of reusable buffers.

    One budget serves every layer of a compute_sensitivities call, so its buffers are
    allocated (and their pages touched) once, not once per layer and chunk.
    """

    def __init__(self, chunk_bytes: int, device=None):
        self.bytes = chunk_bytes
        self._store: dict = {}
        gpu = device is not None and torch.device(device).type == "cuda"
        # CPU: small, cache-resident steps; GPU: large ones (kernel launches dominate)
        self._small = _GPU_STEP_BYTES if gpu else _CACHE_FRIENDLY_BYTES
        self._big = _GPU_STEP_BYTES if gpu else _BIG_BYTES

    def elems(self, copies: int = 1) -> int:
        return max(1, min(self.bytes, self._small) // (4 * copies))

    def big_elems(self, copies: int = 1) -> int:
        """For operands that benefit from large batches (matrix products)."""
        return max(1, min(self.bytes, self._big) // (4 * copies))

    def buffer(self, key: str, shape, dtype=torch.float32, device=None) -> torch.Tensor:
        """An uninitialised tensor of ``shape``; the same storage is reused for ``key``."""
        numel = 1
        for d in shape:
            numel *= int(d)
        k = (key, dtype, torch.device(device) if device is not None else torch.device("cpu"))
        buf = self._store.get(k)
        if buf is None or buf.numel() < numel:
            self._store[k] = buf = torch.empty(max(numel, 1), dtype=dtype, device=k[2])
        return buf[:numel].view(tuple(int(d) for d in shape))


# --------------------------------------------------------------------------- shared math


def _recip(z: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """1/z where z > EPS, 0 elsewhere ("no signal"), in place on z or into out."""
    Fnn.threshold_(z, EPS, math.inf)  # z <= EPS -> inf, whose reciprocal is 0: two passes, no mask
    return z.reciprocal_() if out is None else torch.reciprocal(z, out=out)


def _signed(w: torch.Tensor) -> torch.Tensor:
    """(2F, J): rows 0..F-1 hold |W+|, rows F..2F-1 hold |W-|."""
    return torch.cat([w.clamp(min=0), (-w).clamp(min=0)])


def _select(m: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """s = |W| * M[(f, sign W_fj), j]; 0 for zero weights."""
    f_units = w.shape[0]
    zero = torch.zeros((), dtype=m.dtype, device=m.device)
    picked = torch.where(w > 0, m[:f_units], torch.where(w < 0, m[f_units:], zero))
    return w.abs() * picked


def _split(x: torch.Tensor, negative: bool) -> tuple[torch.Tensor, bool]:
    """(batch, False) if non-negative, else (its pseudo-points [max(x,0); max(-x,0)], True)."""
    if negative:
        return torch.cat([x.clamp(min=0), (-x).clamp(min=0)]), True
    return x, False


# --------------------------------------------------------------------------- max-times kernels
# out[g, j] = max_k r[k, g] * a[k, j] over pairs k (points, or (point, patch) pairs).
# Blocked over rows so one block of the output stays in cache while all pairs
# stream past it; buffers are allocated once (fresh large allocations are slow).

_ROW_BLOCK_ELEMS = 2**17  # output block (rows x J) per pass, ~512 KiB
_PASS_ELEMS = 2**21  # products per pass into an output block (measured best on 2 cores)


def _maxtimes(r: torch.Tensor, a: torch.Tensor, budget: _Budget, out: torch.Tensor | None = None) -> torch.Tensor:
    """(G, J) max over k of the outer products r[k] (x) a[k]; r (K, G), a (K, J), >= 0."""
    return _maxtimes_impl(r, a, budget, out, rank2=False)


def _maxtimes2(r2: torch.Tensor, a2: torch.Tensor, budget: _Budget, out: torch.Tensor | None = None) -> torch.Tensor:
    """Same for rank-2 terms r2[k] @ a2[k] with r2 (K, G, 2), a2 (K, 2, J): one point's two
    pseudo-points, whose supports are disjoint, so the sum is the one non-zero product."""
    return _maxtimes_impl(r2, a2, budget, out, rank2=True)


def _maxtimes_impl(r, a, budget: _Budget, out, rank2: bool) -> torch.Tensor:
    k_pairs, g_rows = r.shape[0], r.shape[1]
    j_cols = a.shape[-1]
    if out is None:
        out = torch.zeros(g_rows, j_cols, device=a.device)
    if k_pairs == 0:
        return out
    rows = max(1, min(g_rows, _ROW_BLOCK_ELEMS // j_cols, budget.elems() // j_cols))
    step = max(1, min(k_pairs, budget.big_elems(4) // (rows * j_cols), _PASS_ELEMS // (rows * j_cols)))
    buf = budget.buffer("mt_buf", (step, rows, j_cols), device=a.device)
    red = budget.buffer("mt_red", (rows, j_cols), device=a.device)
    for g0 in range(0, g_rows, rows):
        o = out[g0 : g0 + rows]
        nr = o.shape[0]
        rr = r[:, g0 : g0 + nr]
        for k0 in range(0, k_pairs, step):
            nk = min(step, k_pairs - k0)
            b = buf[:nk, :nr]
            if rank2:
                torch.bmm(rr[k0 : k0 + nk], a[k0 : k0 + nk], out=b)
            else:
                torch.mul(rr[k0 : k0 + nk, :, None], a[k0 : k0 + nk, None, :], out=b)
            m = red[:nr]
            torch.amax(b, 0, out=m)
            torch.maximum(o, m, out=o)
    return out


# --------------------------------------------------------------------------- Linear


def _linear_max(a: torch.Tensor, w: torch.Tensor, budget: _Budget, negative: bool) -> torch.Tensor:
    """M (2F, J) = max over points of a_j / z^sigma_f for a Linear layer, a (N, J)."""
    ws = _signed(w)  # (G, J)
    n = a.shape[0]
    if negative:
        ap, an = a.clamp(min=0), (-a).clamp(min=0)
        r = _recip(torch.cat([ap, an]) @ ws.T)  # (2N, G)
        r_pair = torch.stack([r[:n], r[n:]], dim=2)  # (N, G, 2)
        a_pair = torch.stack([ap, an], dim=1)  # (N, 2, J)
        return _maxtimes2(r_pair, a_pair, budget)
    r = _recip(a @ ws.T)  # (N, G)
    return _maxtimes(r, a, budget)


# --------------------------------------------------------------------------- Conv2d geometry


@dataclass(frozen=True)
class _Geometry:
    """Shapes of one Conv2d on one input, with the input padded explicitly."""

    pads: tuple[int, int, int, int]  # F.pad order: left, right, top, bottom
    pad_mode: str
    kh: int
    kw: int
    sh: int
    sw: int
    dh: int
    dw: int
    channels: int
    hp: int  # padded height / width
    wp: int
    ho: int
    wo: int

    @property
    def patches(self) -> int:
        return self.ho * self.wo

    @property
    def fan_in(self) -> int:
        return self.channels * self.kh * self.kw

    @staticmethod
    def of(module: nn.Conv2d, a: torch.Tensor) -> "_Geometry":
        if a.ndim != 4 or a.shape[1] != module.in_channels:
            raise ValueError(
                f"Conv2d expects inputs shaped (N, {module.in_channels}, H, W); got {tuple(a.shape)}"
            )
        kh, kw = module.kernel_size
        sh, sw = module.stride
        dh, dw = module.dilation
        if isinstance(module.padding, str) or module.padding_mode != "zeros":
            left, right, top, bottom = (int(p) for p in module._reversed_padding_repeated_twice)
        else:
            ph, pw = module.padding
            left = right = int(pw)
            top = bottom = int(ph)
        mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
        hp, wp = a.shape[2] + top + bottom, a.shape[3] + left + right
        ho = (hp - dh * (kh - 1) - 1) // sh + 1
        wo = (wp - dw * (kw - 1) - 1) // sw + 1
        if ho < 1 or wo < 1:
            raise ValueError(f"input {tuple(a.shape)} is smaller than the kernel of this Conv2d")
        return _Geometry((left, right, top, bottom), mode, kh, kw, sh, sw, dh, dw, a.shape[1], hp, wp, ho, wo)

    def pad(self, a: torch.Tensor) -> torch.Tensor:
        if not any(self.pads):
            return a.contiguous()
        return Fnn.pad(a, self.pads, mode=self.pad_mode).contiguous()

    def z(self, xp: torch.Tensor, ws4: torch.Tensor) -> torch.Tensor:
        """(n, G, P) partial pre-activations of padded inputs xp with the signed weight ws4."""
        z = Fnn.conv2d(xp, ws4, stride=(self.sh, self.sw), dilation=(self.dh, self.dw))
        return z.reshape(z.shape[0], z.shape[1], -1)

    def unfold(self, xp: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """(n, J, P): the unfolded input (F.unfold's layout, J in weight.view(F, -1) order).

        A strided view of the padded input copied once: several times faster than
        F.unfold, and it can fill a preallocated buffer.
        """
        n, c = xp.shape[0], self.channels
        xp = xp.contiguous()
        hw = self.hp * self.wp
        view = xp.as_strided(
            (n, c, self.kh, self.kw, self.ho, self.wo),
            (c * hw, hw, self.dh * self.wp, self.dw, self.sh * self.wp, self.sw),
        )
        if out is None:
            out = torch.empty(n, self.fan_in, self.patches, dtype=xp.dtype, device=xp.device)
        out.view(n, c, self.kh, self.kw, self.ho, self.wo).copy_(view)
        return out

    def column_offsets(self, device) -> torch.Tensor:
        """(J,) flat offset of column j = (c, u, v) inside one padded point."""
        c = torch.arange(self.channels, device=device)[:, None, None] * (self.hp * self.wp)
        u = torch.arange(self.kh, device=device)[None, :, None] * (self.dh * self.wp)
        v = torch.arange(self.kw, device=device)[None, None, :] * self.dw
        return (c + u + v).reshape(-1)

    def patch_offsets(self, device) -> torch.Tensor:
        """(P,) flat offset of patch p = (h, w) inside one padded point."""
        h = torch.arange(self.ho, device=device)[:, None] * (self.sh * self.wp)
        w = torch.arange(self.wo, device=device)[None, :] * self.sw
        return (h + w).reshape(-1)


class _Points:
    """The points of a conv layer's input a (N, C, H, W) as the engines see them: padded,
    and split into pseudo-points [max(a, 0); max(-a, 0)] when ``negative``; produced
    chunk by chunk into a reused buffer (the same values as ``_split(geo.pad(a))``)."""

    def __init__(self, a: torch.Tensor, geo: _Geometry, negative: bool):
        self.a, self.geo, self.negative = a, geo, negative
        self.count = a.shape[0] * (2 if negative else 1)
        self.device = a.device
        self.shape = (a.shape[1], geo.hp, geo.wp)

    def chunk(self, i: int, n: int, buf: torch.Tensor) -> torch.Tensor:
        """Points i .. i + n - 1, (n, C, Hp, Wp), in buf."""
        a, geo, out = self.a, self.geo, buf[:n]
        if geo.pad_mode != "constant":  # padding copies values: it commutes with the split
            return out.copy_(geo.pad(self._fill(i, n, a.new_empty(n, *a.shape[1:]))))
        left, right, top, bottom = geo.pads
        h, w = a.shape[2], a.shape[3]
        out[:, :, :top].zero_()
        out[:, :, top + h :].zero_()
        out[:, :, top : top + h, :left].zero_()
        out[:, :, top : top + h, left + w :].zero_()
        self._fill(i, n, out[:, :, top : top + h, left : left + w])
        return out

    def _fill(self, i: int, n: int, dst: torch.Tensor) -> torch.Tensor:
        """Unpadded points i .. i + n - 1 into dst (n, C, H, W)."""
        a, big = self.a, self.a.shape[0]
        if not self.negative:
            return dst.copy_(a[i : i + n])
        pos = max(0, min(n, big - i))  # the first pos points are a+, the rest a-
        if pos:
            torch.clamp(a[i : i + pos], min=0, out=dst[:pos])
        if pos < n:
            torch.neg(a[i + pos - big : i + n - big], out=dst[pos:]).clamp_(min=0)
        return dst


# --------------------------------------------------------------------------- Conv2d, mean


def _conv_mean(xp: torch.Tensor, w: torch.Tensor, geo: _Geometry, budget: _Budget,
               out_y: ConvOutput | None = None) -> torch.Tensor:
    """M (2F, J) = max over pseudo-points of the mean over patches of a_{j,p} / z_{f,p}."""
    ws4 = _signed(w).reshape(-1, geo.channels, geo.kh, geo.kw)
    g_rows, j_cols, p = ws4.shape[0], geo.fan_in, geo.patches
    out = torch.zeros(g_rows, j_cols, device=xp.device)
    per_point = j_cols * p + g_rows * p + g_rows * j_cols
    step = max(1, budget.big_elems() // per_point)
    cols = torch.empty(min(step, xp.shape[0]), j_cols, p, device=xp.device)
    sums = torch.empty(min(step, xp.shape[0]), g_rows, j_cols, device=xp.device)
    for i in range(0, xp.shape[0], step):
        chunk = xp[i : i + step]
        n = chunk.shape[0]
        z = geo.z(chunk, ws4)  # (n, G, P)
        if out_y is not None:
            out_y.add(i, z)
        r = _recip(z)
        geo.unfold(chunk, out=cols[:n])  # (n, J, P)
        torch.bmm(r, cols[:n].transpose(1, 2), out=sums[:n])  # (n, G, J)
        torch.maximum(out, sums[:n].amax(0), out=out)
    return out / p


# --------------------------------------------------------------------------- Conv2d, max, direct


def _conv_max_direct(xp: torch.Tensor, w: torch.Tensor, geo: _Geometry, budget: _Budget,
                     out_y: ConvOutput | None = None) -> torch.Tensor:
    """M (2F, J) by evaluating every product a_{j,p}(x) / z_{f,p}(x), in chunks of points."""
    ws4 = _signed(w).reshape(-1, geo.channels, geo.kh, geo.kw)
    g_rows, j_cols, p = ws4.shape[0], geo.fan_in, geo.patches
    out = torch.zeros(g_rows, j_cols, device=xp.device)
    step = max(1, budget.big_elems(2) // ((g_rows + j_cols) * p))
    for i in range(0, xp.shape[0], step):
        chunk = xp[i : i + step]
        n = chunk.shape[0]
        z = geo.z(chunk, ws4)
        if out_y is not None:
            out_y.add(i, z)
        r = _recip(z).transpose(1, 2).reshape(n * p, g_rows)  # (pairs, G)
        cols = geo.unfold(chunk).transpose(1, 2).reshape(n * p, j_cols)  # (pairs, J)
        _maxtimes(r, cols, budget, out=out)
    return out


# --------------------------------------------------------------------------- Conv2d, max, screened


def _block_layout(geo: _Geometry) -> tuple[int, int, int]:
    """(nb, bs, group): blocks of about _BLOCK (point, patch) pairs.

    P >= _BLOCK: each point's P patches form nb blocks of bs consecutive patches
    (bs divides P when a divisor lies near _BLOCK, preferably whole output rows;
    else the last block is zero-padded). Smaller P: blocks of ``group`` whole points.
    """
    p = geo.patches
    if p < _BLOCK:
        group = max(1, _BLOCK // p)
        return 1, group * p, group
    divisors = [d for d in range(_BLOCK // 2, 2 * _BLOCK + 1) if p % d == 0]
    if divisors:
        bs = min(divisors, key=lambda d: (d % geo.wo != 0, abs(d - _BLOCK), d))
        return p // bs, bs, 1
    nb = -(-p // _BLOCK)
    return nb, -(-p // nb), 1


class _Blocks:
    """Layouts of one chunk for the screened engine.

    Natural layout (points, X, ppad): X rows (G reciprocal rows or J input columns) of
    each point's patches, zero-padded past P to ppad = nb * bs (group = 1), and, for
    groups of points, past the chunk's last point to a whole group. Block-major
    layout (blocks, X, bs): one block's rows side by side, for one batched product.
    """

    def __init__(self, geo: _Geometry, nb: int, bs: int, group: int):
        self.geo, self.nb, self.bs, self.group = geo, nb, bs, group
        p = geo.patches
        self.ppad = nb * bs if group == 1 else p
        self.padded = self.ppad != p

    def count(self, n: int) -> int:
        """Blocks of a chunk of n points."""
        return -(-n // self.group) * self.nb

    def rows(self, n: int) -> int:
        """Points in the natural layout of a chunk of n points (whole groups)."""
        return -(-n // self.group) * self.group

    def unfold(self, xc: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
        """The unfolded points xc (n, C, Hp, Wp), natural layout (rows, J, ppad), in buf."""
        n, p, rows = xc.shape[0], self.geo.patches, self.rows(xc.shape[0])
        out = buf[:rows]
        self.geo.unfold(xc, out=out[:n, :, :p])
        if self.padded:
            out[:n, :, p:].zero_()
        if rows > n:
            out[n:].zero_()
        return out

    def block_major(self, nat: torch.Tensor, out: torch.Tensor, scale=None, power: int = 1,
                    scratch: torch.Tensor | None = None) -> torch.Tensor:
        """nat (rows, X, ppad) -> (blocks, X, bs) in ``out``, optionally (nat * scale[X]) ** power.

        Without sub-blocks or groups the layouts coincide and nat itself is used when no
        scaling is asked for. The power is taken piece by piece (few ops per piece); when
        ``out`` is narrower than the product (bfloat16) the pieces are squared in
        ``scratch`` and only the last squaring is rounded.
        """
        rows, x, ppad = nat.shape
        nb, bs, group = self.nb, self.bs, self.group
        k = rows // group * nb
        if scale is None and nb == 1 and group == 1 and out.dtype == nat.dtype:
            return nat
        if group == 1:
            src = nat.view(rows, x, nb, bs).transpose(1, 2)  # (rows, nb, X, bs)
            dst = out[:k].view(rows, nb, x, bs)
            sview = None if scale is None else scale.view(1, 1, x, 1)
        else:
            src = nat.view(rows // group, group, x, ppad).transpose(1, 2)  # (q, X, group, P)
            dst = out[:k].view(rows // group, x, group, ppad)
            sview = None if scale is None else scale.view(1, x, 1, 1)
        if sview is None:
            dst.copy_(src)
            return out[:k]
        narrow = out.dtype.itemsize < torch.promote_types(nat.dtype, scale.dtype).itemsize
        piece = max(1, (min(scratch.numel(), _PIECE_ELEMS) if narrow else _PIECE_ELEMS) // max(1, dst[0].numel()))
        for i in range(0, dst.shape[0], piece):
            d = dst[i : i + piece]
            if narrow:
                t = scratch[: d.numel()].view(d.shape)
                torch.mul(src[i : i + piece], sview, out=t)
                d.copy_(_pow(t, power))  # squared in place, rounded once by the copy (no temporary)
            else:
                torch.mul(src[i : i + piece], sview, out=d)
                _pow(d, power)
        return out[:k]


_BF16_CPU: bool | None = None
BOUNDS_ENV = "SIPP_CONV_BOUNDS"  # auto (default) | float32 | bfloat16: which bounds path the screened engine takes


def _bf16_bounds(device: torch.device) -> bool:
    """Whether the bounds' matrix product runs in bfloat16.

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


def _choose_bf16(choice: str) -> bool:
    if choice not in ("auto", "float32", "bfloat16"):
        raise BadInput(f"{BOUNDS_ENV}={choice!r} is not a bounds path",
                       f"set {BOUNDS_ENV} to auto, float32 or bfloat16, or unset it")
    if choice == "float32":
        return False
    if choice == "auto" and not _native_bf16():
        return False
    if not bf16_accumulates_in_float32():
        if choice == "bfloat16":
            raise BadInput(f"{BOUNDS_ENV}=bfloat16 was asked for, but this CPU's bfloat16 products do not "
                           "accumulate in float32, which the bounds' margins need",
                           f"unset {BOUNDS_ENV} (or set it to float32)")
        return False
    return True


def _native_bf16() -> bool:
    """The CPU has bfloat16 dot products and torch's kernels may use them (not capped below AVX-512)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split() for line in f if line.startswith("flags")), [])
    except OSError:
        flags = []
    capped = torch.backends.cpu.get_cpu_capability() in ("DEFAULT", "AVX2")  # e.g. ATEN_CPU_CAPABILITY=avx2
    return ("avx512_bf16" in flags or "amx_bf16" in flags) and not capped


def bf16_accumulates_in_float32() -> bool:
    """512 ones multiply-add to 512 only if the bfloat16 product accumulates in float32."""
    ones = torch.ones(1, 1, 512, dtype=torch.bfloat16)
    return float(torch.bmm(ones, ones.transpose(1, 2))) == 512.0


def _keys(s: torch.Tensor) -> torch.Tensor:
    """A view of S (>= 0) that compares like S: bfloat16 bit patterns as int16 (same
    order for non-negative values; integer comparisons and reductions are vectorised)."""
    return s.view(torch.int16) if s.dtype == torch.bfloat16 else s


def _key_values(keys: torch.Tensor, dtype) -> torch.Tensor:
    """float64 values of keys from :func:`_keys`."""
    return (keys.view(torch.bfloat16) if dtype == torch.bfloat16 else keys).double()


def _keys_at_most(cut: torch.Tensor, dtype) -> torch.Tensor:
    """The largest keys of ``dtype`` values <= cut (float64, >= 0 or inf): rounding never
    raises a threshold, so no block at or above it is lost."""
    c = cut.to(dtype)
    if dtype == torch.float64:
        return c
    up = c.double() > cut
    if dtype == torch.bfloat16:
        return c.view(torch.int16).sub_(up.to(torch.int16))  # c > 0 here: the next value below
    return torch.where(up, torch.nextafter(c, torch.zeros_like(c)), c)


def _first_argmax(x: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """Index along dim 0 of the first maximum of x (n, M), given top = x.amax(0): three
    vectorised passes (torch's argmax along a leading dim is an order of magnitude slower)."""
    n = x.shape[0]
    wtype = torch.uint8 if n < 2**8 else torch.int16 if n < 2**15 else torch.int32  # narrow: faster
    weight = torch.arange(n, 0, -1, device=x.device).to(wtype).view(n, *([1] * (x.ndim - 1)))
    return n - ((x == top) * weight).amax(dim=0).long()


def _run_blocks(run: torch.Tensor, col: torch.Tensor, gj: int, length: int) -> torch.Tensor:
    """(length, R) flat positions (block * GJ + pair) in S of the blocks of runs run[i] of pair col[i]."""
    first = run * (length * gj) + col
    return first + torch.arange(0, length * gj, gj, device=run.device)[:, None]


def _candidates(keys: torch.Tensor, gmax: torch.Tensor, cut: torch.Tensor, length: int) -> torch.Tensor:
    """Flat positions (block * GJ + pair) of the keys (blocks, GJ) >= cut[pair], given gmax,
    the max over each run of ``length`` blocks: only the pairs, then the runs, that reach
    their cut are searched (few, once each pair's best block is known)."""
    gj = keys.shape[1]
    cols = (gmax.amax(dim=0) >= cut).nonzero().squeeze(1)
    run, i = (gmax.index_select(1, cols) >= cut[cols]).nonzero().unbind(1)
    col = cols[i]
    pos = _run_blocks(run, col, gj, length)
    return pos[keys.take(pos) >= cut[col]]


def _even_chunks(n_pts: int, step: int, group: int) -> list[int]:
    """Chunk starts (and the end) for n_pts points in chunks of at most step points, as
    even as whole groups allow: no lone-point tail (a one-point conv may round differently)."""
    units = -(-n_pts // group)
    count = -(-units // max(1, step // group))
    return [min(n_pts, (units * c // count) * group) for c in range(count + 1)]


def _conv_max_screened(
    pts: _Points, w: torch.Tensor, geo: _Geometry, budget: _Budget, wide: bool = False,
    out_y: ConvOutput | None = None,
) -> torch.Tensor:
    """M (2F, J), exact, by bounding blocks of patches with p-norms (matrix products)
    and evaluating exactly only the blocks that may still hold a (row, column) max.

    The points are taken in spans, as many as the budget holds the bounds and the
    reciprocals of. In a span, rho_r = max of row r's reciprocals and alpha_c = max of
    input channel c, so every factor x = R / rho and y = A / alpha lies in [0, 1]. For a
    block b of at most n_b (point, patch) pairs, S_b = sum (x y)^p (batched matrix
    products, in small chunks of points) satisfies, in units of (rho_r alpha_c)^p
    (e: relative rounding of S, floor: terms lost to underflow),

        max_b^p <= S_b (1 + e) + floor   and   max_b^p >= (S_b (1 - e) - floor) / n_b.

    L[r, j] is the best lower bound known so far (attained products or the bound
    above). Each (row, column)'s most promising block of the span (largest S) is
    evaluated exactly first where it can beat L; then every other block whose upper
    bound is not strictly below L. A block is skipped only on that strict inequality:
    every product in it then rounds to at most L, so the max is found among the
    evaluated blocks, exactly as the direct engine finds it. (Row, column) pairs whose
    products in a span all sit below the float range of the bounds are deferred and
    evaluated at the end unless the span's bound for them falls below the final L.
    ``wide``: float64 and p = 32 (pseudo-point layers, whose reciprocals span many
    orders of magnitude); else p = _POWER and S in bfloat16 where the CPU multiplies
    it natively (x^p and y^p rounded to 8 bits, S accumulated in float32 and rounded:
    three roundings of at most 2^-8 each: |e| < 2^-6, margin 2^-5), float32 otherwise.
    """
    device = pts.device
    f_units, j_cols = w.shape
    g_rows = 2 * f_units
    gj = g_rows * j_cols
    n_pts, p = pts.count, geo.patches
    point = pts.shape[0] * pts.shape[1] * pts.shape[2]
    ws4 = _signed(w).reshape(-1, geo.channels, geo.kh, geo.kw)
    kk = geo.kh * geo.kw
    nb, bs, group = _block_layout(geo)
    if wide:
        dtype, power, tiny, rel = torch.float64, 32, 2.0**-1021, 1e-9
    elif _bf16_bounds(device):
        dtype, power, tiny, rel = torch.bfloat16, _POWER, 2.0**-125, 2.0**-5
    else:
        dtype, power, tiny, rel = torch.float32, _POWER, 2.0**-125, 1e-4
    sdtype = torch.float64 if wide else torch.float32  # scaling and squaring
    floor = bs * tiny
    unused = ~torch.cat([w > 0, w < 0])  # (G, J): entries no row owns (zero weights, the other sign)
    # bfloat16: S as (J, G) per block, y^p @ (x^p)^T (~10-25% faster there than (G, J)); every
    # per-pair array (m, L, scale, S's pairs) then runs j-major: pair = j * G + r
    flip = dtype == torch.bfloat16
    pshape = (j_cols, g_rows) if flip else (g_rows, j_cols)
    if flip:
        unused = unused.T.contiguous()

    def split(pair: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(r, j) of flat pair indices."""
        return (pair % g_rows, pair // g_rows) if flip else (pair // j_cols, pair % j_cols)

    lay = _Blocks(geo, nb, bs, group)
    ppad = lay.ppad
    esize = dtype.itemsize / 4
    blocks = nb / group  # per point
    # float32 elements per point, kept for a span (S with its run maxima, reciprocals,
    # points) and used per chunk (z, x^p, y^p unfolded and in blocks, scaled points)
    kept = blocks * gj * esize * (1 + 1 / _RUN) + g_rows * ppad + point
    work = g_rows * ppad * (1 + esize) + j_cols * ppad * 2 * esize + point * (sdtype.itemsize / 4 + esize)
    pieces = max(budget.elems(), g_rows * ppad * group)  # x^p squared piece by piece
    total = budget.big_elems() - pieces - budget.elems(2)  # and the exact products' gathered rows
    ev = max(group, min(budget.elems(), total // 8) // (j_cols * ppad) // group * group)  # unfolded at once
    total -= lay.rows(ev) * j_cols * ppad
    # as few spans as the budget allows (each span evaluates its pairs' best blocks), then
    # chunks as large as what is left allows, up to a cache-friendly share
    step_cap = max(group, int(total * _CHUNK_SHARE // work) // group * group)
    step = min(step_cap, max(group, _MIN_CHUNK // group * group))
    span = max(step, int((total - step * work) // kept) // group * group)
    spans = _even_chunks(n_pts, span, group)
    span = max(b - a for a, b in zip(spans, spans[1:]))
    step = max(step, min(step_cap, int((total - span * kept) // work) // group * group))
    step, ev = min(step, span), min(ev, span)
    nblk = lay.count(step)
    run_len = min(_RUN, lay.count(span))  # S is padded to whole runs
    ax = budget.buffer("ax", (step, *pts.shape), sdtype, device)
    ay = budget.buffer("ay", (step, *pts.shape), dtype, device) if dtype != sdtype else None
    rx = budget.buffer("rx", (nblk, g_rows, bs), dtype, device)
    unf = budget.buffer("unf", (lay.rows(step), j_cols, ppad), dtype, device)  # unfolded y^p
    a_blk = budget.buffer("a_blk", (nblk, j_cols, bs), dtype, device) if nb > 1 or group > 1 else unf
    a_nat = budget.buffer("a_nat", (lay.rows(ev), j_cols, ppad), device=device)
    scratch = budget.buffer("scratch", (pieces,), device=device)
    x_span = budget.buffer("x_span", (span, *pts.shape), device=device)
    r_span = budget.buffer("r_span", (lay.rows(span), g_rows, ppad), device=device)
    s_span = budget.buffer("s_span", (-(-lay.count(span) // run_len) * run_len, *pshape), dtype, device)

    m = torch.zeros(pshape, device=device)  # exact maxima found so far
    low = torch.zeros(pshape, dtype=torch.float64, device=device)  # L (absolute)
    deferred = []  # (span start, span end, (r, j) pairs, bound on the span's products)
    inf = torch.full((), math.inf, dtype=torch.float64, device=device)

    def load(s0: int, s1: int) -> tuple[torch.Tensor, torch.Tensor, list[int], torch.Tensor]:
        """The span's points, its reciprocals in natural layout (rows, G, ppad), its chunks
        and the max of each row's reciprocals (and the layer's output, on the first load)."""
        xs = pts.chunk(s0, s1 - s0, x_span)
        rs = r_span[: lay.rows(s1 - s0)]
        chunks = _even_chunks(s1 - s0, step, group)
        top = torch.zeros(g_rows, device=device)
        for c0, c1 in zip(chunks, chunks[1:]):  # c0: a whole number of groups
            n = c1 - c0
            z = geo.z(xs[c0:c1], ws4)
            if out_y is not None:
                out_y.add(s0 + c0, z)
            rc = rs[c0 : c0 + lay.rows(n)]
            _recip(z, out=rc[:n, :, :p])
            if lay.padded:
                rc[:n, :, p:].zero_()
            rc[n:].zero_()
            torch.maximum(top, rc.amax(dim=(0, 2)), out=top)
        return xs, rs, chunks, top

    def evaluate(flat: torch.Tensor, xs: torch.Tensor, rs: torch.Tensor) -> None:
        """Exact maxima of the blocks in ``flat`` (block * GJ + pair, blocks of the span):
        inputs gathered straight from the points while few products are needed (a
        quarter of an unfolding's cost), else unfolded a few points at a time."""
        if flat.numel() == 0:
            return
        n = xs.shape[0]
        blk = flat // gj
        rj = flat - blk * gj
        if flat.numel() * bs * 4 <= n * j_cols * p:
            _exact_blocks_take(blk, *split(rj), rj, rs, xs, geo, lay, m, budget)
            return
        blk, order = blk.sort()
        rj = rj[order]
        per = lay.count(ev)
        edges = torch.searchsorted(blk, torch.arange(0, lay.count(n) + per, per, device=device)).tolist()
        for q, (e0, e1) in enumerate(zip(edges, edges[1:])):
            if e0 == e1:
                continue
            i0 = q * ev
            i1 = min(n, i0 + ev)
            cols = lay.unfold(xs[i0:i1], a_nat)
            r_part = rs[i0 : i0 + lay.rows(i1 - i0)]
            r, j = split(rj[e0:e1])
            _exact_blocks(blk[e0:e1] - q * per, r, j, rj[e0:e1], r_part, cols, lay, m, budget)

    def exhaust(rc: torch.Tensor, xs: torch.Tensor, rs: torch.Tensor) -> None:
        """Exact maxima of every block of the span for the pairs rc (R, 2), indices into m."""
        n = xs.shape[0]
        nbk = lay.count(n)
        if rc.shape[0] * nbk * bs * 4 <= n * j_cols * p:  # few products: gathered
            pairs = rc[:, 0] * pshape[1] + rc[:, 1]
            evaluate((torch.arange(nbk, device=device)[:, None] * gj + pairs).view(-1), xs, rs)
            return
        for i0 in range(0, n, ev):
            i1 = min(n, i0 + ev)
            cols = lay.unfold(xs[i0:i1], a_nat)
            r_part = rs[i0 : i0 + lay.rows(i1 - i0)]
            nbk = lay.count(i1 - i0)
            every = torch.arange(nbk, device=device)
            per = max(1, budget.elems(8) // (bs * nbk))
            for q0 in range(0, rc.shape[0], per):
                part = rc[q0 : q0 + per]
                rj = (part[:, 0] * pshape[1] + part[:, 1]).repeat_interleave(nbk)
                _exact_blocks(every.repeat(part.shape[0]), *split(rj), rj, r_part, cols, lay, m, budget)

    for s0, s1 in zip(spans, spans[1:]):
        xs, rs, chunks, top_r = load(s0, s1)
        # factors x = R * inv_rho and y = A * inv_alpha in [0, 1] (up to rounding); scale holds
        # the exact inverse of the factors used, so real products = x * y * scale
        inv_rho, scale_r = _unit_scale(top_r, sdtype)  # (G,)
        inv_alpha, scale_c = _unit_scale(xs.amax(dim=(0, 2, 3)), sdtype)  # (C,)
        scale_j = scale_c.repeat_interleave(kk)
        scale = torch.outer(scale_j, scale_r) if flip else torch.outer(scale_r, scale_j)  # bounds every product
        dead = unused | (scale == 0)
        for c0, c1 in zip(chunks, chunks[1:]):  # S of every block of the span
            n = c1 - c0
            b0, k = lay.count(c0), lay.count(n)
            x_ = lay.block_major(rs[c0 : c0 + lay.rows(n)], rx, inv_rho, power, scratch)  # (k, G, bs)
            y_ = torch.mul(xs[c0:c1], inv_alpha[None, :, None, None], out=ax[:n])
            if ay is None:
                y_ = _pow(y_, power)
            else:  # squared in float32, rounded once
                y_ = ay[:n].copy_(_pow(y_, power))
            yb = lay.block_major(lay.unfold(y_, unf), a_blk)  # (k, J, bs)
            if flip:
                torch.bmm(yb, x_.transpose(1, 2), out=s_span[b0 : b0 + k])
            else:
                torch.bmm(x_, yb.transpose(1, 2), out=s_span[b0 : b0 + k])
        k = lay.count(s1 - s0)
        runs = -(-k // run_len)
        keys = _keys(s_span[: runs * run_len]).view(runs * run_len, gj)
        keys[k:].fill_(-1)  # below every cut (cut >= 0)
        gmax = keys.view(runs, run_len, gj).amax(dim=1)  # (runs, GJ)
        top = gmax.amax(dim=0)  # (GJ,): each pair's largest S in the span
        smax = _key_values(top, dtype).view(pshape)
        # L in this span's units, float64 (the ratio can be huge or tiny), and the span's
        # own lower bounds
        known = _pow(low / scale, power).masked_fill_(dead, 0.0)
        torch.maximum(known, (smax * (1 - rel) - floor).clamp(min=0) / bs, out=known)
        thresh = (known - floor) / (1 + rel)
        # each pair's most promising block first, where it can beat L: its max raises L
        want = ((smax > 0) & (smax >= thresh) & ~dead).view(-1)
        if bool(want.any()):
            col = want.nonzero().squeeze(1)
            run = _first_argmax(gmax, top)[col]
            pos = _run_blocks(run, col, gj, run_len)  # (run length, W)
            sub = keys.take(pos)
            best = _first_argmax(sub, top[col])
            pilot = pos.gather(0, best[None]).squeeze(0)
            # done: out of S and of their runs' maxima
            keys.view(-1)[pilot] = -1
            gmax.view(-1)[run * gj + col] = sub.scatter_(0, best[None], -1).amax(dim=0)
            evaluate(pilot, xs, rs)
            torch.maximum(low, m.double(), out=low)
            torch.maximum(known, _pow(low / scale, power).masked_fill_(dead, 0.0), out=known)
            thresh = (known - floor) / (1 + rel)
        starved = (thresh <= 0) & ~dead  # every product here sits below the float range
        cut = torch.where(starved | dead, inf, thresh).view(-1)
        evaluate(_candidates(keys, gmax, _keys_at_most(cut, dtype), run_len), xs, rs)
        torch.maximum(low, m.double(), out=low)  # attained products: the best L
        if bool(starved.any()):
            # upper bound of every product of the span for these pairs: (S_max (1 + e) + floor)^(1/p)
            rc = starved.nonzero()
            top_s = smax[rc[:, 0], rc[:, 1]]
            bound = ((top_s * (1 + rel) + floor) ** (1.0 / power)) * scale[rc[:, 0], rc[:, 1]] * (1 + 1e-12)
            if s1 == n_pts or rc.shape[0] * k * bs * 4 <= (s1 - s0) * j_cols * p:
                # no later span to raise L, or few products: now, while the span is at hand
                exhaust(rc[bound >= m[rc[:, 0], rc[:, 1]].double()], xs, rs)
            else:
                deferred.append((s0, s1, rc, bound))
    for s0, s1, rc, bound in deferred:
        keep = bound >= m[rc[:, 0], rc[:, 1]].double()
        if not bool(keep.any()):
            continue
        rc = rc[keep]
        xs, rs, _, _ = load(s0, s1)
        exhaust(rc, xs, rs)
    return m.T.contiguous() if flip else m


def _unit_scale(top: torch.Tensor, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(inv, scale): inv ~ 1/top in ``dtype`` (0 where top = 0, capped to stay finite) and
    scale = 1/inv in float64, exactly consistent with the factor used."""
    inv = torch.where(top > 0, 1.0 / top.double(), torch.zeros((), dtype=torch.float64, device=top.device))
    inv = inv.clamp(max=2.0**120).to(dtype)
    scale = torch.where(inv > 0, 1.0 / inv.double(), torch.zeros((), dtype=torch.float64, device=top.device))
    return inv, scale


def _pow(x: torch.Tensor, power: int) -> torch.Tensor:
    """x ** power for power a power of two, by repeated squaring (in place on x)."""
    k = power
    while k > 1:
        x.mul_(x)
        k //= 2
    return x


def _exact_blocks_take(block, r, j, rj, r_nat, xc, geo: _Geometry, lay: _Blocks, m, budget: _Budget) -> None:
    """As :func:`_exact_blocks`, reading the inputs straight from the padded points xc."""
    if block.numel() == 0:
        return
    device = xc.device
    nb, bs, group, p = lay.nb, lay.bs, lay.group, geo.patches
    n_pts = xc.shape[0]
    point_size = geo.channels * geo.hp * geo.wp
    toff = geo.patch_offsets(device)
    x_flat = xc.reshape(-1)
    ri = _row_index(block, r, r_nat.shape[1], lay) if group == 1 else None
    base = geo.column_offsets(device)[j]  # (T,)
    if group == 1:
        pos = torch.arange(nb * bs, device=device).clamp(max=p - 1)  # padding: any valid patch (R = 0)
        toff_tab = toff[pos].view(nb, bs)
        sub = block % nb
        base += block.div(nb, rounding_mode="floor") * point_size
    else:
        t = torch.arange(bs, device=device)
        t_point, t_off = t // p, toff[t % p]
    rows = _rows_view(r_nat, lay)
    step = max(1, budget.elems(6) // bs)
    for s0 in range(0, block.numel(), step):
        s1 = s0 + step
        idx = ri[s0:s1] if ri is not None else _row_index(block[s0:s1], r[s0:s1], r_nat.shape[1], lay)
        rv = _gather(rows, idx, bs, budget, "ex_r")
        if group == 1:
            av = torch.take(x_flat, base[s0:s1, None] + toff_tab[sub[s0:s1]])
        else:
            pt = (block[s0:s1, None] * group + t_point).clamp_(max=n_pts - 1)  # past the chunk: R = 0
            av = torch.take(x_flat, pt.mul_(point_size).add_(base[s0:s1, None]).add_(t_off))
        _update_max(m, rj[s0:s1], rv, av)


def _row_index(bl, x, xs: int, lay: _Blocks) -> torch.Tensor:
    """(T, g) rows of :func:`_rows_view` (g = group, or 1) holding row x[i] of block bl[i]
    of a natural layout (rows, xs, ppad). With g = 1 computed once for all steps (fewer
    small ops; no larger than the block list); groups: step by step (g times larger)."""
    if lay.group == 1:
        nb = lay.nb
        return ((bl.div(nb, rounding_mode="floor") * xs + x) * nb + bl % nb)[:, None]
    pts = bl[:, None] * lay.group + torch.arange(lay.group, device=bl.device)  # (T, group)
    return pts.mul_(xs).add_(x[:, None])


def _rows_view(nat: torch.Tensor, lay: _Blocks) -> torch.Tensor:
    """nat (rows, X, ppad) as rows of one block's (or, for groups, one point's) patches."""
    return nat.reshape(-1, lay.bs if lay.group == 1 else lay.ppad)


def _gather(rows: torch.Tensor, idx: torch.Tensor, bs: int, budget: _Budget, key: str) -> torch.Tensor:
    """(T, bs): the rows idx (T, g) of ``rows``, side by side.

    index_select on a 2-d view: an order of magnitude faster than advanced indexing
    with two index tensors."""
    t = idx.shape[0]
    out = budget.buffer(key, (idx.numel(), rows.shape[1]), rows.dtype, rows.device)
    return torch.index_select(rows, 0, idx.view(-1), out=out).view(t, bs)


def _update_max(m, rj, rv, av) -> None:
    """m.view(-1)[rj] = max(m.view(-1)[rj], max of rv * av along dim 1), in place (rv is overwritten)."""
    best = rv.mul_(av).amax(dim=1)
    m.view(-1).scatter_reduce_(0, rj, best, reduce="amax", include_self=True)


def _exact_blocks(block, r, j, rj, r_nat, a_nat, lay: _Blocks, m, budget: _Budget) -> None:
    """m[r, j] = max(m[r, j], max over the block's pairs of R[r, pair] * A[j, pair]).

    block, r, j: (T,) int64, block = q * nb + sub-block, rj = r * J + j; r_nat (rows, G,
    ppad) the chunk's reciprocals and a_nat (rows, J, ppad) its unfolded inputs in
    natural layout.
    """
    if block.numel() == 0:
        return
    g_rows, j_cols = r_nat.shape[1], a_nat.shape[1]
    whole = lay.group == 1
    if whole:
        ri, ai = _row_index(block, r, g_rows, lay), _row_index(block, j, j_cols, lay)
    r_rows, a_rows = _rows_view(r_nat, lay), _rows_view(a_nat, lay)
    step = max(1, budget.elems(4) // lay.bs)
    for s0 in range(0, block.numel(), step):
        s1 = s0 + step
        if whole:
            rsel, asel = ri[s0:s1], ai[s0:s1]
        else:
            rsel = _row_index(block[s0:s1], r[s0:s1], g_rows, lay)
            asel = _row_index(block[s0:s1], j[s0:s1], j_cols, lay)
        rv = _gather(r_rows, rsel, lay.bs, budget, "ex_r")
        av = _gather(a_rows, asel, lay.bs, budget, "ex_a")
        _update_max(m, rj[s0:s1], rv, av)
