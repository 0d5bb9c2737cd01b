"""Nonsmoothness page: tables, live formula numbers and Altair charts over sipp_core.smoothness.core records.

No streamlit here, so everything works in Jupyter too:

    >>> from sipp_core.smoothness.core import compare, make_paths      # doctest: +SKIP
    >>> comp = compare(model, pruned, make_paths(x_test, y_test, count=16))
    >>> from ui.charts import smoothness as cs
    >>> cs.summary_frame(comp); cs.propagation_chart(comp)

Every chart is titled, its axes labelled with units, coloured with the Okabe-Ito
palette (original network blue, pruned network vermillion, everywhere on the
page) and sized for ``ui.show.chart``. Log axes cannot show 0: exact zeros are
drawn on a floor line (or, for the dense |second difference| plot, left out and
counted), said so in the subtitle; tooltips keep the true values.
Frames stay under Altair's 5,000-row default, so the charts also render in a notebook.
"""
from __future__ import annotations

import math

import altair as alt
import numpy as np
import pandas as pd
import torch
from PIL import Image

from sipp_core.smoothness.peaks import FLOOR_EPS, MAD_SCALE, THRESHOLD_SIGMAS, signal_peaks
from ui.charts.core import OKABE, TEXT_PX, WIDTH, _floor, _title, empty, sized, spans_decades, tight_log
from ui.formulas import tex_num

MODELS = ["original", "pruned"]
MODEL_COLORS = alt.Scale(domain=MODELS, range=[OKABE["blue"], OKABE["vermillion"]])
MODEL_SHAPES = alt.Scale(domain=MODELS, range=["circle", "square"])
SERIES = ["measured", "predicted by the rule"]
SMP_UNIT = "per unit of input distance"
MAX_ROWS = 4500  # stay below Altair's default max_rows (5,000) so the charts also work in Jupyter

TEX_DEFINITION = (
    r"d_i = \bigl|\,y_{i+1} - 2\,y_i + y_{i-1}\bigr|,\quad "
    r"\theta = \max\!\Bigl(\operatorname{median}(d) + 10 \cdot 1.4826 \cdot \operatorname{MAD}(d),\ "
    r"8\,\epsilon_{\mathrm{float}} \max_i |y_i|\Bigr)")
TEX_SMP = (r"\mathrm{SMP}(y) = \frac{\sum_{k\,:\,d_{i_k} > \theta} \bigl(d_{i_k-1} + d_{i_k} + d_{i_k+1}\bigr)}"
           r"{h\,\lVert x_b - x_a \rVert},\qquad h = \frac{1}{N-1},\qquad "
           r"\mathrm{SMP}_{\mathrm{output}} = \sum_{c} \mathrm{SMP}(y_c)")
KIND_NAMES = {"linear": "Linear", "conv2d": "Conv2d", "relu": "ReLU", "maxpool2d": "MaxPool2d"}


def _records(comp):
    return (("original", comp.original), ("pruned", comp.pruned))


def stage_label(row: dict) -> str:
    """'fc1 · Linear, 300 units' or 'relu1 · ReLU': the module name, its type and, for a layer, its output units."""
    kind = KIND_NAMES.get(row["kind"], row["kind"])
    units = f", {int(row['units'])} units" if row["kind"] in ("linear", "conv2d") and row.get("units") else ""
    return f"{row['layer'] or '(whole model)'} · {kind}{units}"


def _stage_axis(order: list[str]) -> alt.Axis:
    """Every stage labelled (never thinned out): module name over type, slanted when there are many."""
    if len(order) <= 6:
        return alt.Axis(labelAngle=0, labelExpr="split(datum.label, ' · ')", labelLimit=160, labelOverlap=False)
    return alt.Axis(labelAngle=-40, labelLimit=200, labelOverlap=False)


def _stage_lines(order: list[str]) -> int:
    """Height of the stage axis's labels, in text lines (for sized)."""
    return 2 if len(order) <= 6 else 8


