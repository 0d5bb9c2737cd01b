"""Page 5, Nonsmoothness: SMP before vs after pruning, propagation per stage, one path's logits, transitions.

The sweep (sipp_core.smoothness.core) runs behind a form button and is cached per (model, data, sensitivity
settings, prune settings, path settings) in a process-wide store, so moving between pages does not
recompute; both networks are deep-copied under the model lock before the sweep, so shared objects
are never touched.
"""
from __future__ import annotations

import copy
import json
import traceback

import streamlit as st

from sipp_core.errors import BadInput, SippError
from sipp_core.smoothness import core as smoothness
from ui import engine, run_store, show
from ui import verdicts as vd
from ui.charts import smoothness as cs
from ui.guard import friendly, obtain
from ui.links import link_number, link_shown, link_slider
from ui.results import verdict_box
from ui.sidebar import BIND, page_link_problems

INTRO = ("How **kinked** is the network's input-output map, and does pruning change that? Along straight input "
         "paths a ReLU / max-pool network is piecewise linear: its slope jumps at every kink. **SMP** (\"sum of "
         "the magnitude of peaks\") adds those jumps up, per unit of input distance. The same paths go through "
         "the original and the pruned network.")
DEFINITION_NOTE = (
    "**SMP as computed here.** Take x(t) = x_a + t·(x_b − x_a) at N equally spaced t in [0, 1] (step h = 1/(N−1)); "
    "for each logit y take the absolute second difference d_i; keep its local maxima above a robust noise floor θ, "
    "at least 3 points apart; add each peak's ±1 window; divide by h·‖x_b − x_a‖. As N grows this tends to the "
    "total jump of the directional derivative along the path, and to 0 for a smooth network. The output's SMP is "
    "the sum over logits; a layer's is the mean over (at most *max units* sampled) units.\n\n"
    "The measure and its propagation through convolution, ReLU and max pooling come from Liu, Wong and Dai, "
    "*Modeling the Nonsmoothness of Modern Neural Networks* (arXiv 2103.14731, 2021). The peak threshold, the "
    "windows and the normalisation used here, the scale-free **relative SMP** (SMP ÷ the logits' variation along "
    "the path) and the per-stage rules are written out in docs/nonsmoothness.md, so every number on this page can "
    "be checked by hand; one path's computation is shown with its numbers at the bottom of the page.")

PATH_COUNTS = [4, 8, 16, 32, 64]
POINTS = [256, 512, 1024, 2048, 4096]
DEFAULT_PATHS, DEFAULT_POINTS = 16, 1024
KINDS = ("mixed", "same-class", "different-class", "local")
KIND_HELP = ("mixed: about a third each of same-class pairs, different-class pairs and short local segments "
             "x ± r·u around a held-out point (r = 5% of the typical distance between two points)")
UNITS = ["auto", 128, 256, 512, 1024, 2048, 4096]
CONV_UNITS, DENSE_UNITS = 512, 4096
BYTES = 512 * 2**20
PATH_FIX = "change the path kind or the number of paths above."


# The per-layer table's heads (ui.charts.smoothness.layer_frame keeps the library's names, as its CSV does)
LAYER_COLUMNS = {
    "kind": "layer kind", "units": "units", "sampled_units": "units sampled", "live_units": "live units",
    "input_from": "input from", "smp_in": "SMP of its input", "smp": "SMP",
    "smp_predicted": "SMP predicted (upper bound)",
    "flips": "ReLU sign flips", "flips_per_live_unit": "flips per live unit", "flip_steps": "steps with a flip",
    "trajectory": "trajectory length", "rule": "propagation rule",
}


@st.cache_resource(show_spinner=False)
def _results() -> engine.Store:
    """Finished comparisons, shared by all sessions (never mutated)."""
    return engine.Store(12, BYTES)


def _has_conv(s) -> bool:
    try:
        return any(l["kind"] == "conv2d" for l in engine.model_facts(s.model, s.dataset)["layers"])  # noqa: E741
    except Exception:  # noqa: BLE001 - the page header already reported it
        return False


def _units(choice, conv: bool) -> int:
    return (CONV_UNITS if conv else DENSE_UNITS) if choice == "auto" else int(choice)


