"""The "formulas with these numbers" expander and the plain-words notes shared by pages."""
from __future__ import annotations

import streamlit as st
import torch

from sipp_core.zoo.layers import prunable_layers
from ui import formulas as fx
from ui.settings import fmt_num
from ui.tables import ROW_METHOD_NAMES

PLAIN_WORDS = """
- **Per row.** A bound is about one *row*: the positive (or the negative) weights of one unit. It says the
  pruned row's pre-activation stays within ε of the original **relative to z⁺ + z⁻** (the row's positive
  plus negative signal), **not** relative to |z|: when z⁺ and z⁻ nearly cancel, the error relative to z can
  be far larger.
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


def explain_expander(s, prepared, report, expanded: bool = False) -> None:
    with st.expander("Formulas with these numbers, and how to read them", expanded=expanded,
                     icon=":material/function:"):
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
            st.markdown(f"**The loosest row:** layer `{r['layer']}`, unit {r['unit']}, sign {r['sign']}: "
                        f"T = {r['T']:.4g} over {r['nnz']} weights with s > 0, planned m = {r['m']} "
                        f"(kept {r['kept']} distinct), pruned as **{how}**.")
            st.latex(fx.tex_eps_rand_live(r["m"], r["T"], r["L"]))
            cp = float(s.c_prime) if s.method == "sipp-hybrid" else 1.0
            st.latex(fx.tex_eps_det_live(r["row_s"], r["m"], cp))
            if s.mode != "keep ratio":
                st.latex(fx.tex_m_for_eps_live(s.epsilon, r["T"], r["L"]))
            st.caption(f"The engine's bound for this row: {r['bound']:.4g}.")
        else:
            st.caption("No row carries a positive bound here (baseline method, or every row kept whole).")
        st.markdown("**What it promises** (docs/sipp.md §3):")
        st.latex(fx.TEX_GUARANTEE)
        st.latex(fx.TEX_COMBINED)
        st.markdown(PLAIN_WORDS)
        if s.patch_reduction == "mean":
            st.warning("Patch reduction is 'mean': the authors' deterministic variant. It carries no bound (docs/sipp.md §8.11).")
