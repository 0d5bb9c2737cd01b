"""The "formulas with these numbers" expander and the plain-words notes shared by pages."""
from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from sipp_core.plan.sparsify import draws_for_distinct
from sipp_core.zoo.layers import prunable_layers
from ui import formulas as fx
from ui.settings import fmt_num
from ui.tables import ROW_METHOD_NAMES

PLAIN_WORDS = """
- **Per row.** A bound is about one *row*: the positive (or the negative) weights of one unit. It says the
  pruned row's pre-activation stays within ε of the original **relative to the row's own signal z^σ** (z⁺
  for the positive weights, z⁻ for the negative ones), so the unit's z = z⁺ − z⁻ stays within ε (z⁺ + z⁻),
  **not** within ε |z|: when z⁺ and z⁻ nearly cancel, the error relative to z can be far larger.
- **For which points.** Sampled rows: with probability at least 1 − δ for a point drawn like S (held-out
  points from the same distribution). Deterministic rows: exactly on the points of S; on unseen points it
  is the empirical analogue.
- **A deterministic bound ≥ 1 says nothing.** Without reweighting the pruned sum can only shrink, so its
  relative error is at most 1 anyway (docs/sipp.md §8.10).
- **Mean patch reduction has no bound** (docs/sipp.md §8.11): it is the authors' deterministic variant and does not
  bound the per-patch ratio.
- **Hybrid mixes rows.** One unit can hold a deterministic (biased low) row and a sampled (unbiased) row;
  their errors do not cancel (docs/sipp.md §8.3).
- **Loose is a finding, not a bug.** Bounds far above 1 are common at realistic budgets: the charts use log
  axes and say so.
"""