def _log_or_linear(values) -> alt.Scale:
    """Log scale where positive values span more than 1.5 decades, else linear from 0."""
    finite = [float(x) for x in values if x is not None and np.isfinite(x)]
    v = np.asarray([x for x in finite if x > 0], dtype=float)
    if spans_decades(v):
        # ends on the 1-2-5 steps around the data (Vega's own rounding goes to whole decades: points up to 12 drew
        # an axis to 100, an empty decade), or at the floor that _with_floor draws exact zeros on
        low = _floor(finite) if any(x <= 0 for x in finite) else _step_125(v.min(), down=True)
        return alt.Scale(type="log", domain=[low, _step_125(v.max(), down=False)], nice=False)
    return alt.Scale(zero=True)


def _step_125(x: float, down: bool) -> float:
    """The nearest of 1, 2, 5 × 10^k at or below x (down) or at or above it."""
    k = math.floor(math.log10(x))
    steps = [m * 10.0**e for e in (k - 1, k, k + 1) for m in (1, 2, 5)]
    return max(s for s in steps if s <= x * (1 + 1e-9)) if down else min(s for s in steps if s >= x * (1 - 1e-9))


def _with_floor(df: pd.DataFrame, col: str, log: bool) -> tuple[pd.DataFrame, float | None]:
    """Add 'shown' (zeros lifted to a floor on log axes) and 'note'; returns the floor used (None if none)."""
    df = df.copy()
    if not log:
        df["shown"] = df[col]
        df["note"] = ""
        return df, None
    floor = _floor(df[col].tolist())
    df["shown"] = df[col].where(df[col] > 0, floor)
    df["note"] = np.where(df[col] > 0, "", "exactly 0 (drawn on the floor)")
    return df, (floor if bool((df[col] <= 0).any()) else None)


def _fmt(v: float) -> str:
    if v is None or not math.isfinite(v):
        return "n/a"
    return f"{v:.3g}"


# ---- tables ----------------------------------------------------------------------------------

def path_label(paths, i: int, class_names=None) -> str:
    """'path 3 · different-class 7 → 9' (local: 'local around a 4')."""
    name = (lambda k: str(class_names[k]) if class_names is not None and 0 <= k < len(class_names) else str(k))
    a, b, kind = int(paths.labels_a[i]), int(paths.labels_b[i]), paths.kinds[i]
    if kind == "local":
        return f"path {i} · local around a {name(a)}" if a >= 0 else f"path {i} · local"
    if a < 0:
        return f"path {i} · {kind}"
    return f"path {i} · {kind} {name(a)} → {name(b)}"


def summary_frame(comp) -> pd.DataFrame:
    """One row per measure: mean over paths for both models, the median where it helps, and pruned / original."""
    o, p = comp.original, comp.pruned
    has_pool = any(l.kind == "maxpool2d" for l in o.layers)  # noqa: E741
    jac_n = int(torch.isfinite(o.jacobian_norm).sum())
    peaks = lambda rec: torch.tensor([float(len(x)) for x in rec.output_peaks], dtype=torch.float64)  # noqa: E731
    rows = [
        ("SMP of the output (sum over logits), mean", SMP_UNIT, o.smp, p.smp, "mean"),
        ("SMP of the output, median over paths", SMP_UNIT, o.smp, p.smp, "median"),
        ("peaks found in the logits", "points per path", peaks(o), peaks(p), "mean"),
        ("linear-region transitions", "steps per path", o.region_transitions, p.region_transitions, "mean"),
        ("ReLU sign flips", "unit flips per path", o.flipped_units, p.flipped_units, "mean"),
    ]
    if has_pool:
        rows.append(("max-pool argmax switches", "per path", o.argmax_switches, p.argmax_switches, "mean"))
    rows += [
        ("trajectory length of the logits", SMP_UNIT, o.output_trajectory, p.output_trajectory, "mean"),
        ("input-output Jacobian, Frobenius norm", f"at {jac_n} path anchors", o.jacobian_norm, p.jacobian_norm, "mean"),
    ]
    out = []
    for name, unit, a, b, how in rows:
        f = (lambda t: float(t.double().nanmedian())) if how == "median" else (lambda t: float(t.double().nanmean()))
        va, vb = f(a), f(b)
        out.append({"measure": name, "unit": unit, "original": va, "pruned": vb,
                    "pruned / original": vb / va if va else float("nan")})
    return pd.DataFrame(out)