def _form(s) -> tuple[dict, bool]:
    conv = _has_conv(s)
    page_link_problems("nonsmoothness", {
        "ns_paths": link_slider(link_shown(PATH_COUNTS, default=DEFAULT_PATHS)),
        "ns_points": link_slider(link_shown(POINTS, default=DEFAULT_POINTS)),
        "ns_kind": link_shown(KINDS, default=KINDS[0]),
        "ns_seed": link_number(0, 2**31 - 1, True), "ns_units": link_shown(UNITS, default=UNITS[0])})
    with st.form("ns_form", border=True):
        st.markdown("**Paths and sampling**")
        c1, c2, c3, c4, c5 = st.columns([1.2, 1.4, 1.2, 0.8, 1.2])
        count = c1.select_slider("Paths", PATH_COUNTS, value=DEFAULT_PATHS, key="ns_paths",
                                 help="P straight segments through held-out inputs; both networks see the same ones.", **BIND)
        points = c2.select_slider("Points per path N", POINTS, value=DEFAULT_POINTS, key="ns_points",
                                  help="More points resolve more kinks (SMP converges as N grows).", **BIND)
        kind = c3.selectbox("Path kind", KINDS, key="ns_kind", help=KIND_HELP, **BIND)
        seed = c4.number_input("Path seed", min_value=0, max_value=2**31 - 1, value=0, step=1, key="ns_seed", **BIND)
        # the options as a link writes them (?ns_units=1024): a bound selectbox reads the URL as its shown text
        units = c5.selectbox("Max units per layer", UNITS, key="ns_units",
                             help=f"Per-layer SMP is a mean over at most this many seeded units (auto: {CONV_UNITS} for "
                                  f"conv nets, {DENSE_UNITS} otherwise; this network: "
                                  f"{CONV_UNITS if conv else DENSE_UNITS}). Cost grows with it.", **BIND)
        submitted = st.form_submit_button("Measure nonsmoothness", type="primary", key="ns_run",
                                          icon=":material/show_chart:")
        st.caption("Cost ≈ paths × points × sampled units, for both networks. At 16 × 1024 on two busy CPU cores: "
                   "lenet300 about 4 s, lenet5 (max units 512) about 12 s; for bigger conv nets lower the points "
                   "or the max units first.")
    return dict(count=int(count), points=int(points), kind=str(kind), seed=int(seed), max_units=_units(units, conv)), submitted


def _key(s, opts: dict) -> tuple:
    return ("nonsmoothness", engine.report_key(s), tuple(sorted(opts.items())))


def _compute(prepared, report, opts: dict, progress):
    """compare() on private copies of both networks, with progress over the two sweeps.

    The engine is called through its module (``smoothness.nonsmoothness``), looked up at call time."""
    rec = prepared.record
    try:
        paths = smoothness.make_paths(rec.x_test, rec.y_test, count=opts["count"], points=opts["points"],
                                      kind=opts["kind"], seed=opts["seed"])
    except ValueError as exc:  # the paths come from the form's settings alone: their fix is there
        if isinstance(exc, SippError):
            raise
        raise BadInput(str(exc), PATH_FIX) from exc
    with engine.model_lock(prepared):  # the shared models may carry another session's hooks only under this lock
        original = copy.deepcopy(prepared.model)
        pruned = copy.deepcopy(report.result.model)
    kw = dict(max_units=opts["max_units"], threads=1)
    a = smoothness.nonsmoothness(original, paths, progress=lambda f, m: progress(0.5 * f, f"original network: {m}"), **kw)
    b = smoothness.nonsmoothness(pruned, paths, progress=lambda f, m: progress(0.5 + 0.5 * f, f"pruned network: {m}"), **kw)
    return smoothness.Comparison(a, b)


def _sweep_error(exc: BaseException) -> None:
    """The sweep's error with its fix: the engine's own (a SippError), else one for the kind of error."""
    msg = str(exc).strip() or type(exc).__name__
    if isinstance(exc, MemoryError):
        text = "Out of memory during the sweep. Fix: fewer paths or points per path, or a lower max units."
    elif isinstance(exc, SippError):
        text = friendly(exc)
    elif isinstance(exc, (ValueError, TypeError)):
        text = (f"{msg}. Fix: this network cannot be swept as is; try another model in the sidebar, "
                "or other path settings above.")
    else:
        text = friendly(exc)
    st.error(text, icon=":material/error:")
    with st.expander("Technical details"):
        st.code("".join(traceback.format_exception_only(type(exc), exc)).strip())


