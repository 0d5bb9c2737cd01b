"""Empirical sensitivities of every prunable weight (SPEC-sipp section 2).

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
so only one layer input is held at a time. The model is not modified: its modules'
train/eval flags are restored and every hook is removed. On CUDA, TF32 is switched
off for the duration (it would cost three digits of z).

>>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
>>> sens = compute_sensitivities(model, torch.randn(8, 4))
>>> {name: tuple(s.shape) for name, s in sens.items()}
{'0': (3, 4), '2': (2, 3)}
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as Fnn
from torch import nn

from .layers import dense_layers, prunable_layers

EPS = float(torch.finfo(torch.float32).eps)  # z <= EPS counts as "no signal" (SPEC 2.2)
PATCH_REDUCTIONS = ("max", "mean")
DEFAULT_CHUNK_BYTES = 512 * 2**20

# working tensors are also kept below this size when chunk_bytes is larger: small
# temporaries stay in cache and are recycled by the allocator instead of being
# mapped fresh from the OS on every call
_CACHE_FRIENDLY_BYTES = 4 * 2**20
_BIG_BYTES = 64 * 2**20  # one chunk of the screened engine (bounds the number of chunks)
_GPU_STEP_BYTES = 256 * 2**20
_PIECE_ELEMS = 2**16  # elements squared together (stays in L2 through the squarings)
_BLOCK = 64  # (point, patch) pairs per screening block
_POWER = 16  # p of the float32 p-norm bounds (float64 layers use 32)
_DIRECT_MAX_PRODUCTS = 2**25  # conv layers below this many products use the direct engine

__all__ = [
    "EPS", "PATCH_REDUCTIONS", "DEFAULT_CHUNK_BYTES", "compute_sensitivities", "layer_sensitivity", "left_dense",
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
    """Empirical sensitivity of every weight of every prunable layer (SPEC-sipp 2).

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
            processed and its padded / pseudo-point copy (at most twice its size);
            it is respected down to one point (or one block of points) per step.
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
    """
    _check_reduction(patch_reduction)
    chunk_bytes = _check_chunk_bytes(chunk_bytes)
    layers = prunable_layers(model)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    x = _check_inputs(inputs, device, dtype)
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

        def hook(module, args):
            name = names[module]
            a = args[0]
            s = layer_sensitivity(module, a, patch_reduction=patch_reduction, chunk_bytes=chunk_bytes, _budget=budget)
            s = s.to("cpu", torch.float32)
            prev = results.get(name)
            results[name] = s if prev is None else torch.maximum(prev, s)
            state["done"] += costs.get(name, 0.0)
            if progress is not None:
                progress(min(1.0, state["done"] / total_cost), f"sensitivity of {name}")

        if progress is not None:
            progress(0.0, f"forward pass over S ({x.shape[0]} points)")
        handles = [m.register_forward_pre_hook(hook) for m in layers.values()]
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
) -> torch.Tensor:
    """Sensitivities of one prunable layer from its input batch; shaped like its weight.

    ``layer_input`` is what the layer receives (|S|, ...); computed on its device in
    float32, returned there. ``engine`` ("auto", "direct", "screened") only chooses
    how the exact max is found; every engine gives the same numbers.
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
            xp, split = _split(geo.pad(a), negative)  # (N, C, Hp, Wp) >= 0
            if patch_reduction == "mean":
                m = _conv_mean(xp, w, geo, budget)
            else:
                g_rows, j_cols = 2 * w.shape[0], w.shape[1]
                products = g_rows * j_cols * xp.shape[0] * geo.patches
                use_direct = engine == "direct" or (engine == "auto" and products <= _DIRECT_MAX_PRODUCTS)
                if use_direct:
                    m = _conv_max_direct(xp, w, geo, budget)
                else:
                    m = _conv_max_screened(xp, w, geo, budget, wide=split)
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


def _recip(z: torch.Tensor) -> torch.Tensor:
    """1/z where z > EPS, 0 elsewhere ("no signal"), in place on z."""
    small = z <= EPS
    z.reciprocal_()
    return z.masked_fill_(small, 0.0)


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


# --------------------------------------------------------------------------- Conv2d, mean


def _conv_mean(xp: torch.Tensor, w: torch.Tensor, geo: _Geometry, budget: _Budget) -> torch.Tensor:
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
        r = _recip(geo.z(chunk, ws4))  # (n, G, P)
        geo.unfold(chunk, out=cols[:n])  # (n, J, P)
        torch.bmm(r, cols[:n].transpose(1, 2), out=sums[:n])  # (n, G, J)
        torch.maximum(out, sums[:n].amax(0), out=out)
    return out / p