def layer_frame(comp) -> pd.DataFrame:
    """Per measured stage and model (means over paths): comp.layer_rows() with readable column order."""
    df = pd.DataFrame(comp.layer_rows())
    if not df.empty:  # the stage's label (module name, type, units) in front; its bare module name beside it
        df["module"] = df["layer"]
        df["layer"] = [stage_label(r) for r in df.to_dict("records")]
    cols = ["model", "layer", "module", "kind", "block", "units", "sampled_units", "live_units", "input_from", "smp_in", "smp",
            "smp_predicted", "flips", "flips_per_live_unit", "flip_steps", "trajectory", "rule"]
    return df[[c for c in cols if c in df.columns]]


# ---- distributions over paths ---------------------------------------------------------------

PATH_METRICS = {
    "smp": ("SMP of the output", f"SMP of the output ({SMP_UNIT})"),
    "region_transitions": ("linear-region transitions", "linear-region transitions (steps per path)"),
    "flipped_units": ("ReLU sign flips", "ReLU units flipped along the path (count)"),
    "output_trajectory": ("trajectory length of the logits", f"trajectory length of the logits ({SMP_UNIT})"),
}


def path_frame(comp, metric: str = "smp", class_names=None) -> pd.DataFrame:
    """Long format: one row per (path, model) with the metric's value."""
    if metric not in PATH_METRICS:
        raise ValueError(f"metric must be one of {', '.join(PATH_METRICS)}; got {metric!r}")
    paths = comp.original.paths
    rows = []
    for tag, rec in _records(comp):
        vals = getattr(rec, metric).double()
        for i in range(paths.count):
            rows.append({"path": i, "label": path_label(paths, i, class_names), "kind": paths.kinds[i],
                         "model": tag, "value": float(vals[i]), "peaks": len(rec.output_peaks[i])})
    return pd.DataFrame(rows)


def path_distribution(comp, metric: str = "smp", class_names=None, width: int = WIDTH) -> alt.Chart:
    """Each path one row, original and pruned values joined by a grey bar (log axis where values span decades)."""
    df = path_frame(comp, metric, class_names)
    name, axis_title = PATH_METRICS[metric]
    scale = _log_or_linear(df["value"])
    log = scale.to_dict().get("type") == "log"
    df, floor = _with_floor(df, "value", log)
    wide = df.pivot(index="label", columns="model", values="shown").reset_index()
    first = df[df["model"] == "original"].sort_values(["kind", "value"], ascending=[True, False])
    order = first["label"].tolist()
    row, font = (22, TEXT_PX) if comp.original.paths.count <= 32 else (17, TEXT_PX)
    y = alt.Y("label:N", sort=order, title="path (kind, classes of its endpoints)", axis=alt.Axis(labelLimit=260, labelFontSize=font, labelOverlap=False))
    bars = alt.Chart(wide).mark_rule(color="#BBBBBB", strokeWidth=3).encode(
        y=y, x=alt.X("original:Q", scale=scale, title=axis_title + (" · log scale" if log else "")), x2="pruned:Q")
    pts = alt.Chart(df).mark_point(filled=True, size=80, opacity=0.95).encode(
        y=y, x=alt.X("shown:Q", scale=scale),
        color=alt.Color("model:N", scale=MODEL_COLORS, sort=MODELS, title="network", legend=alt.Legend(orient="bottom")),
        shape=alt.Shape("model:N", scale=MODEL_SHAPES, sort=MODELS, title="network"),
        tooltip=["label:N", "model:N", alt.Tooltip("value:Q", format=".4g", title=name),
                 alt.Tooltip("peaks:Q", title="peaks in the logits"), alt.Tooltip("note:N", title="")],
    )
    means = df.groupby("model")["value"].mean()
    sub = [f"mean over {comp.original.paths.count} paths: original {_fmt(means.get('original'))}, "
           f"pruned {_fmt(means.get('pruned'))}; sorted by path kind, then by the original's value"]
    if floor is not None:
        sub.append(f"values of exactly 0 (no kink on the path) are drawn at {floor:g}")
    h = max(140, row * comp.original.paths.count)
    chart = alt.layer(bars, pts).properties(title=_title(f"{name[0].upper() + name[1:]} per path, before and after pruning",
                                                          sub), width=width, height=h)
    chart = sized(chart, h, len(sub), 1)
    # one row per path: presenting, the rows keep their height (squeezed into 380 px, 16 labels overlapped)
    return chart.properties(usermeta={**chart.usermeta, "sipp_rows": comp.original.paths.count})