def _get(s, prepared, report, opts: dict, submitted: bool):
    """The cached comparison, computing it (with st.progress) when the form was submitted; None otherwise."""
    store = _results()
    key = _key(s, opts)
    hit = store.peek(key)
    if hit is not None:
        return hit
    if not submitted:
        st.info("Choose the paths and press **Measure nonsmoothness**. The result is kept, so coming back to this "
                "page (or changing only the path shown below) does not recompute it.", icon=":material/touch_app:")
        return None
    bar = st.progress(0.0, text="starting the sweep…")

    def progress(fraction: float, message: str) -> None:
        bar.progress(min(max(float(fraction), 0.0), 1.0), text=str(message)[:120])

    try:
        comp = store.get_or_build(key, lambda: _compute(prepared, report, opts, progress))
    except Exception as exc:  # noqa: BLE001 - every engine error is shown with its fix, never raised
        bar.empty()
        _sweep_error(exc)
        return None
    bar.empty()
    return comp


def _summary(s, comp, keep_ratio: float) -> None:
    o, p = comp.original.summary(), comp.pruned.summary()
    verdict_box(vd.smp_verdict(o, p, keep_ratio))
    m1, m2, m3, m4 = st.columns(4)
    ratio = p["smp"] / o["smp"] if o["smp"] else float("nan")
    m1.metric("SMP before (mean over paths)", f"{o['smp']:.3g}")
    m2.metric("SMP after pruning", f"{p['smp']:.3g}", f"{100 * (ratio - 1):+.0f}%", delta_color="off")
    # one decimal, as the verdict and the chart give them
    m3.metric("Region transitions before → after", f"{o['region_transitions']:.1f} → {p['region_transitions']:.1f}")
    m4.metric("Logit trajectory before → after", f"{o['output_trajectory']:.2f} → {p['output_trajectory']:.2f}")
    r1, r2, r3, _ = st.columns(4)
    rel = p["relative_smp"] / o["relative_smp"] if o["relative_smp"] else float("nan")
    r1.metric("Relative SMP before", f"{o['relative_smp']:.3g}",
              help="SMP ÷ the logits' variation along the path: the total slope jump relative to the mean absolute "
                   "slope. Scale-free: multiplying every logit by the same number leaves it unchanged.")
    r2.metric("Relative SMP after pruning", f"{p['relative_smp']:.3g}", f"{100 * (rel - 1):+.0f}%", delta_color="off")
    r3.metric("Logit variation before → after", f"{o['logit_variation']:.3g} → {p['logit_variation']:.3g}",
              help="Σ over logits of Σ_i |y_(i+1) − y_i| ÷ ‖x_b − x_a‖: the size of the signal SMP is measured on, "
                   "in SMP's units. On each path SMP = relative SMP × this; the figures here are means over paths.")
    # the numbers beside the measure's name, and the name's column only as wide as the longest name (300 px): at 150%
    # zoom with the sidebar open (616 px) the ratio stays in sight; only the unit may scroll out of it
    show.table(cs.summary_frame(comp), hide_index=True, width="stretch",
               column_order=("measure", "original", "pruned", "pruned / original", "unit"), column_config={
        "measure": st.column_config.TextColumn("measure", width=300),
        "unit": st.column_config.TextColumn("unit"),
        "original": st.column_config.NumberColumn("original", format="%.4g"),
        "pruned": st.column_config.NumberColumn("pruned", format="%.4g"),
        "pruned / original": st.column_config.NumberColumn("pruned / original", format="%.2f×")})
    st.caption(f"{comp.original.paths.count} paths × {comp.original.paths.points} points, {comp.original.dtype}; "
               f"sweep took {comp.original.timings_s.get('sweep', 0):.1f} s (original) and "
               f"{comp.pruned.timings_s.get('sweep', 0):.1f} s (pruned). SMP is in units of logit-slope jump per "
               "unit of input distance.")


@st.fragment
def _distribution(comp, class_names) -> None:
    metric = st.radio("Per path", list(cs.PATH_METRICS), horizontal=True, key="ns_metric",
                      format_func=lambda m: cs.PATH_METRICS[m][0])
    show.chart(cs.path_distribution(comp, metric, class_names))


