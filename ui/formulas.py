"""The docs/sipp.md formulas as LaTeX, filled with live numbers (no streamlit).

Symbols follow docs/sipp.md exactly (sections 2 and 3). The numeric helpers
here mirror sipp_core.plan.bounds so a formula can be shown beside the value the
engine used; tests/ui/test_charts.py checks that they agree.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as Fn
from torch import nn

C_SAMPLE = 3  # the C of the |S| formula (docs/sipp.md §2.5)

# ---- the formulas exactly as docs/sipp.md writes them ---------------------------------------

TEX_SAMPLE_SIZE = r"|S| = \left\lceil C \,\ln\!\left(\frac{8\,\eta\,\eta_{\max}}{\delta_S}\right)\right\rceil,\qquad C = 3"
TEX_LOG_TERM = r"L_l = \ln\!\left(\frac{8\,(P_l + 1)\,k_l}{\delta}\right)"
TEX_EPS_RAND = (r"u = \frac{2\,L_l\,T}{m},\qquad "
                r"\varepsilon_{\mathrm{rand}}(m) = \frac{u + \sqrt{u^2 + 6u}}{2}")
TEX_M_FOR_EPS = r"m(\varepsilon) = \left\lceil \frac{L_l\,T\,(3 + 2\varepsilon)}{\varepsilon^2} \right\rceil"
TEX_EPS_DET = r"\varepsilon_{\mathrm{det}}(m) = \sum_{j\ \mathrm{pruned}} s_j \qquad(\times\,C' \text{ in hybrid})"
TEX_Z = (r"z^{+}_{f,p}(x) = \sum_{j:\,W_{fj} > 0} |W_{fj}|\, a_{j,p}(x),\qquad "
         r"z^{-}_{f,p}(x) = \sum_{j:\,W_{fj} < 0} |W_{fj}|\, a_{j,p}(x)")
TEX_G = r"g_{fj,p}(x) = \frac{|W_{fj}|\, a_{j,p}(x)}{z^{\sigma}_{f,p}(x)},\qquad \sigma = \operatorname{sign}(W_{fj})"
TEX_S = {
    "max": r"s_{fj} = \max_{x \in S}\ \max_{p}\ g_{fj,p}(x)",
    "mean": r"s_{fj} = \max_{x \in S}\ \operatorname{mean}_{p}\ g_{fj,p}(x)\quad(\text{no bound})",
}
TEX_GUARANTEE = (r"\Pr\!\left[\,|\hat z^{\sigma}_{f,p}(x) - z^{\sigma}_{f,p}(x)| \le \varepsilon\, z^{\sigma}_{f,p}(x)\,\right]"
                 r" \ge 1 - \delta")
TEX_COMBINED = r"|\hat z - z| \le \varepsilon\,(z^{+} + z^{-}) \quad(\text{not } \varepsilon\,|z|)"


def tex_num(v: float, digits: int = 3) -> str:
    """A number for LaTeX: 1e-16 -> 10^{-16}, 123456 -> 1.23 \\times 10^{5}, 0.25 -> 0.25."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return r"\text{n/a}"
    if isinstance(v, float) and math.isinf(v):
        return r"\infty"
    if v == 0:
        return "0"
    a = abs(v)
    if 1e-3 <= a < 1e5:
        if float(v).is_integer():
            return f"{int(v)}"
        return f"{v:.{digits}g}"
    exp = int(math.floor(math.log10(a)))
    mant = v / 10**exp
    if abs(round(mant, digits - 1) - 1.0) < 1e-12:
        return f"10^{{{exp}}}"
    if abs(round(mant, digits - 1) + 1.0) < 1e-12:
        return f"-10^{{{exp}}}"
    return f"{mant:.{digits - 1}f} \\times 10^{{{exp}}}"


# ---- numbers (mirrors of sipp_core.plan.bounds) --------------------------------------------------

def sample_size_value(eta: int, eta_max: int, delta_s: float) -> int:
    return int(math.ceil(C_SAMPLE * math.log(8 * eta * eta_max / delta_s)))


def log_term_value(patches: int, kernel: int, delta: float) -> float:
    return math.log(8 * (patches + 1) * kernel / delta)