# ---- per stage --------------------------------------------------------------------------------

def propagation_frame(comp) -> pd.DataFrame:
    rows = []
    for r in comp.propagation_rows():
        base = {"model": r["model"], "stage": stage_label(r), "layer": r["layer"], "kind": r["kind"],
                "block": r["block"], "rule": r["rule"], "smp_in": r["smp_in"]}
        rows.append({**base, "series": SERIES[0], "value": r["smp"]})
        rows.append({**base, "series": SERIES[1], "value": r["smp_predicted"]})
    return pd.DataFrame(rows)


def propagation_chart(comp, width: int = WIDTH, height: int = 300) -> alt.Chart:
    """Per stage: measured mean SMP of the output units beside the rule's prediction from the measured input."""
    df = propagation_frame(comp)
    order = [stage_label(r) for r in comp.original.layer_rows()]
    df, floor = _with_floor(df, "value", True)
    x = alt.X("stage:N", sort=order, title="stage (module name and kind), input → output",
              axis=_stage_axis(order))
    y = alt.Y("shown:Q", scale=tight_log(), title=["mean SMP over the stage's units", "(log scale)"])
    color = alt.Color("model:N", scale=MODEL_COLORS, sort=MODELS, title="network", legend=alt.Legend(orient="bottom"))
    tip = ["model:N", "stage:N", "block:N", "series:N", alt.Tooltip("value:Q", format=".4g", title="SMP"),
           alt.Tooltip("smp_in:Q", format=".4g", title="measured SMP at the input"), alt.Tooltip("rule:N"),
           alt.Tooltip("note:N", title="")]
    base = alt.Chart(df).encode(x=x, y=y, color=color, tooltip=tip)
    measured = base.transform_filter(alt.datum.series == SERIES[0])
    line = measured.mark_line(strokeWidth=2)
    dots = measured.mark_point(filled=True, size=70, opacity=1)
    pred = base.transform_filter(alt.datum.series == SERIES[1]).mark_point(
        shape="diamond", filled=False, size=220, strokeWidth=2)
    sub = [f"SMP {SMP_UNIT}; line and dots: measured; hollow diamonds: predicted, the stage's rule applied to its measured input",
           "the linear/conv rule is an upper bound (kinks of different inputs may cancel); ReLU and max-pool rules are estimates"]
    if floor is not None:
        sub.append(f"exact zeros at {floor:g}: a layer fed by the input is affine along a straight path")
    return sized(alt.layer(line, dots, pred).properties(
        title=_title("SMP through the network: measured vs predicted, before and after", sub), width=width,
        height=height), height, len(sub), 1, x_label_lines=_stage_lines(order))


def transitions_frame(comp) -> pd.DataFrame:
    rows = []
    for tag, rec in _records(comp):
        for r in rec.layer_rows():
            if r["kind"] in ("relu", "maxpool2d"):
                rows.append({"model": tag, "stage": stage_label(r), "kind": r["kind"], "flips": r["flips"],
                             "per_live": r["flips_per_live_unit"], "flip_steps": r["flip_steps"],
                             "live_units": r["live_units"], "units": r["units"]})
    return pd.DataFrame(rows)


