"""Page 4, Guarantees: bound beside measured error per layer and per row, failure rate vs delta, eps sweep."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from sipp_core.errors import BadInput
from sipp_core.options import SIPP_METHODS
from ui import engine, show, tables
from ui import verdicts as vd
from ui.charts import guarantees as guarantee_charts
from ui.charts import layers as layer_charts
from ui.explain import explain_expander
from ui.guard import obtain, show_error
from ui.links import link_shown
from ui.results import verdict_box
from ui.settings import fmt_num
from ui.sidebar import page_link_problems

SWEEP_EPS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
MAX_SWEEP_EPS = 12  # each value is a full prune and measurement


def parse_eps_list(text: str) -> tuple[float, ...]:
    """The sweep's ε values typed as a comma list ("0.1, 0.5, 2"): distinct, ascending. BadInput names the value
    that is not a positive number, and the fix."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    fix = f"type positive numbers separated by commas, e.g. {', '.join(f'{e:g}' for e in SWEEP_EPS)}"
    if not parts:
        raise BadInput("no value of ε given", fix)
    values = []
    for p in parts:
        try:
            v = float(p)
        except ValueError:
            raise BadInput(f"{p!r} is not a number", fix) from None
        if not (v > 0) or v == float("inf"):
            raise BadInput(f"ε must be a positive number; got {p}", fix)
        values.append(v)
    out = tuple(sorted(set(values)))
    if len(out) > MAX_SWEEP_EPS:
        raise BadInput(f"the sweep takes at most {MAX_SWEEP_EPS} values of ε (each is a full prune); "
                       f"got {len(out)}", "give fewer values")
    return out


def all_rows(report, on: str = "heldout") -> pd.DataFrame:
    """Every row (unit and sign) of every layer with its bound and measured error: what the verdict counts."""
    return pd.concat([tables.row_scatter_frame(report, n, on).assign(layer=n) for n in tables.layer_names(report)],
                     ignore_index=True)


def promise_box(s, report) -> None:
    h = tables.headline(report)
    held = h["heldout_points"]
    if s.method not in SIPP_METHODS:
        st.info(f"**{s.method} gives no guarantee.** Only the measured error is shown: on the points of S and on "
                f"{held} held-out points. Pick a SiPP method to see bounds.", icon=":material/info:")
        return
    failed = failed_layers(report)
    loose = "" if not h["has_bound"] or h["bound_max"] < 1 or failed else (
        f" Here the largest bound is **{h['bound_max']:.3g}** while the largest measured error is "
        f"**{h['measured_max_heldout']:.3g}**: their ratio is about "
        f"{h['bound_max'] / max(h['measured_max_heldout'], 1e-12):.2g}, which is common at this budget.")
    st.info(
        "**What the guarantee promises.** For every unit and sign separately (a *row*), the pruned layer's "
        "pre-activation ẑ stays within ε·z^σ of the original z^σ, so |ẑ − z| ≤ ε·(z⁺ + z⁻) — relative to the "
        "row's signal, not to |z|. **For which points:** sampled rows, with probability ≥ 1 − δ "
        f"(δ = {fmt_num(s.delta)}) for a point drawn like S; deterministic rows, exactly on the {report.prepared.sample_size} "
        "points of S (on new points it is the empirical analogue). A deterministic bound ≥ 1 says nothing, "
        "since such a row's error is at most 1 anyway." + loose, icon=":material/verified:")
    if failed:
        st.warning("**Where the bound did not hold.** " + " ".join(
            f"{r['layer']}: {r['held_failures']:,} of {r['held_pairs']:,} held-out (row, point) pairs exceeded their "
            f"row's bound ({vd.rate_pct(r['held_failures'] / r['held_pairs'])}, against δ = {fmt_num(s.delta)}); on the "
            f"points of S, {r['s_failures']:,} of {r['s_pairs']:,}." for r in failed)
            + " The Verdict above says what kind of rows they are and why: a bound is built from what S shows, and a "
            "held-out point can reach inputs that no point of S did.", icon=":material/report:")


def failed_layers(report) -> list[dict]:
    """Layers where some held-out (row, point) pair exceeded its row's bound, with the counts on S beside."""
    df = tables.failure_frame(report)
    out = []
    for layer, g in df.groupby("layer", sort=False):
        held, on_s = g[g["points"] == "held-out"], g[g["points"] == "on S"]
        if len(held) and int(held["failures"].iloc[0]) > 0:
            out.append(dict(layer=layer, held_failures=int(held["failures"].iloc[0]),
                            held_pairs=int(held["pairs"].iloc[0]),
                            s_failures=int(on_s["failures"].iloc[0]) if len(on_s) else 0,
                            s_pairs=int(on_s["pairs"].iloc[0]) if len(on_s) else 0))
    return out


ON_POINTS = ["held-out points", "the points of S"]