def _default_logits(comp, i: int, classes: int) -> list[int]:
    paths = comp.original.paths
    out = []
    for c in (int(paths.labels_a[i]), int(paths.labels_b[i])):
        if 0 <= c < classes and c not in out:
            out.append(c)
    if len(out) < 2:
        order = comp.original.logit_smp[i].argsort(descending=True).tolist()
        out += [c for c in order if c not in out][: 2 - len(out)]
    return out


@st.fragment
def _one_path(comp, record) -> None:
    st.subheader("One path, both networks")
    paths = comp.original.paths
    names = record.class_names
    classes = int(comp.original.logits.shape[-1])
    default = next((i for i, k in enumerate(paths.kinds) if k == "different-class"), 0)
    c1, c2 = st.columns([1.3, 2])
    i = c1.selectbox("Path", list(range(paths.count)), index=default, key="ns_path",
                     format_func=lambda j: f"{cs.path_label(paths, j, names)} (SMP {float(comp.original.smp[j]):.3g} → "
                                           f"{float(comp.pruned.smp[j]):.3g})")
    logits = c2.multiselect("Logits to draw (at most 4)", list(range(classes)), default=_default_logits(comp, i, classes),
                            max_selections=4, key=f"ns_logits_{i}",
                            format_func=lambda c: f"{c} (class {names[c]})" if c < len(names) else str(c))
    pics = cs.path_images(paths, i, record.mean, record.std)
    if pics:
        cols = st.columns([1, 1, 1, 4])
        for col, (cap, img) in zip(cols, pics):
            col.image(img, caption=cap, width="content")
        cols[3].caption(f"‖x_b − x_a‖ = {float(paths.lengths[i]):.4g} (normalised input units). Every point on the "
                        "path is fed to both networks.")
    what = st.radio("Draw", ["value", "slope"], horizontal=True, key="ns_draw",
                    format_func=lambda w: "logit values" if w == "value" else "slopes (each kink is a jump)")
    for c in logits:
        show.chart(cs.logit_chart(comp, i, int(c), names, what))
    if not logits:
        st.caption("Pick a logit to draw.")
    _formula(comp, i, logits or [0], names)


def _formula(comp, i: int, logits: list[int], names) -> None:
    st.markdown("**The formula with this path's numbers**")
    st.latex(cs.TEX_DEFINITION)
    st.latex(cs.TEX_SMP)
    c = st.columns([1, 2])[0].selectbox("Logit for the formula", logits, key=f"ns_formula_logit_{i}",
                     format_func=lambda k: f"{k} (class {names[k]})" if k < len(names) else str(k))
    left, right = st.columns(2)
    for col, (tag, rec) in zip((left, right), (("original", comp.original), ("pruned", comp.pruned))):
        n = cs.logit_peak_numbers(rec, i, int(c))
        agree = abs(n["smp"] - n["engine_smp"]) <= 1e-6 * max(1.0, abs(n["engine_smp"]))
        col.latex(cs.tex_live(n, tag))
        floor_used = n["floor"] > n["noise_threshold"]
        col.markdown(
            f"h = 1/{n['N'] - 1} = {n['h']:.3g}; ‖x_b − x_a‖ = {n['length']:.4g}; median(d) = {n['median']:.3g}, "
            f"MAD(d) = {n['mad']:.3g} → θ = **{n['threshold']:.3g}**"
            + (" (the rounding floor 8·ε·max|y|)" if floor_used else "")
            + f"; **{n['peaks']}** peaks, windowed sum **{n['sum']:.4g}** → SMP = **{n['smp']:.4g}** "
            + ("(agrees with the sweep)" if agree else f":red[(the sweep has {n['engine_smp']:.4g}: please report this)]")
            + f". Output SMP of this path, summed over all {int(rec.logits.shape[-1])} logits: "
              f"**{n['output_smp']:.4g}**, with {n['output_peaks']} points where some logit peaks.")
    show.chart(cs.second_difference_chart(comp, i, int(c)))