def transitions_chart(comp, width: int = WIDTH, height: int = 260) -> alt.Chart:
    """Per ReLU / max-pool stage: sign flips (argmax switches) per live unit along a path, mean over paths."""
    df = transitions_frame(comp)
    if df.empty:
        return empty("Region transitions per layer", "This network has no ReLU or max-pool stage to measure, so no "
                     "unit can switch regions along a path.", width)
    order = [stage_label(r) for r in comp.original.layer_rows() if r["kind"] in ("relu", "maxpool2d")]
    base = alt.Chart(df).encode(
        x=alt.X("stage:N", sort=order, title="stage (module name and kind)", axis=_stage_axis(order)),
        xOffset=alt.XOffset("model:N", sort=MODELS),
        y=alt.Y("per_live:Q", title="flips per live unit, per path (count)"),
        color=alt.Color("model:N", scale=MODEL_COLORS, sort=MODELS, title="network", legend=alt.Legend(orient="bottom")),
        tooltip=["model:N", "stage:N", alt.Tooltip("flips:Q", format=".1f", title="flips per path (all units)"),
                 alt.Tooltip("per_live:Q", format=".3f", title="per live unit"),
                 alt.Tooltip("flip_steps:Q", format=".1f", title="steps with a flip in this layer"),
                 alt.Tooltip("live_units:Q", title="live units"), alt.Tooltip("units:Q", title="units")],
    )
    bars = base.mark_bar()
    text = base.mark_text(dy=-6, fontSize=TEXT_PX).encode(text=alt.Text("flips:Q", format=".0f"))
    o, p = comp.original.region_transitions.double().mean(), comp.pruned.region_transitions.double().mean()
    sub = ["flip: a ReLU unit changes sign between neighbouring points (max pool: its argmax switches); live "
           "units only; labels: flips per path.",
           f"Linear-region transitions of the whole network per path: {float(o):.1f} original, {float(p):.1f} pruned"]
    return sized((bars + text).properties(title=_title("Region transitions per layer", sub), width=width,
                                          height=height), height, len(sub), 1, x_label_lines=_stage_lines(order))


def trajectory_frame(comp) -> pd.DataFrame:
    rows = []
    for tag, rec in _records(comp):
        for r in rec.layer_rows():
            rows.append({"model": tag, "stage": stage_label(r), "value": r["trajectory"]})
        out = float(rec.output_trajectory.double().mean())
        last = rec.layer_rows()[-1]["trajectory"] if rec.layers else math.nan
        if not math.isclose(out, last, rel_tol=1e-9, abs_tol=1e-12):  # the last stage is not the logits themselves
            rows.append({"model": tag, "stage": "logits", "value": out})
    return pd.DataFrame(rows)


def trajectory_chart(comp, width: int = WIDTH, height: int = 260) -> alt.Chart:
    """Trajectory length of each layer's output along the path, per unit of input distance (Raghu et al. 2017)."""
    df = trajectory_frame(comp)
    rows = comp.original.layer_rows()
    order = [stage_label(r) for r in rows]
    order = order + ["logits"] if "logits" not in order else order
    scale = _log_or_linear(df["value"])
    log = scale.to_dict().get("type") == "log"
    df, floor = _with_floor(df, "value", log)
    base = alt.Chart(df).encode(
        x=alt.X("stage:N", sort=order, title="stage (module name and kind)",
                axis=_stage_axis(order)),
        y=alt.Y("shown:Q", scale=scale, title=["Σ‖h(xᵢ₊₁) − h(xᵢ)‖ / ‖x_b − x_a‖"] + (["(log scale)"] if log else [])),
        color=alt.Color("model:N", scale=MODEL_COLORS, sort=MODELS, title="network", legend=alt.Legend(orient="bottom")),
        tooltip=["model:N", "stage:N", alt.Tooltip("value:Q", format=".4g", title="trajectory length"),
                 alt.Tooltip("note:N", title="")],
    )
    sub = ["length of the path's image after each stage, divided by the input path's length (mean over paths); "
           "below 1: the stage shortens the path"]
    if floor is not None:
        sub.append(f"exact zeros drawn at {floor:g}")
    return sized((base.mark_line(strokeWidth=2) + base.mark_point(filled=True, size=60, opacity=1)).properties(
        title=_title("Trajectory length per layer", sub), width=width, height=height), height, len(sub), 1,
        x_label_lines=_stage_lines(order))