@st.fragment
def _rows(s, report) -> None:
    names = tables.layer_names(report)
    page_link_problems("guarantees", {"guar_layer": link_shown(names, tables.layer_labels(report).get),
                                      "guar_on": link_shown(ON_POINTS)})
    c1, c2 = st.columns([2, 1])
    layer = c1.selectbox("Layer", names, index=first_layer_to_show(report, names), key="guar_layer",
                         format_func=tables.layer_labels(report).get, bind="query-params")
    on = c2.radio("Measured on", ON_POINTS, horizontal=True, key="guar_on",
                  bind="query-params")
    show.chart(guarantee_charts.row_figure(report, layer, "heldout" if on.startswith("held") else "s"))
    if s.method == "sipp-hybrid":
        st.caption("Hybrid decides per row: a unit may hold a deterministic (biased low) row and a sampled "
                   "(unbiased) row whose errors do not cancel (docs/sipp.md §8.3).")


def first_layer_to_show(report, names: list[str]) -> int:
    """The layer the per-row chart opens on: the first whose rows broke their bound on held-out points, else the
    first with a positive bound (LeNet-5's conv1 is kept whole: its chart would be empty), else the first."""
    for name in names:
        e = report.errors_heldout.get(name)
        if e is not None and tables.as_float(e.failure_rate) > 0:
            return names.index(name)
    for name in names:
        if tables.as_float(report.result.plans[name].bound_max) > 0:
            return names.index(name)
    return 0


def _sweep_reports(s, prepared, eps: tuple[float, ...]) -> dict:
    return {e: engine.get_report(s, prepared, epsilon=e) for e in eps}


def _eps_values() -> tuple[float, ...] | None:
    """The sweep's ε values from their box (None, with the problem and its fix shown, when they are not numbers)."""
    text = st.text_input("ε values of the sweep", value=", ".join(f"{e:g}" for e in SWEEP_EPS), key="sweep_eps",
                         help="The relative errors ε at which to prune, separated by commas (each is a full prune "
                              f"and measurement; at most {MAX_SWEEP_EPS}).")
    try:
        return parse_eps_list(text)
    except BadInput as exc:
        first = exc.problem[:1]
        first = first.upper() if first.isascii() else first  # "ε must be …", not "Ε must be …" (a capital epsilon)
        st.error(f"{first}{exc.problem[1:]}. Fix: {exc.fix}.", icon=":material/error:")
        return None


@st.fragment
def _sweep(s, prepared, report) -> None:
    st.subheader("As ε moves")
    method = s.method if s.method in SIPP_METHODS else "sipp-hybrid"
    ss = s if method == s.method else type(s)(**{**s.as_dict(), "method": method})
    eps = _eps_values()
    if eps is None:
        return
    per_run = sum(report.timings_s.get(k, 0.0) for k in ("prune", "evaluate"))
    cached = all(engine.is_report_cached(ss, epsilon=e) for e in eps)
    auto = cached or per_run * len(eps) < 8.0
    if not auto and not st.button(f"Run the ε sweep ({len(eps)} prunes, about {per_run * len(eps):.0f} s)",
                                  key="sweep_button"):
        st.caption("Each point of the sweep is a full prune and measurement in ε mode.")
        return
    try:
        with st.spinner("Pruning at each ε…"):
            reps = _sweep_reports(ss, prepared, eps)
    except Exception as exc:  # noqa: BLE001
        show_error(exc)
        return
    df = tables.sweep_frame(reps)
    cur = s.epsilon if s.mode != "keep ratio" else None
    # built once per sweep and sidebar ε: the keep-ratio slider does not change it
    key = (tuple(engine.report_key(ss, epsilon=e) for e in eps), cur, method)
    show.chart_row([engine.chart(("eps_keep", *key), lambda: guarantee_charts.eps_keep_chart(df, cur, method)),
                    engine.chart(("eps_error", *key), lambda: guarantee_charts.eps_error_chart(df, cur, method))])
    verdict_box(vd.eps_sweep_verdict(df))
    note = "" if method == s.method else f" ({s.method} has no ε mode, so the sweep uses {method})"
    st.caption("Smaller ε keeps more weights and tightens the bound; the Verdict above says whether every row "
               "stayed within it." + note)


def render() -> None:
    s, prepared, report = obtain("Guarantees")
    if s.method in SIPP_METHODS:
        verdict_box(vd.bound_rows_verdict(all_rows(report), f"{report.prepared.heldout_x.shape[0]:,} held-out points",
                                          s.delta))
    promise_box(s, report)
    if s.patch_reduction == "mean":
        st.warning("Patch reduction 'mean' (the authors' deterministic variant) carries no bound: the bounds "
                   "below are computed as usual but are not guaranteed for conv layers (docs/sipp.md §8.11).",
                   icon=":material/warning:")
    show.chart_row([layer_charts.bound_figure(report), guarantee_charts.failure_figure(report, s.delta)])
    st.subheader("Per row")
    _rows(s, report)
    _sweep(s, prepared, report)
    explain_expander(s, prepared, report)