def _upper_bound(comp, infos: dict) -> None:
    """Where the measurement falls below the linear rule, and why (docs/nonsmoothness.md §3)."""
    labels = {n: i.label for n, i in infos.items()}  # module name and shape, as every table names a layer
    verdict_box(vd.propagation_verdict([{**r, "layer": labels.get(r["layer"], r["layer"])}
                                        for r in comp.original.propagation_rows()]))
    rows = [dict(network=tag, stage=cs.stage_label(r), kind=r["kind"], measured=r["smp"], predicted=r["smp_predicted"],
                 ratio=r["smp"] / r["smp_predicted"] if r["smp_predicted"] else float("nan"))
            for tag, rec in (("original", comp.original), ("pruned", comp.pruned)) for r in rec.propagation_rows()]
    with st.expander("Measured ÷ predicted per stage"):
        num = st.column_config.NumberColumn
        show.table(rows, hide_index=True, width="stretch", column_config={
            "measured": num(format="%.4g"), "predicted": num(format="%.4g"),
            "ratio": num("measured ÷ predicted", format="%.2f")})
        st.caption("Linear and Conv stages: the prediction Σ_k |w_k|·S(x_k) is an upper bound, reached only when no "
                   "two inputs kink at the same point; ratios below 1 measure how much coinciding kinks cancel. ReLU "
                   "and max-pool stages: the prediction counts the new kinks at zero crossings and switches, an "
                   "estimate rather than a bound.")


def _unmeasured(comp) -> None:
    rows = dict(comp.original.unmeasured)
    rows.update(dict(comp.pruned.unmeasured))
    after_unmeasured = sorted({cs.stage_label(l.row()) for l in comp.original.layers  # noqa: E741
                               if l.input_from == "(unmeasured)"})
    affine = [cs.stage_label(l.row()) for l in comp.original.layers  # noqa: E741
              if l.input_from == "input" and l.kind in ("linear", "conv2d")]
    lines = []
    if rows:
        lines.append("**Not measured** (their kinks show only in later layers and in the logits): "
                     + "; ".join(f"`{n}`: {r}" for n, r in rows.items()))
    else:
        lines.append("**Every nonlinearity was measured**: all ReLUs and 2-D max pools are hooked; no other "
                     "nonlinear module was found.")
    if after_unmeasured:
        lines.append("Stages whose input passes through an unmeasured affine module first (BatchNorm, average "
                     "pooling, a residual add), so their input SMP is measured on their own input: "
                     + ", ".join(f"`{n}`" for n in after_unmeasured) + ".")
    if affine:
        lines.append("Fed directly by the input, hence affine along a straight path and reported as exactly 0 "
                     "(not measured): " + ", ".join(f"`{n}`" for n in affine) + ".")
    lines.append("Affine modules (BatchNorm in eval mode, average pooling, residual additions, Flatten) are not "
                 "stages of their own: they cannot add kinks.")
    st.markdown("\n\n".join(lines))


def _downloads(s, comp) -> None:
    stem = f"{s.model}-{s.dataset}-{s.method}-nonsmoothness"
    js = json.dumps({"original": comp.original.to_dict(), "pruned": comp.pruned.to_dict()}, indent=1, default=str)
    csv = cs.layer_frame(comp).to_csv(index=False)
    d1, d2 = st.columns(2)
    d1.download_button("Both records (JSON)", js, f"{stem}.json", "application/json", on_click="ignore",
                       icon=":material/download:")
    d2.download_button("Per-layer table (CSV)", csv, f"{stem}-layers.csv", "text/csv", on_click="ignore",
                       icon=":material/download:")


def render() -> None:
    s, prepared, report = obtain("Nonsmoothness", INTRO)
    st.info(DEFINITION_NOTE, icon=":material/function:")
    st.latex(cs.TEX_SMP)
    opts, submitted = _form(s)
    comp = _get(s, prepared, report, opts, submitted)
    if comp is None:
        st.stop()
    run_store.record_nonsmoothness(s, opts, comp, float(report.result.keep_ratio))  # once per setting
    st.subheader("SMP before vs after pruning")
    _summary(s, comp, float(report.result.keep_ratio))
    _distribution(comp, prepared.record.class_names)
    st.subheader("Through the network")
    show.chart(cs.propagation_chart(comp))
    _upper_bound(comp, prepared.infos)
    pair = [cs.transitions_chart(comp), cs.trajectory_chart(comp)]
    if len(comp.original.layers) <= 6:  # side by side only while every stage label fits
        show.chart_row(pair)
    else:
        for c in pair:
            show.chart(c)
    _unmeasured(comp)
    with st.expander("Per-layer table and downloads"):
        show.table(cs.layer_frame(comp).rename(columns=LAYER_COLUMNS), hide_index=True, width="stretch")
        st.caption("Means over the paths; SMP in units of the logits (the Glossary defines it). The CSV keeps the "
                   "library's column names.")
        _downloads(s, comp)
    _one_path(comp, prepared.record)