# ---- one path ----------------------------------------------------------------------------------

def logit_peak_numbers(rec, path: int, logit: int) -> dict:
    """Every number of the SMP formula for one logit of one path, recomputed from the stored signal.

    Uses the engine's own peak finder on the record's logits (stored in the dtype they were computed in
    for N <= 4096), so 'smp' agrees with rec.logit_smp[path, logit]; median and MAD are recomputed the
    same way (exactly constant windows left out) to show where the threshold comes from.
    """
    paths = rec.paths
    y = rec.logits[path, :, logit].to(getattr(torch, rec.dtype))  # (N,)
    pk = signal_peaks(y.unsqueeze(0))
    dy = y[1:] - y[:-1]
    d = (dy[1:] - dy[:-1]).abs()
    moving = dy != 0
    dn = d.masked_fill(~(moving[1:] | moving[:-1]), math.nan)
    med = float(dn.nanmedian()) if bool((~dn.isnan()).any()) else math.nan
    mad = float((dn - med).abs().nanmedian()) if math.isfinite(med) else math.nan
    floor = FLOOR_EPS * torch.finfo(y.dtype).eps * float(y.abs().max())
    h, length = paths.step, float(paths.lengths[path])
    total = float(pk.magnitude.double().sum())
    value = total / (h * length)
    return {
        "path": path, "logit": logit, "N": paths.points, "h": h, "length": length, "median": med, "mad": mad,
        "noise_threshold": med + THRESHOLD_SIGMAS * MAD_SCALE * mad if math.isfinite(med) else math.inf,
        "floor": floor, "threshold": float(pk.threshold.reshape(-1)[0]), "peaks": int(pk.index.numel()),
        "indices": (pk.index + 1).tolist(), "sum": total, "smp": value,
        "engine_smp": float(rec.logit_smp[path, logit]), "output_smp": float(rec.smp[path]),
        "output_peaks": len(rec.output_peaks[path]),
        "d": d.double().numpy(), "magnitudes": pk.magnitude.double().tolist(),
    }


def tex_live(n: dict, tag: str) -> str:
    """The SMP formula for one logit with its live numbers."""
    return (rf"\text{{{tag}: }}\ \mathrm{{SMP}}(y_{{{n['logit']}}}) = \frac{{{tex_num(n['sum'], 4)}}}"
            rf"{{\tfrac{{1}}{{{n['N'] - 1}}} \times {tex_num(n['length'], 4)}}} = {tex_num(n['smp'], 4)}")


def _peak_rows(rec, path: int, logits: list[int]) -> dict[int, list[int]]:
    y = rec.logits[path].to(getattr(torch, rec.dtype)).T[logits]  # (L, N)
    pk = signal_peaks(y)
    out = {c: [] for c in logits}
    for r, i in zip(pk.row.tolist(), pk.index.tolist()):
        out[logits[r]].append(i + 1)
    return out


def logit_frame(comp, path: int, logit: int, what: str = "value") -> pd.DataFrame:
    """Both models' logit `logit` along path `path` (what="value"), or its slope per unit of input distance
    (what="slope": (y_{i+1} − y_i) / (h‖x_b − x_a‖), drawn as steps), thinned to <= MAX_ROWS rows (peaks kept)."""
    if what not in ("value", "slope"):
        raise ValueError(f"what must be 'value' or 'slope'; got {what!r}")
    paths = comp.original.paths
    t = paths.t().numpy()
    scale = paths.step * float(paths.lengths[path])
    rows = []
    for tag, rec in _records(comp):
        peaks = set(_peak_rows(rec, path, [logit])[logit])
        y = rec.logits[path, :, logit].double().numpy()
        if what == "slope":
            y = np.diff(y) / scale  # (N-1,) slope on [t_i, t_i+1]
        m = len(y)
        stride = max(1, math.ceil(2 * m / (MAX_ROWS - 2 * len(peaks) - 10)))
        keep = sorted(set(range(0, m, stride)) | {m - 1} | {i for i in peaks if i < m})
        rows += [{"model": tag, "i": i, "t": float(t[i]), "y": float(y[i]), "peak": i in peaks} for i in keep]
    return pd.DataFrame(rows)


