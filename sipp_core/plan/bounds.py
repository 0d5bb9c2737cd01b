"""Error-bound formulas of one row and the size of the sample S (docs/sipp.md §2.5 and §3).

A row is one (output unit f, sign sigma) pair of a weight viewed as F x J; per-row
tensors are shaped (F, 2): column 0 holds the positive weights' row, column 1 the
negative weights' row. Every formula here is evaluated in float64.

    L_l          = ln(8 (P_l + 1) k_l / delta)                      log_term
    eps_rand(m)  = (u + sqrt(u^2 + 6u)) / 2,  u = 2 L_l T / m         eps_rand
    m(eps)       = ceil(L_l T (3 + 2 eps) / eps^2)                    m_for_eps
    eps_det(m)   = sum of s over the row's weights outside its top m  eps_det / sorted_rows
    |S|          = ceil(C ln(8 eta eta_max / delta_S))                sample_size

>>> L = log_term(1, 1, 1e-16)  # a Linear layer: P_l = k_l = 1
>>> round(eps_rand(100, 2.0, L), 3)  # a row with T = 2 keeping m = 100 weights
2.526
>>> int(m_for_eps(eps_rand(100, 2.0, L), 2.0, L))
100
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import BadInput
from ..options import DEFAULT_DELTA
from ..zoo.layers import LayerInfo, layer_infos, prunable_layers

SAMPLE_C = 3.0  # C in |S| = ceil(C ln(8 eta eta_max / delta_S))

__all__ = [
    "DEFAULT_DELTA", "SAMPLE_C", "check_delta", "check_epsilon", "log_term", "eps_rand", "m_for_eps",
    "row_totals", "sorted_rows", "SortedRows", "eps_det", "det_m_for_eps", "sample_size", "sample_size_terms",
    "draw_sample", "eps_rand_rows", "m_for_eps_rows",
]


# ------------------------------------------------------------------ validation


def _is_real(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def plain_number(v):
    """A 0-d tensor or array, or a numpy scalar, as a Python number (anything else as it is): what the checks and a
    run's JSON settings take (a np.float32(0.2) keep ratio used to be refused as out of range)."""
    if isinstance(v, (torch.Tensor, np.ndarray)) and getattr(v, "ndim", 1) == 0:
        return v.item()
    if isinstance(v, np.generic):
        return v.item()
    return v


def check_delta(delta, name: str = "delta") -> float:
    """Return delta as a float; ValueError unless it is a number with 0 < delta < 1."""
    if isinstance(delta, (torch.Tensor, np.ndarray)) and getattr(delta, "ndim", 1) == 0:
        delta = delta.item()
    if not _is_real(delta) or not math.isfinite(float(delta)) or not 0.0 < float(delta) < 1.0:
        raise BadInput(f"{name} must be a number with 0 < {name} < 1; got {delta!r}",
                       f"give {name} a small probability, e.g. {name}=1e-16 (the authors' value)")
    return float(delta)


def check_epsilon(epsilon, name: str = "epsilon") -> float:
    """Return epsilon as a float; ValueError unless it is a finite number > 0."""
    if isinstance(epsilon, (torch.Tensor, np.ndarray)) and getattr(epsilon, "ndim", 1) == 0:
        epsilon = epsilon.item()
    if not _is_real(epsilon) or not math.isfinite(float(epsilon)) or not float(epsilon) > 0.0:
        raise BadInput(f"{name} must be a finite number > 0; got {epsilon!r}",
                       f"give {name} the relative error a row may keep, e.g. {name}=0.5")
    return float(epsilon)