# --------------------------------------------------------------------------- Conv2d, max, direct


def _conv_max_direct(xp: torch.Tensor, w: torch.Tensor, geo: _Geometry, budget: _Budget) -> torch.Tensor:
    """M (2F, J) by evaluating every product a_{j,p}(x) / z_{f,p}(x), in chunks of points."""
    ws4 = _signed(w).reshape(-1, geo.channels, geo.kh, geo.kw)
    g_rows, j_cols, p = ws4.shape[0], geo.fan_in, geo.patches
    out = torch.zeros(g_rows, j_cols, device=xp.device)
    step = max(1, budget.big_elems(2) // ((g_rows + j_cols) * p))
    for i in range(0, xp.shape[0], step):
        chunk = xp[i : i + step]
        n = chunk.shape[0]
        r = _recip(geo.z(chunk, ws4)).transpose(1, 2).reshape(n * p, g_rows)  # (pairs, G)
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

    def natural(self, src: torch.Tensor, buf: torch.Tensor | None) -> torch.Tensor:
        """src (n, X, P) in natural layout; a copy into buf only when padding is needed."""
        n, x, p = src.shape
        rows = self.rows(n)
        if not self.padded and rows == n:
            return src
        out = buf[:rows]
        if self.padded:
            out[:, :, p:].zero_()
        out[:n, :, :p].copy_(src)
        if rows > n:
            out[n:].zero_()
        return out

    def block_major(self, nat: torch.Tensor, out: torch.Tensor, scale=None, power: int = 1) -> torch.Tensor:
        """nat (rows, X, ppad) -> (blocks, X, bs) in ``out``, optionally (nat * scale[X]) ** power.

        Without padding, groups or sub-blocks the layouts coincide and nat itself is
        used when no scaling is asked for. The power is taken piece by piece so that
        each piece stays in cache through its squarings.
        """
        rows, x, ppad = nat.shape
        nb, bs, group = self.nb, self.bs, self.group
        k = rows // group * nb
        if scale is None and nb == 1 and group == 1:
            return nat
        if group == 1:
            src = nat.view(rows, x, nb, bs).transpose(1, 2)  # (rows, nb, X, bs)
            dst = out[:k].view(rows, nb, x, bs)
            sview = None if scale is None else scale.view(1, 1, x, 1)
        else:
            src = nat.view(rows // group, group, x, ppad).transpose(1, 2)  # (q, X, group, P)
            dst = out[:k].view(rows // group, x, group, ppad)
            sview = None if scale is None else scale.view(1, x, 1, 1)
        piece = max(1, _PIECE_ELEMS // max(1, dst[0].numel()))
        for i in range(0, dst.shape[0], piece):
            d = dst[i : i + piece]
            if sview is None:
                d.copy_(src[i : i + piece])
            else:
                torch.mul(src[i : i + piece], sview, out=d)
            _pow(d, power)
        return out[:k]


def _conv_max_screened(
    xp: torch.Tensor, w: torch.Tensor, geo: _Geometry, budget: _Budget, wide: bool = False
) -> torch.Tensor:
    """M (2F, J), exact, by bounding blocks of patches with p-norms (matrix products)
    and evaluating exactly only the blocks that may still hold a (row, column) max.

    The points are streamed in small chunks. In a chunk, rho_r = max of row r's
    reciprocals and alpha_c = max of input channel c, so every factor x = R / rho and
    y = A / alpha lies in [0, 1]. For a block b of at most n_b (point, patch) pairs,
    S_b = sum (x y)^p (one batched matrix product) satisfies, in units of
    (rho_r alpha_c)^p (e: relative rounding of S, floor: terms lost to underflow),

        max_b^p <= S_b (1 + e) + floor   and   max_b^p >= (S_b (1 - e) - floor) / n_b.

    L[r, j] is the best lower bound known so far (attained products or the bound
    above). A block is skipped only when its upper bound is strictly below L: every
    product in it then rounds to at most L, so the max is found among the evaluated
    blocks, exactly as the direct engine finds it. (Row, column) pairs whose products
    in a chunk all sit below the float range of the bounds are deferred and evaluated
    at the end unless the chunk's bound for them falls below the final L.
    ``wide``: float64 and p = 32 (pseudo-point layers, whose reciprocals span many
    orders of magnitude); else float32 and p = _POWER.
    """
    device = xp.device
    f_units, j_cols = w.shape
    g_rows = 2 * f_units
    gj = g_rows * j_cols
    n_pts, p = xp.shape[0], geo.patches
    ws4 = _signed(w).reshape(-1, geo.channels, geo.kh, geo.kw)
    kk = geo.kh * geo.kw
    nb, bs, group = _block_layout(geo)
    if wide:
        dtype, power, tiny, rel = torch.float64, 32, 2.0**-1021, 1e-9
    else:
        dtype, power, tiny, rel = torch.float32, _POWER, 2.0**-125, 1e-4
    floor = bs * tiny
    sel = torch.cat([w > 0, w < 0])  # (G, J): the row that owns each weight

    esize = 2 if dtype == torch.float64 else 1
    per_block = (g_rows + j_cols) * bs * (1 + esize) + g_rows * j_cols * (esize + 1)
    per_point = per_block * nb / group + (xp[0].numel() + j_cols * p) * esize + (g_rows + j_cols) * p
    step = max(group, int(budget.big_elems() // max(1.0, per_point)) // group * group)
    step = min(step, -(-n_pts // group) * group)
    lay = _Blocks(geo, nb, bs, group)
    nblk, rows_max, ppad = lay.count(step), lay.rows(step), lay.ppad
    rx = budget.buffer("rx", (nblk, g_rows, bs), dtype, device)
    a_blk = budget.buffer("a_blk", (nblk, j_cols, bs), dtype, device)
    ax = budget.buffer("ax", (step, *xp.shape[1:]), dtype, device)
    s_buf = budget.buffer("s_buf", (nblk, g_rows, j_cols), dtype, device)
    unf = budget.buffer("unf", (rows_max, j_cols, p), dtype, device)  # unfolded y^p
    nat_needed = lay.padded or group > 1
    r_nat_buf = budget.buffer("r_nat", (rows_max, g_rows, ppad), device=device) if nat_needed else None
    a_nat_buf = budget.buffer("a_nat", (rows_max, j_cols, ppad), device=device) if nat_needed else None
    a_raw = budget.buffer("a_raw", (step, j_cols, p), device=device)

    m = torch.zeros(g_rows, j_cols, device=device)  # exact maxima found so far
    low = torch.zeros(g_rows, j_cols, dtype=torch.float64, device=device)  # L (absolute)
    deferred = []  # (chunk start, chunk size, (r, j) pairs, bound on the chunk's products)

    def load(i: int, n: int) -> torch.Tensor:
        """The chunk's reciprocals in natural layout (rows, G, ppad)."""
        return lay.natural(_recip(geo.z(xp[i : i + n], ws4)), r_nat_buf)

    def raw_columns(xc: torch.Tensor) -> torch.Tensor:
        """The chunk's unfolded inputs in natural layout (rows, J, ppad)."""
        return lay.natural(geo.unfold(xc, out=a_raw[: xc.shape[0]]), a_nat_buf)

    class _Source:
        """The chunk's inputs for exact evaluation: gathered straight from the padded
        points while few products are needed, unfolded once when many are."""

        def __init__(self, xc):
            # gathering costs more per product than one unfold pass: allow a quarter of it
            self.xc, self.cols, self.allowance = xc, None, xc.shape[0] * j_cols * p // 4

        def columns(self, needed: int):
            if self.cols is None and needed > self.allowance:
                self.cols = raw_columns(self.xc)
            self.allowance -= needed
            return self.cols

    def evaluate(src: "_Source", block, r, j):
        cols = src.columns(block.numel() * bs)
        if cols is not None:
            _exact_blocks(block, r, j, rb, cols, lay, m, budget)
        else:
            _exact_blocks_take(block, r, j, rb, src.xc, geo, lay, m, budget)

    unused = ~sel  # (G, J) entries no row owns (zero weights, the other sign)
    inf = torch.full((), math.inf, dtype=torch.float64, device=device)
    for i in range(0, n_pts, step):
        n = min(step, n_pts - i)
        k = lay.count(n)
        xc = xp[i : i + n]
        rb = load(i, n)  # (rows, G, ppad)
        # factors x = R * inv_rho and y = A * inv_alpha in [0, 1] (up to rounding); scale holds
        # the exact inverse of the factors used, so real products = x * y * scale
        inv_rho, scale_r = _unit_scale(rb.amax(dim=(0, 2)), dtype)  # (G,)
        inv_alpha, scale_c = _unit_scale(xc.amax(dim=(0, 2, 3)), dtype)  # (C,)
        scale = torch.outer(scale_r, scale_c.repeat_interleave(kk))  # (G, J), bounds every product
        dead = unused | (scale == 0)
        x_ = lay.block_major(rb, rx, inv_rho, power)  # (k, G, bs): (R / rho)^p
        y_ = _pow(torch.mul(xc, inv_alpha[None, :, None, None], out=ax[:n]), power)
        geo.unfold(y_, out=unf[:n])
        rows = lay.rows(n)
        if rows > n:
            unf[n:rows].zero_()
        yb = lay.block_major(_padded(unf[:n], ppad) if lay.padded else unf[:rows], a_blk)
        sb = torch.bmm(x_, yb.transpose(1, 2), out=s_buf[:k])  # (k, G, J)
        # L in this chunk's units, float64 (the ratio can be huge or tiny)
        known = _pow(low / scale, power).masked_fill_(dead, 0.0)
        smax = None  # per (r, j): the chunk's largest S, where known
        src = _Source(xc)
        if i == 0:
            # first chunk, nothing known yet: evaluate each pair's most promising block
            # (largest S) exactly, and take its own p-norm lower bounds
            top = sb.amax(dim=0)
            smax = top.double()
            torch.maximum(known, (smax * (1 - rel) - floor).clamp(min=0) / bs, out=known)
            pilot = ((sb == top) & (top > 0) & ~dead).view(-1).nonzero().squeeze(1)
            if pilot.numel():
                rj = pilot % gj
                evaluate(src, pilot // gj, rj // j_cols, rj % j_cols)
                torch.maximum(low, m.double(), out=low)
                torch.maximum(known, _pow(low / scale, power).masked_fill_(dead, 0.0), out=known)
        thresh = (known - floor) / (1 + rel)
        starved = (thresh <= 0) & ~dead  # every product here sits below the float range
        if i == 0:
            cut = torch.where(starved | dead, inf, thresh)
        else:
            # later chunks: blocks at or above the threshold known *before* the chunk are
            # candidates (all blocks of starved pairs); their own lower bounds then raise
            # the threshold and prune the list again
            cut = torch.where(dead, inf, thresh.clamp(min=0))
        flat = (sb >= cut.to(dtype)).view(-1).nonzero().squeeze(1)
        if flat.numel() and i > 0:
            vals = sb.view(-1)[flat].double()
            rj = flat % gj
            smax = torch.zeros(gj, dtype=torch.float64, device=device)
            smax.scatter_reduce_(0, rj, vals, reduce="amax", include_self=True)
            smax = smax.view(g_rows, j_cols)
            torch.maximum(known, (smax * (1 - rel) - floor).clamp(min=0) / bs, out=known)
            thresh = (known - floor) / (1 + rel)
            starved = (thresh <= 0) & ~dead
            keep = (vals >= thresh.view(-1)[rj]) & ~starved.view(-1)[rj]
            flat = flat[keep]
        if flat.numel():
            rj = flat % gj
            evaluate(src, flat // gj, rj // j_cols, rj % j_cols)
            torch.maximum(low, m.double(), out=low)  # attained products: the best L
        if bool(starved.any()):
            # upper bound of every product of the chunk for these pairs: (S_max (1 + e) + floor)^(1/p)
            rc = starved.nonzero()
            if smax is None:
                top = torch.zeros(rc.shape[0], dtype=torch.float64, device=device)
            else:
                top = smax[rc[:, 0], rc[:, 1]]
            bound = ((top * (1 + rel) + floor) ** (1.0 / power)) * scale[rc[:, 0], rc[:, 1]] * (1 + 1e-12)
            deferred.append((i, n, rc, bound))
    for i, n, rc, bound in deferred:
        keep = bound >= m[rc[:, 0], rc[:, 1]].double()
        if not bool(keep.any()):
            continue
        rc = rc[keep]
        rb = load(i, n)
        ab = raw_columns(xp[i : i + n])
        nbk = lay.count(n)
        blocks = torch.arange(nbk, device=device)
        per = max(1, budget.elems(8) // (bs * nbk))
        for q0 in range(0, rc.shape[0], per):
            part = rc[q0 : q0 + per]
            _exact_blocks(blocks.repeat(part.shape[0]), part[:, 0].repeat_interleave(nbk),
                          part[:, 1].repeat_interleave(nbk), rb, ab, lay, m, budget)
    return m


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


def _exact_blocks_take(block, r, j, r_nat, xc, geo: _Geometry, lay: _Blocks, m, budget: _Budget) -> None:
    """As :func:`_exact_blocks`, reading the inputs straight from the padded points xc."""
    if block.numel() == 0:
        return
    device = xc.device
    g_rows, j_cols = r_nat.shape[1], geo.fan_in
    nb, bs, group, ppad, p = lay.nb, lay.bs, lay.group, lay.ppad, geo.patches
    n_pts = xc.shape[0]
    point_size = geo.channels * geo.hp * geo.wp
    joff = geo.column_offsets(device)
    toff = geo.patch_offsets(device)
    x_flat = xc.reshape(-1)
    m_flat = m.view(-1)
    t = torch.arange(bs, device=device)
    if group == 1:
        pos = torch.arange(nb * bs, device=device).clamp(max=p - 1)  # padding: any valid patch (R = 0)
        toff_tab = toff[pos].view(nb, bs)
        r_rows = r_nat.reshape(-1, nb, bs)
    else:
        t_point, t_patch = t // p, t % p
        r_rows = r_nat.reshape(-1, ppad)
        member = torch.arange(group, device=device)
    step = max(1, budget.elems(6) // bs)
    for s0 in range(0, block.numel(), step):
        bl, rr, jj = block[s0 : s0 + step], r[s0 : s0 + step], j[s0 : s0 + step]
        if group == 1:
            q, sub = bl // nb, bl % nb
            rv = r_rows[q * g_rows + rr, sub]  # (T, bs)
            av = torch.take(x_flat, (q * point_size + joff[jj])[:, None] + toff_tab[sub])
        else:
            pts = bl[:, None] * group + member[None, :]  # (T, group)
            rv = r_rows[pts * g_rows + rr[:, None]].reshape(-1, bs)
            pt = (bl[:, None] * group + t_point[None, :]).clamp(max=n_pts - 1)  # past the chunk: R = 0
            av = torch.take(x_flat, pt * point_size + joff[jj][:, None] + toff[t_patch][None, :])
        best = (rv * av).amax(dim=1)
        m_flat.scatter_reduce_(0, rr * j_cols + jj, best, reduce="amax", include_self=True)


def _padded(t: torch.Tensor, ppad: int) -> torch.Tensor:
    """(n, X, P) zero-padded to (n, X, ppad)."""
    return Fnn.pad(t, (0, ppad - t.shape[2]))


def _exact_blocks(block, r, j, r_nat, a_nat, lay: _Blocks, m, budget: _Budget) -> None:
    """m[r, j] = max(m[r, j], max over the block's pairs of R[r, pair] * A[j, pair]).

    block, r, j: (T,) int64, block = q * nb + sub-block; r_nat (rows, G, ppad) the chunk's
    reciprocals and a_nat (rows, J, ppad) its unfolded inputs in natural layout.
    """
    if block.numel() == 0:
        return
    g_rows, j_cols = r_nat.shape[1], a_nat.shape[1]
    nb, bs, group, ppad = lay.nb, lay.bs, lay.group, lay.ppad
    m_flat = m.view(-1)
    step = max(1, budget.elems(4) // bs)
    if group == 1:
        r_rows, a_rows = r_nat.reshape(-1, nb, bs), a_nat.reshape(-1, nb, bs)
    else:
        r_rows, a_rows = r_nat.reshape(-1, ppad), a_nat.reshape(-1, ppad)
        member = torch.arange(group, device=r_nat.device)
    for s0 in range(0, block.numel(), step):
        bl, rr, jj = block[s0 : s0 + step], r[s0 : s0 + step], j[s0 : s0 + step]
        if group == 1:
            q, sub = bl // nb, bl % nb
            rv = r_rows[q * g_rows + rr, sub]  # (T, bs)
            av = a_rows[q * j_cols + jj, sub]
        else:
            pts = bl[:, None] * group + member[None, :]  # (T, group)
            rv = r_rows[pts * g_rows + rr[:, None]].reshape(-1, bs)
            av = a_rows[pts * j_cols + jj[:, None]].reshape(-1, bs)
        best = (rv * av).amax(dim=1)
        m_flat.scatter_reduce_(0, rr * j_cols + jj, best, reduce="amax", include_self=True)