def logit_chart(comp, path: int, logit: int, class_names=None, what: str = "value", width: int = WIDTH,
                height: int = 200) -> alt.Chart:
    """One logit along one path for both networks, with the detected peaks (kinks) marked.

    what="slope" draws its slope per unit of input distance instead: piecewise constant for a ReLU net,
    each kink a jump, and SMP = the sum of the jump sizes (as the sampling gets fine).
    """
    df = logit_frame(comp, path, logit, what)
    name = str(class_names[logit]) if class_names is not None and logit < len(class_names) else str(logit)
    x = alt.X("t:Q", title="position on the path t (x = x_a + t·(x_b − x_a), unitless)", scale=alt.Scale(domain=[0, 1]))
    if what == "slope":
        y = alt.Y("y:Q", title=["slope of the logit", "(per unit input distance)"], scale=alt.Scale(zero=False))
        line = alt.Chart(df).mark_line(strokeWidth=1.6, interpolate="step-after")
        head = f"Slope of logit {logit} (class {name})"
    else:
        y = alt.Y("y:Q", title="logit value", scale=alt.Scale(zero=False))
        line = alt.Chart(df).mark_line(strokeWidth=1.8)
        head = f"Logit {logit} (class {name})"
    color = alt.Color("model:N", scale=MODEL_COLORS, sort=MODELS, title="network", legend=alt.Legend(orient="bottom"))
    line = line.encode(x=x, y=y, color=color, detail="model:N")
    pk = alt.Chart(df).transform_filter(alt.datum.peak).mark_point(shape="triangle-down", filled=True, size=45,
                                                                   opacity=0.9).encode(
        x=x, y=y, color=color,
        tooltip=["model:N", alt.Tooltip("i:Q", title="point i"), alt.Tooltip("t:Q", format=".4f"),
                 alt.Tooltip("y:Q", format=".4g", title="slope" if what == "slope" else "logit")])
    counts = df[df["peak"]].groupby("model").size()
    smp_o, smp_p = float(comp.original.logit_smp[path, logit]), float(comp.pruned.logit_smp[path, logit])
    sub = [f"triangles: detected peaks (kinks): {int(counts.get('original', 0))} original, "
           f"{int(counts.get('pruned', 0))} pruned; SMP {smp_o:.3g} → {smp_p:.3g} ({SMP_UNIT})"]
    if what == "slope":
        sub.append("each kink is a jump of the slope; SMP adds up the sizes of the jumps")
    return sized((line + pk).properties(title=_title(f"{head} along {path_label(comp.original.paths, path, class_names)}",
                                                     sub), width=width, height=height), height, len(sub), 1)