def eps_rand_value(m: float, total: float, log_term: float) -> float:
    if m <= 0:
        return math.inf
    u = 2 * log_term * total / m
    return (u + math.sqrt(u * u + 6 * u)) / 2


def m_for_eps_value(eps: float, total: float, log_term: float) -> int:
    return int(math.ceil(log_term * total * (3 + 2 * eps) / eps**2))


def eps_det_value(row_s: np.ndarray, m: int) -> float:
    """Sum of the s of the weights a top-m rule prunes (row_s: the row's sensitivities)."""
    s = np.sort(np.asarray(row_s, dtype=np.float64))[::-1]
    return float(s[int(m):].sum())


def eta_counts(infos: dict) -> tuple[int, int]:
    """(eta, eta_max) of docs/sipp.md §2.5: output units F * P summed over prunable layers, and the largest."""
    sizes = [i.out_units * i.patches for i in infos.values()]
    return int(sum(sizes)), int(max(sizes))


# ---- filled-in formulas ---------------------------------------------------------------------

def tex_sample_size_live(eta: int, eta_max: int, delta_s: float) -> str:
    val = sample_size_value(eta, eta_max, delta_s)
    return (rf"|S| = \left\lceil 3 \ln\!\left(\frac{{8 \cdot {eta} \cdot {eta_max}}}{{{tex_num(delta_s)}}}\right)\right\rceil"
            rf" = \lceil {3 * math.log(8 * eta * eta_max / delta_s):.2f} \rceil = {val}")


def tex_log_term_live(patches: int, kernel: int, delta: float) -> str:
    val = log_term_value(patches, kernel, delta)
    return (rf"L_l = \ln\!\left(\frac{{8 \cdot ({patches} + 1) \cdot {kernel}}}{{{tex_num(delta)}}}\right)"
            rf" = {val:.2f}")


def tex_eps_rand_live(m: int, total: float, log_term: float) -> str:
    if m <= 0:
        return r"m = 0:\ \varepsilon_{\mathrm{rand}} = \infty\ (\text{the row is pruned entirely})"
    u = 2 * log_term * total / m
    e = eps_rand_value(m, total, log_term)
    return (rf"u = \frac{{2 \cdot {log_term:.2f} \cdot {total:.3g}}}{{{m}}} = {u:.3g},\qquad "
            rf"\varepsilon_{{\mathrm{{rand}}}}({m}) = \frac{{{u:.3g} + \sqrt{{{u:.3g}^2 + 6 \cdot {u:.3g}}}}}{{2}} = {tex_num(e)}")


def tex_m_for_eps_live(eps: float, total: float, log_term: float) -> str:
    m = m_for_eps_value(eps, total, log_term)
    return (rf"m({tex_num(eps)}) = \left\lceil \frac{{{log_term:.2f} \cdot {total:.3g} \cdot (3 + 2 \cdot {tex_num(eps)})}}"
            rf"{{{tex_num(eps)}^2}} \right\rceil = {m}")


def tex_eps_det_live(row_s: np.ndarray, m: int, c_prime: float = 1.0) -> str:
    e = eps_det_value(row_s, m)
    n_pruned = max(int(np.count_nonzero(np.asarray(row_s) > 0)) - int(m), 0)
    core = rf"\varepsilon_{{\mathrm{{det}}}}({m}) = \sum_{{{n_pruned}\ \mathrm{{pruned}}}} s_j = {tex_num(e)}"
    if c_prime != 1.0:
        core += rf",\qquad C' \varepsilon_{{\mathrm{{det}}}} = {tex_num(c_prime)} \cdot {tex_num(e)} = {tex_num(c_prime * e)}"
    return core


# ---- one edge's sensitivity, step by step ---------------------------------------------------