def _check_count(value, name: str, minimum: int) -> int:
    if isinstance(value, (torch.Tensor, np.ndarray)) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise BadInput(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


# ------------------------------------------------------------------ array plumbing
# The formulas accept Python numbers, numpy arrays or torch tensors (broadcasting).
# A torch tensor anywhere in the arguments gives a float64 torch tensor back (on the
# first tensor's device); otherwise numpy arrays give a float64 ndarray and plain
# numbers a Python float.


def _as_f64(args):
    device = next((a.device for a in args if isinstance(a, torch.Tensor)), None)
    if device is not None:
        return [torch.as_tensor(a, dtype=torch.float64, device=device) for a in args], "torch"
    if any(isinstance(a, np.ndarray) for a in args):
        return [torch.as_tensor(np.asarray(a, dtype=np.float64)) for a in args], "numpy"
    return [torch.as_tensor(float(a), dtype=torch.float64) for a in args], "scalar"


def _back(t: torch.Tensor, kind: str):
    if kind == "torch":
        return t
    if kind == "numpy":
        return t.numpy()
    return float(t.item())


def _check_nonneg(t: torch.Tensor, name: str) -> None:
    if bool(torch.isnan(t).any()) or bool((t < 0).any()):
        raise ValueError(f"{name} must be >= 0 (and not nan)")


# ------------------------------------------------------------------ L_l, eps_rand, m(eps)


def log_term(patches, kernel_size=None, delta: float = DEFAULT_DELTA) -> float:
    """L_l = ln(8 (P_l + 1) k_l / delta) (docs/sipp.md §3) for one layer.

    Call it with the numbers, ``log_term(P_l, k_l, delta)``, or with the layer's
    :class:`~sipp_core.layers.LayerInfo`, ``log_term(info, delta=delta)``.
    P_l is the number of patches (1 for Linear), k_l = kh * kw (1 for Linear).

    Raises:
        ValueError: delta outside (0, 1), or P_l, k_l not integers >= 1.
    """
    if isinstance(patches, LayerInfo):
        if kernel_size is not None:
            raise ValueError("log_term(info, delta=...): kernel_size comes from the LayerInfo; do not pass it")
        kernel_size, patches = patches.kernel_size, patches.patches
    if kernel_size is None:
        raise ValueError("log_term needs kernel_size (k_l = kh * kw, 1 for Linear) or a LayerInfo")
    p = _check_count(patches, "patches (P_l)", 1)
    k = _check_count(kernel_size, "kernel_size (k_l)", 1)
    d = check_delta(delta)
    return math.log(8.0 * (p + 1) * k) - math.log(d)


def eps_rand(m, total, log_term_value):
    """Sampling bound eps_rand(m) = (u + sqrt(u^2 + 6u)) / 2 with u = 2 L T / m (docs/sipp.md §3).

    Vectorised (broadcasting) over m, total T and L. m = 0 gives inf for a row
    with signal; a row without signal (T = 0) gives 0 for every m (it is pruned
    whole, docs/sipp.md §3). Non-increasing in m.

    Raises:
        ValueError: a negative (or nan) m, T or L.
    """
    (m_t, t_t, l_t), kind = _as_f64([m, total, log_term_value])
    for v, n in ((m_t, "m"), (t_t, "total (T)"), (l_t, "log_term (L)")):
        _check_nonneg(v, n)
    a = 2.0 * l_t * t_t
    with torch.no_grad():
        u = a / m_t  # inf at m = 0, nan for 0/0 (handled below)
        e = (u + torch.sqrt(u * u + 6.0 * u)) / 2.0
        e = torch.where(m_t == 0, torch.full_like(e, math.inf), e)
        e = torch.where(a == 0, torch.zeros_like(e), e)
    return _back(e, kind)


def m_for_eps(epsilon, total, log_term_value):
    """Smallest m >= 1 with eps_rand(m) <= epsilon (0 for rows without signal), float64.

    Starts from the closed form ceil(L T (3 + 2 eps) / eps^2) and corrects it by
    evaluating :func:`eps_rand` itself, so the result is the exact inverse of the
    implemented eps_rand despite float round-off at the ceiling. The result is
    float64 (it can exceed any row length; cap it at nnz yourself).

    Raises:
        ValueError: epsilon not a finite number > 0, or a negative T or L.
    """
    if not isinstance(epsilon, (torch.Tensor, np.ndarray)) or np.ndim(epsilon) == 0:
        epsilon = check_epsilon(epsilon) if not isinstance(epsilon, torch.Tensor) else epsilon
    (e_t, t_t, l_t), kind = _as_f64([epsilon, total, log_term_value])
    if bool((~torch.isfinite(e_t)).any()) or bool((e_t <= 0).any()):
        raise ValueError("epsilon must be a finite number > 0 (everywhere)")
    _check_nonneg(t_t, "total (T)")
    _check_nonneg(l_t, "log_term (L)")
    lt = l_t * t_t
    m = torch.ceil(lt * (3.0 + 2.0 * e_t) / (e_t * e_t))
    m = torch.clamp(m, min=1.0)
    active = lt > 0
    # exact-inverse correction: a couple of steps at most, float round-off only
    for _ in range(4):
        step_down = active & (m > 1) & (_eps_rand_t(m - 1, lt) <= e_t)
        m = torch.where(step_down, m - 1, m)
        step_up = active & (_eps_rand_t(m, lt) > e_t)
        m = torch.where(step_up, m + 1, m)
        if not bool((step_down | step_up).any()):
            break
    m = torch.where(active, m, torch.zeros_like(m))
    return _back(m, kind)


def _eps_rand_t(m: torch.Tensor, lt: torch.Tensor) -> torch.Tensor:
    """eps_rand with lt = L * T > 0 and m >= 1 (same arithmetic as :func:`eps_rand`)."""
    u = (2.0 * lt) / m
    return (u + torch.sqrt(u * u + 6.0 * u)) / 2.0


# ------------------------------------------------------------------ rows, eps_det


def _weight_and_sens(sens: torch.Tensor, weight: torch.Tensor):
    if not isinstance(sens, torch.Tensor) or not isinstance(weight, torch.Tensor):
        raise ValueError("sens and weight must be torch tensors")
    if tuple(sens.shape) != tuple(weight.shape) or weight.ndim < 1 or weight.numel() == 0:
        raise ValueError(
            f"sens must be shaped like the (non-empty) weight {tuple(weight.shape)}; got {tuple(sens.shape)}"
        )
    w = weight.detach().reshape(weight.shape[0], -1).to("cpu")
    s = sens.detach().reshape(sens.shape[0], -1).to("cpu", torch.float64)
    if bool(torch.isnan(s).any()) or bool((s < 0).any()) or bool(torch.isinf(s).any()):
        raise ValueError("sensitivities must be finite and >= 0")
    return w, s


def row_totals(sens: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: total sensitivity T (F, 2) float64 and nnz (F, 2) int64 = weights with s > 0.

    Row (f, 0) holds the unit's positive weights, (f, 1) its negative ones; a zero
    weight belongs to no row.
    """
    w, s = _weight_and_sens(sens, weight)
    pos, neg = w > 0, w < 0
    zero = torch.zeros((), dtype=torch.float64)
    total = torch.stack([torch.where(pos, s, zero).sum(1), torch.where(neg, s, zero).sum(1)], dim=1)
    nnz = torch.stack([(pos & (s > 0)).sum(1), (neg & (s > 0)).sum(1)], dim=1)
    return total, nnz


@dataclass(frozen=True, eq=False)
class SortedRows:
    """Every row of a layer sorted by sensitivity, descending (ties: lower column j first).

    Shapes: F units, 2 signs, n = the longest row. Positions past a row's length
    hold s = 0 and column -1.

    - ``s``: (F, 2, n) float64 sorted sensitivities of the row's weights;
    - ``col``: (F, 2, n) int64 their column j in the F x J view (-1 past the row);
    - ``tail``: (F, 2, n + 1) float64, ``tail[f, c, m]`` = eps_det(m) = the sum of s
      over the row's weights outside its top m (summed from the smallest up);
    - ``total`` (F, 2) = tail[..., 0]; ``nnz`` (F, 2) weights with s > 0;
      ``length`` (F, 2) weights of the row's sign (s = 0 included).
    """

    s: torch.Tensor
    col: torch.Tensor
    tail: torch.Tensor
    total: torch.Tensor
    nnz: torch.Tensor
    length: torch.Tensor
    fan_in: int

    def eps_det(self, m) -> torch.Tensor:
        """eps_det(m) per row for m (F, 2) (or broadcastable); m beyond the row gives 0."""
        m_t = torch.as_tensor(m)
        if m_t.is_floating_point():
            if bool((m_t != torch.floor(m_t)).any()):
                raise ValueError("m must hold whole numbers of kept weights")
        if bool((m_t < 0).any()):
            raise ValueError("m must be >= 0")
        n = self.tail.shape[-1] - 1
        idx = torch.clamp(m_t.to(torch.int64), max=n).expand(self.total.shape)
        return self.tail.gather(-1, idx.unsqueeze(-1)).squeeze(-1)

    def m_for_eps(self, epsilon) -> torch.Tensor:
        """Smallest m per row with eps_det(m) <= epsilon, (F, 2) int64 (0 when T <= epsilon)."""
        e = torch.as_tensor(epsilon, dtype=torch.float64)
        if bool((~torch.isfinite(e)).any()) or bool((e <= 0).any()):
            raise ValueError("epsilon must be finite and > 0")
        if e.ndim:
            e = e.unsqueeze(-1)
        return (self.tail > e).sum(-1)  # tail is non-increasing in m

    def keep_mask(self, m) -> torch.Tensor:
        """(F, J) bool mask of the top-m weights of every row (m (F, 2))."""
        m_t = torch.as_tensor(m).to(torch.int64).expand(self.total.shape)
        f_units, _, n = self.s.shape
        keep = (torch.arange(n)[None, None, :] < m_t[..., None]) & (self.col >= 0)
        out = torch.zeros(f_units, self.fan_in, dtype=torch.bool)
        rows = torch.arange(f_units)[:, None, None].expand_as(keep)
        out[rows[keep], self.col[keep]] = True
        return out


def sorted_rows(sens: torch.Tensor, weight: torch.Tensor) -> SortedRows:
    """Sort every row of a layer by sensitivity (descending, ties by lower column index).

    This one O(F J log J) step answers every deterministic question of a plan:
    the top-m of a row (a prefix), eps_det(m) (``tail``) and the smallest m with
    eps_det(m) <= eps (:meth:`SortedRows.m_for_eps`).
    """
    w, s = _weight_and_sens(sens, weight)
    f_units, j = w.shape
    sign_masks = torch.stack([w > 0, w < 0], dim=1)  # (F, 2, J)
    # non-members get key -1 so they sort after every member (s >= 0)
    key = torch.where(sign_masks, s[:, None, :].expand(-1, 2, -1), torch.full((), -1.0, dtype=torch.float64))
    vals, cols = torch.sort(key, dim=-1, descending=True, stable=True)
    length = sign_masks.sum(-1)
    n = max(1, int(length.max()))
    vals, cols = vals[..., :n], cols[..., :n]
    member = torch.arange(n)[None, None, :] < length[..., None]
    vals = torch.where(member, vals, torch.zeros((), dtype=torch.float64))
    cols = torch.where(member, cols, torch.full((), -1, dtype=torch.int64))
    tail = torch.flip(torch.cumsum(torch.flip(vals, [-1]), dim=-1), [-1])
    tail = torch.cat([tail, torch.zeros(f_units, 2, 1, dtype=torch.float64)], dim=-1)
    nnz = (vals > 0).sum(-1)
    return SortedRows(s=vals, col=cols, tail=tail, total=tail[..., 0].clone(), nnz=nnz, length=length, fan_in=j)


def eps_det(sens: torch.Tensor, weight: torch.Tensor, m) -> torch.Tensor:
    """Deterministic bound per row, (F, 2) float64: the sum of s over the weights the row
    prunes when it keeps its top m by s (ties broken by index); m is (F, 2) or a number.

    >>> w = torch.tensor([[1.0, -2.0, 3.0]]); s = torch.tensor([[0.5, 1.0, 0.25]])
    >>> eps_det(s, w, 1)  # row +: keeps 0.5, prunes 0.25; row -: keeps 1.0
    tensor([[0.2500, 0.0000]], dtype=torch.float64)
    """
    return sorted_rows(sens, weight).eps_det(m)


def det_m_for_eps(sens: torch.Tensor, weight: torch.Tensor, epsilon) -> torch.Tensor:
    """Smallest m per row with eps_det(m) <= epsilon, (F, 2) int64 (epsilon mode, deterministic)."""
    if not isinstance(epsilon, torch.Tensor):
        check_epsilon(epsilon)
    return sorted_rows(sens, weight).m_for_eps(epsilon)


# ------------------------------------------------------------------ |S|


def sample_size_terms(model: torch.nn.Module, input_shape) -> tuple[int, int]:
    """(eta, eta_max): total F * P over the prunable layers and the largest single F * P."""
    infos = layer_infos(model, tuple(int(d) for d in input_shape)) if prunable_layers(model) else {}
    if not infos:
        raise BadInput("the model has no prunable layer (nn.Linear or nn.Conv2d with groups=1)")
    sizes = [i.out_units * i.patches for i in infos.values()]
    return int(sum(sizes)), int(max(sizes))


def sample_size(model: torch.nn.Module, input_shape, delta: float = DEFAULT_DELTA, C: float = SAMPLE_C) -> int:
    """|S| = ceil(C ln(8 eta eta_max / delta)) (docs/sipp.md §2.5).

    eta = sum over prunable layers of F_l * P_l (output units times patches),
    eta_max = the largest F_l * P_l. 152 for LeNet-300-100 on 28x28 inputs and
    183 for the CIFAR ResNet20 on 3x32x32, both with delta = 1e-16 and C = 3.

    Raises:
        ValueError: bad delta or C, or a model without prunable layers.
    """
    d = check_delta(delta)
    if not _is_real(C) or not math.isfinite(float(C)) or float(C) <= 0:
        raise BadInput(f"C must be a finite number > 0; got {C!r}")
    eta, eta_max = sample_size_terms(model, input_shape)
    return _formula(eta, eta_max, d, float(C))


def sample_size_of(infos: dict[str, LayerInfo], delta: float = DEFAULT_DELTA) -> int:
    """sample_size() from layer_infos already at hand (no forward pass)."""
    sizes = [i.out_units * i.patches for i in infos.values()]
    return _formula(int(sum(sizes)), int(max(sizes)), check_delta(delta), SAMPLE_C)


def _formula(eta: int, eta_max: int, delta: float, C: float) -> int:
    return int(math.ceil(C * (math.log(8.0 * eta * eta_max) - math.log(delta))))


def draw_sample(n_pool: int, size: int, seed: int = 0) -> torch.Tensor:
    """Indices of S: ``size`` distinct indices into a pool of ``n_pool`` points (int64).

    Seeded and without replacement: the first ``size`` entries of a random
    permutation of range(n_pool) drawn with ``torch.Generator().manual_seed(seed)``,
    so the same seed gives the same S, and a larger size with the same seed extends
    a smaller one.

    Raises:
        ValueError: n_pool < 1; BadInput (a ValueError, with a fix): sample_size (``size``) outside 1..n_pool.
    """
    n = _check_count(n_pool, "n_pool", 1)
    if isinstance(size, (torch.Tensor, np.ndarray)) and getattr(size, "ndim", 1) == 0:
        size = size.item()
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or not 1 <= int(size) <= n:
        raise BadInput(f"sample_size must be an integer from 1 to {n} (the pool holds {n} points); got {size!r}",
                       f"choose |S| from 1 to {n}, or let the formula choose it ('|S| from the formula' in the app; "
                       f"it stops at the pool's {n})")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) < 2**63:
        raise BadInput(f"seed must be a non-negative integer below 2**63 (as everywhere else); got {seed!r}")
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randperm(n, generator=gen)[: int(size)]


# --------------------------------------------------------------- per-row forms


def eps_rand_rows(m, total, log_term) -> torch.Tensor:
    """eps_rand(m) per row, float64; inf for m = 0 with signal, 0 for rows without signal (T = 0)."""
    m = torch.as_tensor(m, dtype=torch.float64)
    t = torch.as_tensor(total, dtype=torch.float64)
    lt = torch.as_tensor(log_term, dtype=torch.float64)
    safe_m = torch.where(m > 0, m, torch.ones_like(m))
    e = torch.as_tensor(eps_rand(safe_m, t, lt), dtype=torch.float64)
    e = torch.where(m > 0, e, torch.full_like(e, math.inf))
    return torch.where(t > 0, e, torch.zeros_like(e))


def m_for_eps_rows(eps: float, total, log_term) -> torch.Tensor:
    """m(eps) = ceil(L T (3 + 2 eps) / eps^2) per row, int64 (0 for rows without signal)."""
    t = torch.as_tensor(total, dtype=torch.float64)
    lt = torch.as_tensor(log_term, dtype=torch.float64)
    m = torch.as_tensor(m_for_eps(eps, t, lt), dtype=torch.float64)
    m = torch.nan_to_num(m, nan=0.0, posinf=2.0**62).clamp(0.0, 2.0**62)  # tiny eps: no int64 overflow
    return torch.where(t > 0, m, torch.zeros_like(m)).to(torch.int64)