def second_difference_frame(comp, path: int, logit: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """|second difference| of one logit for both models (max-preserving thinning) and their thresholds."""
    rows, thr = [], []
    for tag, rec in _records(comp):
        n = logit_peak_numbers(rec, path, logit)
        d = n["d"]
        peaks = set(i - 1 for i in n["indices"])  # d index
        bins = max(1, math.ceil(2 * len(d) / (MAX_ROWS - 20)))
        idx = set(peaks)
        for s in range(0, len(d), bins):
            idx.add(s + int(np.argmax(d[s : s + bins])))
        t = comp.original.paths.t().numpy()
        rows += [{"model": tag, "i": i + 1, "t": float(t[i + 1]), "d": float(d[i]), "peak": i in peaks}
                 for i in sorted(idx)]
        thr.append({"model": tag, "threshold": n["threshold"], "peaks": n["peaks"], "zeros": int((d <= 0).sum())})
    return pd.DataFrame(rows), pd.DataFrame(thr)


def second_difference_chart(comp, path: int, logit: int, width: int = WIDTH, height: int = 220) -> alt.Chart:
    """d_i = |y_{i+1} − 2y_i + y_{i−1}| of one logit on a log axis, each network's threshold dashed, peaks marked."""
    df, thr = second_difference_frame(comp, path, logit)
    zeros = dict(zip(thr["model"], thr["zeros"]))
    df = df[df["d"] > 0]
    x = alt.X("t:Q", title="position on the path t (unitless)", scale=alt.Scale(domain=[0, 1]))
    y = alt.Y("d:Q", scale=alt.Scale(type="log"), title=["|second difference| dᵢ", "(logit units, log scale)"])
    color = alt.Color("model:N", scale=MODEL_COLORS, sort=MODELS, title="network",
                      legend=alt.Legend(orient="bottom", symbolOpacity=1, symbolSize=60))
    dots = alt.Chart(df).transform_filter(~alt.datum.peak).mark_circle(size=9, opacity=0.45).encode(
        x=x, y=y, color=color)
    pts = alt.Chart(df).transform_filter(alt.datum.peak).mark_point(shape="triangle-down", filled=True, size=50,
                                                                    opacity=1).encode(
        x=x, y=y, color=color, tooltip=["model:N", alt.Tooltip("i:Q", title="point i"),
                                        alt.Tooltip("d:Q", format=".3e", title="d_i")])
    rule = alt.Chart(thr).mark_rule(strokeDash=[6, 3], strokeWidth=2).encode(
        y="threshold:Q", color=color, tooltip=["model:N", alt.Tooltip("threshold:Q", format=".3e", title="θ")])
    sub = ["dots: dᵢ at every point; dashed: each network's threshold θ; triangles: the peaks (local maxima above θ, "
           "≥ 3 points apart)",
           f"points with dᵢ = 0 exactly (no rounding on a straight piece) are not drawn: {int(zeros.get('original', 0))} "
           f"original, {int(zeros.get('pruned', 0))} pruned"]
    return sized((dots + rule + pts).properties(
        title=_title(f"Where the peaks come from: |second difference| of logit {logit}", sub),
        width=width, height=height), height, 2, 1)


def path_images(paths, i: int, mean=None, std=None, size: int = 112):
    """[(caption, PIL image)] for x_a, the midpoint and x_b of an image path (None for non-image inputs)."""
    shape = paths.input_shape
    if len(shape) != 3 or shape[0] not in (1, 3):
        return None
    xa, xb = paths.x_a[i].double(), paths.x_b[i].double()
    pics = [xa, 0.5 * (xa + xb), xb]
    if mean is not None and std is not None and len(mean) == shape[0]:
        m = torch.tensor(mean, dtype=torch.float64).reshape(-1, 1, 1)
        s = torch.tensor(std, dtype=torch.float64).reshape(-1, 1, 1)
        pics = [p * s + m for p in pics]
    lo = min(float(p.min()) for p in pics)
    hi = max(float(p.max()) for p in pics)
    out = []
    local = paths.kinds[i] == "local"
    caps = ["x − r·u (t = 0)", "x (t = 0.5)", "x + r·u (t = 1)"] if local else ["x_a (t = 0)", "midpoint (t = 0.5)", "x_b (t = 1)"]
    for cap, p in zip(caps, pics):
        a = ((p - lo) / max(hi - lo, 1e-12) * 255).clamp(0, 255).round().byte().numpy()
        img = Image.fromarray(a[0], "L") if shape[0] == 1 else Image.fromarray(np.transpose(a, (1, 2, 0)), "RGB")
        scale = max(1, size // max(img.width, 1))
        out.append((cap, img.resize((img.width * scale, img.height * scale), Image.NEAREST)))
    return out