def _layer_map(module, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The layer's linear map with weight w and no bias, as (N, F, P) (Linear: P = 1)."""
    if isinstance(module, nn.Linear):
        return Fn.linear(a.reshape(a.shape[0], -1), w).unsqueeze(-1)
    return Fn.conv2d(a, w, None, module.stride, module.padding, module.dilation).flatten(2)


@torch.no_grad()
def edge_sensitivity_trace(module, a_raw: torch.Tensor, f: int, j: int, reduction: str = "max") -> dict:
    """Recompute s_fj by the definition (docs/sipp.md §2) for one edge and say which point of S gives it.

    Args:
        module: the layer (nn.Linear or nn.Conv2d); its weight is read, never changed.
        a_raw: the layer's input on S as the network feeds it, (N, *in_shape). Signed inputs are
            split into the pseudo-points a+ and a- (docs/sipp.md §2.1), so g has 2N entries then.
        f, j: the edge, j in the F x J view (C_in * kh * kw order for conv).
    Returns: dict with g per (pseudo-)point reduced over patches, the argmax point and patch, and
        the numbers of the formula there (w, a_j, z^sigma, s).
    """
    weight = module.weight.detach().double()
    a = a_raw.detach().double()
    signed = bool((a < 0).any())
    if signed:
        a = torch.cat([a.clamp(min=0), (-a).clamp(min=0)])
    wm = weight.reshape(weight.shape[0], -1)
    row = wm[f]
    wfj = float(row[j])
    n_img = a_raw.shape[0]
    if wfj == 0:
        return dict(sign=0, w=0.0, s=0.0, g=np.zeros(a.shape[0]), point=0, patch=0, a_j=0.0, z=0.0, signed=signed,
                    n_images=n_img)
    sel = (row > 0) if wfj > 0 else (row < 0)
    w_sigma = (row.abs() * sel).reshape(1, *weight.shape[1:])  # (1, ...) the row's sigma-part as |W|
    onehot = torch.zeros_like(row)
    onehot[j] = 1.0
    z = _layer_map(module, a, w_sigma)[:, 0, :]  # (N', P)
    aj = _layer_map(module, a, onehot.reshape(1, *weight.shape[1:]))[:, 0, :]  # (N', P): a_{j,p}(x)
    eps32 = 1.1920929e-07
    g = torch.where(z > eps32, abs(wfj) * aj / z.clamp(min=eps32), torch.zeros_like(z))  # (N', P)
    red = g.amax(dim=1) if reduction == "max" else g.mean(dim=1)
    n = int(torch.argmax(red))
    p = int(torch.argmax(g[n]))
    return dict(sign=1 if wfj > 0 else -1, w=wfj, s=float(red[n]), g=red.numpy(), point=n, patch=p,
                a_j=float(aj[n, p]), z=float(z[n, p]), g_at=float(g[n, p]), signed=signed, n_images=n_img)


def point_label(trace: dict) -> str:
    """'point 12' or 'point 12 (a-)' for a pseudo-point index of the trace."""
    n, k = trace["point"], trace.get("n_images", 0)
    if trace.get("signed") and k and n >= k:
        return f"point {n - k} (its a⁻ part)"
    return f"point {n}" + (" (its a⁺ part)" if trace.get("signed") else "")


def tex_edge_live(trace: dict, f: int, j: int, reduction: str = "max") -> str:
    if trace["sign"] == 0:
        return rf"W_{{{f},{j}}} = 0:\ \text{{no edge, }} s_{{{f},{j}}} = 0"
    sig = "+" if trace["sign"] > 0 else "-"
    where = point_label(trace).replace("⁻", "-").replace("⁺", "+")
    if reduction == "max":
        return (rf"s_{{{f},{j}}} = \max_{{x \in S}} \max_p \frac{{|W_{{{f},{j}}}|\, a_{{{j},p}}(x)}}{{z^{{{sig}}}_{{{f},p}}(x)}}"
                rf" = \frac{{{abs(trace['w']):.4g} \cdot {trace['a_j']:.4g}}}{{{trace['z']:.4g}}} = {trace['s']:.4g}"
                rf"\quad(x = \text{{{where}}},\ p = {trace['patch']})")
    return (rf"s_{{{f},{j}}} = \max_{{x \in S}} \operatorname{{mean}}_p\, g_{{{f}{j},p}}(x) = {trace['s']:.4g}"
            rf"\quad(x = \text{{{where}}})")