def worst_row(report) -> tuple[str, int, int] | None:
    """(layer, unit, sign column) of the row with the largest finite bound, or None."""
    best, where = -1.0, None
    for name, plan in report.result.plans.items():
        b = plan.row_bound.reshape(-1, 2).double()
        b = torch.where(torch.isfinite(b), b, torch.full_like(b, -1.0))  # nan (baselines) and inf never win
        v = float(b.max())
        if v > best:
            idx = int(b.argmax())
            best, where = v, (name, idx // 2, idx % 2)
    return where if best > 0 else None


def row_numbers(report, name: str, f: int, c: int) -> dict:
    """The numbers behind one row's bound: T, nnz, m, L_l, eps_rand(m), eps_det(m), the engine's bound."""
    prepared = report.prepared
    plan = report.result.plans[name]
    info = prepared.infos[name]
    w = prunable_layers(prepared.model)[name].weight.detach().reshape(info.out_units, -1)[f]
    s = prepared.sensitivities[name].reshape(info.out_units, -1)[f].double()
    sel = (w > 0) if c == 0 else (w < 0)
    row_s = (s[sel]).numpy()
    total = float(row_s.sum())
    delta = float(report.result.settings["delta"])
    L = fx.log_term_value(info.patches, info.kernel_size, delta)
    m = int(plan.row_budget.reshape(-1, 2)[f, c])
    kept = int(plan.row_kept.reshape(-1, 2)[f, c])
    return dict(layer=name, unit=f, sign="+" if c == 0 else "-", T=total, nnz=int((row_s > 0).sum()), m=m, kept=kept,
                L=L, P=info.patches, k=info.kernel_size, eps_rand=fx.eps_rand_value(m, total, L),
                eps_det=fx.eps_det_value(row_s, m), row_s=row_s, bound=float(plan.row_bound.reshape(-1, 2)[f, c]),
                method=int(plan.row_method.reshape(-1, 2)[f, c]))


def det_m_for_eps(row_s: np.ndarray, eps: float) -> int:
    """The smallest m whose top-m rule leaves eps_det(m) <= eps (mirrors sipp_core.plan.sparsify.det_m_for_eps)."""
    v = np.sort(np.asarray(row_s, dtype=np.float64)[np.asarray(row_s) > 0])[::-1]
    suffix = np.concatenate([np.cumsum(v[::-1])[::-1], [0.0]])  # suffix[m] = eps_det(m)
    return int((suffix[:-1] > eps).sum())


def draws_for(row_s: np.ndarray, m: int) -> int:
    """m': how many draws with replacement the sampler makes so that the expected distinct count is m."""
    v = np.asarray(row_s, dtype=np.float64)
    v = v[v > 0]
    if m < 1 or m >= len(v):
        return int(m)
    p = torch.as_tensor(v / v.sum())[None]
    return int(draws_for_distinct(p, torch.tensor([float(m)]))[0])


def why_this_m(r: dict, method: str, mode: str, epsilon: float, c_prime: float) -> list[str]:
    """Plain sentences: which bound the method used for this row, why its m is what it is, and why a sampled
    row's distinct count can differ from m (docs/sipp.md §4 and §5)."""
    out = []
    how = ROW_METHOD_NAMES.get(r["method"], "?")
    if method == "sipp-hybrid" and r["method"] in (0, 1):
        det = c_prime * r["eps_det"]
        if mode != "keep ratio":
            m_eps = fx.m_for_eps_value(epsilon, r["T"], r["L"])
            m_det = det_m_for_eps(r["row_s"], epsilon / c_prime)
            out.append(
                f"**Why m = {r['m']}:** in ε mode every row takes the smallest m that meets ε = {epsilon:g}. Sampling "
                f"would need m({epsilon:g}) = {m_eps} samples" + (
                    f", more than the row's {r['nnz']} weights, so it would keep all {r['nnz']}" if m_eps > r["nnz"] else "")
                + f"; keeping the top m deterministically reaches C′·ε_det(m) ≤ {epsilon:g} with m = {m_det}. The "
                f"hybrid method takes the smaller, so this row is **{how}** with m = {r['m']}"
                + (f"; m({epsilon:g}) above is the sampling alternative it did not use." if r["method"] == 0 else "."))
        else:
            out.append(
                f"**Why {how}:** the allocation gave this row m = {r['m']}. With that m, sampling would bound it by "
                f"ε_rand = {r['eps_rand']:.3g} and the deterministic top m by C′·ε_det = {det:.3g}; the hybrid method "
                f"uses the smaller bound, so this row is **{how}**.")
    elif r["method"] in (0, 1):
        out.append(f"{method} prunes every row the same way: this one is **{how}** with m = {r['m']}.")
    if r["method"] == 1:
        draws = draws_for(r["row_s"], r["m"])
        out.append(
            (f"**Why kept {r['kept']} distinct with m = {r['m']}:** " if r["kept"] != r["m"] else "**Sampling:** ")
            + f"a sampled row draws m′ = {draws} times with "
            f"replacement, the number whose *expected* count of distinct weights is m. The count actually drawn is "
            f"random around m, so it can land a little above or below it. The bound uses m, and since m ≤ m′ draws "
            f"were made, it stays valid (fewer samples only loosen the bound).")
    return out


def explain_expander(s, prepared, report, expanded: bool = False) -> None:
    # Its content (a dozen formulas) is made only while it is open: a slider move with it closed costs nothing
    box = st.expander("Formulas with these numbers, and how to read them", expanded=expanded,
                      icon=":material/function:", key="explain_open", on_change="rerun")
    if not box.open:
        return
    with box:
        st.markdown("**Sample size** (docs/sipp.md §2.5): η = output units F·P summed over prunable layers, "
                    "η_max = the largest layer's F·P.")
        eta, eta_max = fx.eta_counts(prepared.infos)
        st.latex(fx.TEX_SAMPLE_SIZE)
        st.latex(fx.tex_sample_size_live(eta, eta_max, 1e-16))
        used = prepared.sample_size
        st.caption(f"|S| used: {used}" + (" (manual)" if not s.auto_sample else
                                          (" (the whole S-pool: the formula asks for more)" if used < prepared.sample_size_formula else "")))
        st.markdown("**Log term per layer** (docs/sipp.md §3), with δ = " + fmt_num(s.delta) + ":")
        st.latex(fx.TEX_LOG_TERM)
        for name, info in prepared.infos.items():
            st.latex(rf"\text{{{name}}}:\ " + fx.tex_log_term_live(info.patches, info.kernel_size, s.delta))
        st.markdown("**Row bounds** (docs/sipp.md §3): sampling and deterministic.")
        st.latex(fx.TEX_EPS_RAND)
        st.latex(fx.TEX_M_FOR_EPS)
        st.latex(fx.TEX_EPS_DET)
        w = worst_row(report)
        if w is not None:
            r = row_numbers(report, *w)
            how = ROW_METHOD_NAMES.get(r["method"], "?")
            st.markdown(f"**The loosest row:** layer `{prepared.infos[r['layer']].label}`, unit {r['unit']}, "
                        f"sign {r['sign']}: "
                        f"T = {r['T']:.4g} over {r['nnz']} weights with s > 0, planned m = {r['m']} "
                        f"(kept {r['kept']} distinct), pruned as **{how}**.")
            st.latex(fx.tex_eps_rand_live(r["m"], r["T"], r["L"]))
            cp = float(s.c_prime) if s.method == "sipp-hybrid" else 1.0
            st.latex(fx.tex_eps_det_live(r["row_s"], r["m"], cp))
            if s.mode != "keep ratio":
                st.latex(fx.tex_m_for_eps_live(s.epsilon, r["T"], r["L"]))
            for line in why_this_m(r, s.method, s.mode, float(s.epsilon), cp):
                st.markdown(line)
            st.caption(f"The engine's bound for this row: {r['bound']:.4g}.")
        else:
            st.caption("No row carries a positive bound here (baseline method, or every row kept whole).")
        st.markdown("**What it promises** (docs/sipp.md §3):")
        st.latex(fx.TEX_GUARANTEE)
        st.latex(fx.TEX_COMBINED)
        st.markdown(PLAIN_WORDS)
        if s.patch_reduction == "mean":
            st.warning("Patch reduction is 'mean': the authors' deterministic variant. It carries no bound (docs/sipp.md §8.11).")
