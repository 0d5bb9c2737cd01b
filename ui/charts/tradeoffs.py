"""Trade-offs, retraining and speed: frames and Altair charts over the engine's records (no streamlit).

Everything here works in Jupyter too:

    >>> from sipp_core.jobs.sweeps import sweep, prune_potential                       # doctest: +SKIP
    >>> res = sweep("lenet300", "mnist5k", methods=["sipp-hybrid", "wt"], count=6)
    >>> from ui.charts import tradeoffs as ct
    >>> ct.accuracy_chart(res.to_frame()); ct.potential_chart(prune_potential(res.to_frame(), 0.01))

Conventions (shared with ui/charts/core.py): titled charts, axes labelled with units, the Okabe-Ito
colour-blind-safe palette with one fixed colour per method on every page (SiPP methods solid
lines, baselines dashed, so colour is never the only cue), log axes for keep ratios and errors.
Bands are the range (min to max) over seeds, drawn only when there is more than one seed.
"""
from __future__ import annotations

import math

import altair as alt
import numpy as np
import pandas as pd

from sipp_core.zoo.layers import layer_label
from ui.charts.core import LEGEND_PX, OKABE, TEXT_PX, _floor, _title, empty, sized, tight_log
from ui.tables import FILE_LABELS

METHOD_COLOR = {
    "sipp-hybrid": OKABE["blue"], "sipp-det": OKABE["sky"], "sipp-rand": OKABE["green"], "wt": OKABE["orange"],
    "layerwise": OKABE["vermillion"], "snip": OKABE["purple"], "uniform": OKABE["black"], "random": OKABE["grey"],
    # channel methods (a smaller network): darker tones of their own
    "pfp": "#6A3D9A", "pfp-rand": "#B15928", "filter-l1": "#8C6D00", "filter-random": "#555555",
}
# What the accuracy chart can put on its x-axis: (aggregate column, axis title, log scale)
X_AXES = {
    "keep": ("keep_pct", "weights kept (% of prunable weights; parameters for channel methods), log scale", True),
    "params": ("params_pct", "parameters kept (% of the dense network, nonzero), log scale", True),
    "flops": ("flops_pct", "FLOPs kept (% of the dense network's multiply-accumulates), log scale", True),
    "latency": ("latency_ms", "CPU latency at batch 64 (ms, measured)", False),
}
SIPP = ("sipp-hybrid", "sipp-det", "sipp-rand")
KEEP_AXIS = "weights kept (% of prunable weights, log scale)"
ACC_AXIS = "top-1 test accuracy (%)"
WIDTH, HEIGHT = 520, 300
LEGEND_COLUMNS = 4  # fits half of the main column at 1280 px wide


def _methods_in(frame: pd.DataFrame) -> list[str]:
    seen = list(dict.fromkeys(frame["method"].tolist()))
    return [m for m in METHOD_COLOR if m in seen] + [m for m in seen if m not in METHOD_COLOR]


def _method_scales(methods: list[str]):
    colors = [METHOD_COLOR.get(m, OKABE["black"]) for m in methods]
    color = alt.Scale(domain=methods, range=colors)
    dash = alt.Scale(domain=methods, range=[[1, 0] if m in SIPP else [6, 3] for m in methods])
    return color, dash


def _legend(n: int) -> alt.Legend:
    return alt.Legend(orient="bottom", columns=min(LEGEND_COLUMNS, max(1, n)), title=None, symbolType="stroke",
                      symbolStrokeWidth=3,
                      symbolOpacity=1, symbolSize=300, labelFontSize=LEGEND_PX)


# ---- sweeps --------------------------------------------------------------------------------------

def aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (method, requested keep ratio): means over seeds and the min..max range (the band).

    Columns: method, keep_ratio_requested, keep_pct (realised, mean), acc_pct / acc_lo / acc_hi,
    err / err_lo / err_hi (relative logits error), bound / bound_lo / bound_hi, agreement_pct,
    drop_pts (accuracy drop, percentage points), time_ms, seeds, failed.
    """
    cols = ["method", "keep_ratio_requested", "keep_pct", "acc_pct", "acc_lo", "acc_hi", "err", "err_lo", "err_hi",
            "bound", "bound_lo", "bound_hi", "agreement_pct", "drop_pts", "time_ms", "seeds", "failed",
            "params_pct", "flops_pct", "latency_ms"]
    if frame is None or frame.empty:
        return pd.DataFrame(columns=cols)
    df = frame.copy()
    for c in ("keep_ratio", "accuracy_after", "accuracy_drop", "agreement", "logits_rel_error", "bound_max", "time_s",
              "params_share", "flops_share", "latency_ms"):
        df[c] = pd.to_numeric(df[c], errors="coerce") if c in df else float("nan")  # older sweeps lack the costs
    g = df.groupby(["method", "keep_ratio_requested"], sort=False)
    out = pd.DataFrame({
        "keep_pct": 100 * g["keep_ratio"].mean(),
        "acc_pct": 100 * g["accuracy_after"].mean(), "acc_lo": 100 * g["accuracy_after"].min(),
        "acc_hi": 100 * g["accuracy_after"].max(),
        "err": g["logits_rel_error"].mean(), "err_lo": g["logits_rel_error"].min(), "err_hi": g["logits_rel_error"].max(),
        "bound": g["bound_max"].mean(), "bound_lo": g["bound_max"].min(), "bound_hi": g["bound_max"].max(),
        "agreement_pct": 100 * g["agreement"].mean(), "drop_pts": 100 * g["accuracy_drop"].mean(),
        "time_ms": 1e3 * g["time_s"].mean(), "seeds": g["seed"].nunique(),
        "failed": g["error"].apply(lambda s: int(s.notna().sum())),
        "params_pct": 100 * g["params_share"].mean(), "flops_pct": 100 * g["flops_share"].mean(),
        "latency_ms": g["latency_ms"].mean(),
    }).reset_index()
    return out[cols]


def dense_accuracy(frame: pd.DataFrame) -> float:
    v = pd.to_numeric(frame.get("accuracy_before", pd.Series(dtype=float)), errors="coerce").dropna()
    return float(v.mean()) if len(v) else float("nan")


def _cost_x(agg: pd.DataFrame, axis: str) -> alt.X:
    """The x axis of a cost other than the keep ratio: parameters or FLOPs (log, %) or latency (linear, ms)."""
    col, title, log = X_AXES[axis]
    v = agg[col].dropna()
    v = v[v > 0]
    if log and len(v):
        lo, hi = float(v.min()) / 1.25, min(100.0, float(v.max()) * 1.25)
        return alt.X(f"{col}:Q", title=title, scale=alt.Scale(type="log", domain=[lo, hi if hi > lo else lo * 2],
                                                                nice=False), axis=alt.Axis(format="~g", grid=True))
    return alt.X(f"{col}:Q", title=title, scale=alt.Scale(zero=False), axis=alt.Axis(grid=True))


def _keep_x(agg: pd.DataFrame) -> alt.X:
    """Log x axis of the realised keep ratio in %, fitted to the data with a little room either side."""
    v = agg["keep_pct"].dropna()
    v = v[v > 0]
    if len(v):
        lo, hi = float(v.min()) / 1.25, min(100.0, float(v.max()) * 1.25)
        scale = alt.Scale(type="log", domain=[lo, hi if hi > lo else lo * 2], nice=False)
    else:
        scale = alt.Scale(type="log")
    # ticks at the keep ratios that were run (a log axis alone labels only powers of ten)
    ticks = sorted({float(f"{100 * r:.4g}") for r in agg["keep_ratio_requested"].dropna()}) \
        if "keep_ratio_requested" in agg else []
    return alt.X("keep_pct:Q", scale=scale, title=KEEP_AXIS, axis=alt.Axis(
        format="~g", grid=True, values=ticks or alt.Undefined, labelOverlap="greedy"))


def _tips(extra: list) -> list:
    return [alt.Tooltip("method:N"), alt.Tooltip("keep_ratio_requested:Q", format="g", title="keep ratio asked"),
            alt.Tooltip("keep_pct:Q", format=".3g", title="kept % (realised)")] + extra + [
            alt.Tooltip("seeds:Q", title="seeds")]


def accuracy_chart(frame: pd.DataFrame, max_drop_pts: float | None = None, width: int = WIDTH,
                   height: int = HEIGHT, x_axis: str = "keep") -> alt.Chart:
    """Accuracy after pruning (no retraining) against the keep ratio (or, with x_axis "params", "flops" or
    "latency", against what the pruned network costs), per method, with seed bands."""
    col = X_AXES[x_axis][0]
    agg = aggregate(frame).dropna(subset=[col, "acc_pct"])
    name = {"keep": "keep ratio", "params": "parameters", "flops": "FLOPs", "latency": "latency"}[x_axis]
    if agg.empty:
        why = ("no point was timed: tick 'Time each network' and run the sweep again" if x_axis == "latency"
               else "every point failed or none has finished")
        return empty(f"Accuracy after pruning vs {name}", f"No point of this sweep has both its {name} and an "
                     f"accuracy yet: {why}.", width)
    methods = _methods_in(agg) if len(agg) else []
    color, dash = _method_scales(methods)
    x = _keep_x(agg) if x_axis == "keep" else _cost_x(agg, x_axis)
    seeds = int(agg["seeds"].max()) if len(agg) else 1
    base = alt.Chart(agg).encode(x=x, color=alt.Color("method:N", scale=color, sort=methods, legend=_legend(len(methods))))
    tips = _tips([alt.Tooltip("acc_pct:Q", format=".2f", title="accuracy % (mean)"),
                  alt.Tooltip("acc_lo:Q", format=".2f", title="lowest seed %"),
                  alt.Tooltip("acc_hi:Q", format=".2f", title="highest seed %"),
                  alt.Tooltip("drop_pts:Q", format=".2f", title="drop (points)")])
    layers = []
    if seeds > 1:
        layers.append(base.mark_area(opacity=0.16).encode(y="acc_lo:Q", y2="acc_hi:Q"))
    layers.append(base.mark_line(strokeWidth=2.2).encode(
        y=alt.Y("acc_pct:Q", title=ACC_AXIS), strokeDash=alt.StrokeDash("method:N", scale=dash, sort=methods, legend=None)))
    layers.append(base.mark_point(filled=True, size=45).encode(y="acc_pct:Q", tooltip=tips))
    dense = dense_accuracy(frame)
    sub = ["one prune per point, no retraining", "solid: SiPP, dashed: the other methods"]
    if x_axis == "latency":
        sub.append("weight pruning keeps dense kernels: its zeros still run")
    if seeds > 1:
        sub.append(f"bands: lowest to highest of {seeds} seeds")
    if not math.isnan(dense):
        r = alt.Chart(pd.DataFrame([dict(y=100 * dense, label=f"dense network {100 * dense:.1f}%")]))
        layers.append(r.mark_rule(color=OKABE["black"], strokeDash=[2, 3]).encode(y="y:Q"))
        layers.append(r.mark_text(align="left", baseline="bottom", dx=3, dy=-2, fontSize=TEXT_PX, color="#444444").encode(
            y="y:Q", x=alt.value(0), text="label:N"))
        if max_drop_pts is not None and max_drop_pts > 0:
            d = alt.Chart(pd.DataFrame([dict(y=100 * dense - max_drop_pts,
                                             label=f"allowed drop ({max_drop_pts:g} points)")]))
            layers.append(d.mark_rule(color=OKABE["vermillion"], strokeDash=[5, 3]).encode(y="y:Q"))
            layers.append(d.mark_text(align="left", baseline="top", dx=3, dy=3, fontSize=TEXT_PX, color=OKABE["vermillion"]).encode(
                y="y:Q", x=alt.value(0), text="label:N"))
    legend_rows = math.ceil(len(methods) / LEGEND_COLUMNS)
    return sized(alt.layer(*layers).properties(
        title=_title(f"Accuracy after pruning vs {name}", sub), width=width, height=height),
        height, len(sub), legend_rows)


def _log_series_chart(agg: pd.DataFrame, col: str, lo: str, hi: str, title: str, y_title: str | list[str], sub: list[str],
                      width: int, height: int) -> alt.Chart:
    d = agg.dropna(subset=["keep_pct", col]).copy()
    if d.empty:
        return empty(title, "No point of this sweep has a value to draw yet: every point failed or none has finished.",
                     width)
    methods = _methods_in(d) if len(d) else []
    color, dash = _method_scales(methods)
    floor = _floor(d[col].tolist() + d[lo].tolist())
    for c in (col, lo, hi):
        d[c + "_shown"] = d[c].where(d[c] > 0, floor)
    seeds = int(d["seeds"].max()) if len(d) else 1
    base = alt.Chart(d).encode(x=_keep_x(d), color=alt.Color("method:N", scale=color, sort=methods,
                                                             legend=_legend(len(methods))))
    y = alt.Y(f"{col}_shown:Q", scale=tight_log(), title=y_title)
    layers = []
    if seeds > 1:
        layers.append(base.mark_area(opacity=0.16).encode(y=alt.Y(f"{lo}_shown:Q", scale=tight_log()),
                                                          y2=f"{hi}_shown:Q"))
    layers.append(base.mark_line(strokeWidth=2.2).encode(
        y=y, strokeDash=alt.StrokeDash("method:N", scale=dash, sort=methods, legend=None)))
    layers.append(base.mark_point(filled=True, size=45).encode(
        y=f"{col}_shown:Q", tooltip=_tips([alt.Tooltip(f"{col}:Q", format=".4g", title="value (mean)"),
                                            alt.Tooltip(f"{lo}:Q", format=".4g", title="lowest seed"),
                                            alt.Tooltip(f"{hi}:Q", format=".4g", title="highest seed")])))
    if seeds > 1:
        sub = sub + [f"bands: lowest to highest of {seeds} seeds"]
    return sized(alt.layer(*layers).properties(title=_title(title, sub), width=width, height=height),
                 height, len(sub), math.ceil(max(len(methods), 1) / LEGEND_COLUMNS))


def error_chart(frame: pd.DataFrame, width: int = WIDTH, height: int = HEIGHT) -> alt.Chart:
    """Relative logits error ‖ŷ − y‖ / ‖y‖ on the test split against the keep ratio (log-log)."""
    return _log_series_chart(aggregate(frame), "err", "err_lo", "err_hi", "Output error vs keep ratio",
                             ["relative logits error ‖ŷ − y‖ / ‖y‖", "(log scale)"],
                             ["on the test split; lower is better", "solid: SiPP, dashed: baselines"], width, height)


def bound_chart(frame: pd.DataFrame, width: int = WIDTH, height: int = HEIGHT) -> alt.Chart | None:
    """Largest per-row error bound against the keep ratio (SiPP methods; None when no method has one)."""
    agg = aggregate(frame)
    agg = agg[agg["bound"].notna()]
    if agg.empty:
        return None
    return _log_series_chart(agg, "bound", "bound_lo", "bound_hi", "Largest guaranteed bound vs keep ratio",
                             ["largest row bound, relative", "(log scale)"],
                             ["SiPP's guarantee: sampled rows w.p. ≥ 1 − δ, deterministic rows on S",
                              "baselines have no bound"], width, height)


def potential_chart(potential: pd.DataFrame, max_drop_pts: float, width: int = WIDTH) -> alt.Chart:
    """Prune potential per method: the largest pruned share within the accuracy drop (horizontal bars)."""
    d = potential.copy()
    methods = [m for m in METHOD_COLOR if m in set(d["method"])] + [m for m in d["method"] if m not in METHOD_COLOR]
    d["pruned_pct"] = 100 * pd.to_numeric(d["max_pruned_share"], errors="coerce")
    d["shown"] = d["pruned_pct"].fillna(0.0)
    d["label"] = [("none within the drop" if math.isnan(v) else f"{v:.1f}% pruned") for v in d["pruned_pct"]]
    color, _ = _method_scales(methods)
    base = alt.Chart(d).encode(
        y=alt.Y("method:N", sort=methods, title="method"),
        x=alt.X("shown:Q", title="weights pruned (% of prunable weights)", scale=alt.Scale(domain=[0, 140]),
                axis=alt.Axis(values=[0, 20, 40, 60, 80, 100])),  # room right of 100% for the labels
        tooltip=[alt.Tooltip("method:N"), alt.Tooltip("label:N", title="prune potential"),
                 alt.Tooltip("keep_ratio_requested:Q", format="g", title="at keep ratio"),
                 alt.Tooltip("accuracy_drop:Q", format=".4f", title="mean accuracy drop"), alt.Tooltip("note:N")],
    )
    bars = base.mark_bar(height={"band": 0.7}).encode(color=alt.Color("method:N", scale=color, sort=methods, legend=None))
    text = base.mark_text(align="left", dx=4, fontSize=TEXT_PX).encode(text="label:N")
    h = max(110, 34 * len(d))
    return sized((bars + text).properties(
        title=_title("Prune potential per method", ["the most weights pruned with a mean accuracy drop",
                                                     f"of at most {max_drop_pts:g} points, on this grid"]),
        width=width, height=h), h, 2)


# ---- retraining ------------------------------------------------------------------------------------

def cascade_frame(steps: list[dict]) -> pd.DataFrame:
    cols = ["step", "keep_ratio_requested", "keep_ratio", "accuracy_pruned", "accuracy_finetuned", "accuracy_drop",
            "agreement_pruned", "epochs", "pruned_weights_zero", "prune_s", "finetune_s"]
    return pd.DataFrame([{k: s.get(k) for k in cols} for s in steps], columns=cols)


def cascade_chart(steps: list[dict], dense_acc: float, width: int = WIDTH, height: int = HEIGHT) -> alt.Chart:
    """Accuracy right after each pruning step and after fine-tuning, against the keep ratio (log, decreasing)."""
    rows = []
    for s in steps:
        for series, key in (("after pruning", "accuracy_pruned"), ("after fine-tuning", "accuracy_finetuned")):
            rows.append(dict(step=s["step"], keep_pct=100 * s["keep_ratio"], series=series, acc=100 * s[key],
                             asked=s["keep_ratio_requested"]))
    d = pd.DataFrame(rows, columns=["step", "keep_pct", "series", "acc", "asked"])
    if d.empty:
        return empty("Prune-retrain cascade", "No pruning step has finished yet, so there is no accuracy to draw.", width)
    series = ["after pruning", "after fine-tuning"]
    col = alt.Scale(domain=series, range=[OKABE["orange"], OKABE["blue"]])
    shapes = alt.Scale(domain=series, range=["triangle-down", "circle"])
    # the steps' own span, ticked at the keep ratios asked (Vega's rounding drew 100 to 1 for steps from 50 to 2)
    ticks = sorted({float(f"{100 * a:.4g}") for a in d["asked"] if a is not None and a > 0})
    base = alt.Chart(d).encode(
        x=alt.X("keep_pct:Q", scale=alt.Scale(type="log", reverse=True, nice=False, padding=24),
                title=KEEP_AXIS + ", pruning goes right", axis=alt.Axis(format="~g", values=ticks or alt.Undefined)),
        y=alt.Y("acc:Q", title=ACC_AXIS),
        color=alt.Color("series:N", scale=col, sort=series, legend=alt.Legend(orient="bottom", title=None, labelLimit=400)),
    )
    layers = [base.mark_line(strokeWidth=2).encode(strokeDash=alt.StrokeDash(
                  "series:N", scale=alt.Scale(domain=series, range=[[5, 3], [1, 0]]), legend=None)),
              base.mark_point(filled=True, size=70).encode(
                  shape=alt.Shape("series:N", scale=shapes, sort=series),
                  tooltip=[alt.Tooltip("step:Q"), alt.Tooltip("asked:Q", format="g", title="keep ratio asked"),
                           alt.Tooltip("keep_pct:Q", format=".3g", title="kept %"), "series:N",
                           alt.Tooltip("acc:Q", format=".2f", title="accuracy %")])]
    if dense_acc is not None and not math.isnan(dense_acc):
        r = alt.Chart(pd.DataFrame({"y": [100 * dense_acc], "label": [f"dense {100 * dense_acc:.1f}%"]}))
        layers += [r.mark_rule(color=OKABE["black"], strokeDash=[2, 3]).encode(y="y:Q"),
                   r.mark_text(align="left", baseline="bottom", dx=3, dy=-2, fontSize=TEXT_PX, color="#444444").encode(
                       y="y:Q", x=alt.value(2), text="label:N")]
    sub = ["each step prunes the previous step's fine-tuned network further, then fine-tunes with the mask fixed"]
    return sized(alt.layer(*layers).properties(title=_title("Prune-retrain cascade", sub), width=width, height=height),
                 height, 1, 1)


def isolation_frame(ticket: dict, random: dict) -> pd.DataFrame:
    rows = []
    for run, d in (("ticket (method's mask)", ticket), ("random mask, same counts", random)):
        if not d:
            continue
        rows.append(dict(run=run, epoch=0, acc=100 * d["accuracy_init"] if d.get("accuracy_init") is not None else None))
        rows += [dict(run=run, epoch=i + 1, acc=100 * a) for i, a in enumerate(d.get("accuracy_curve", []) or [])
                 if a is not None]
    return pd.DataFrame(rows, columns=["run", "epoch", "acc"])


def isolation_chart(ticket: dict, random: dict, dense_acc: float, random_label: str = "random mask, same counts",
                    width: int = WIDTH, height: int = HEIGHT) -> alt.Chart:
    """Test accuracy per epoch of the masked network trained from its (rewound) start, vs a random mask."""
    d = isolation_frame(ticket, random)
    d["run"] = d["run"].replace({"random mask, same counts": random_label})
    runs = ["ticket (method's mask)", random_label]
    col = alt.Scale(domain=runs, range=[OKABE["blue"], OKABE["grey"]])
    base = alt.Chart(d).encode(
        x=alt.X("epoch:Q", title="training epoch (0 = rewound weights, masked, before training)",
                axis=alt.Axis(tickMinStep=1, format="d")),
        y=alt.Y("acc:Q", title=ACC_AXIS),
        color=alt.Color("run:N", scale=col, sort=runs, legend=alt.Legend(
            orient="bottom", title=None, labelLimit=400, symbolType="stroke", symbolStrokeWidth=3, symbolSize=300)),
        tooltip=["run:N", "epoch:Q", alt.Tooltip("acc:Q", format=".2f", title="accuracy %")],
    )
    layers = [base.mark_line(strokeWidth=2.2).encode(strokeDash=alt.StrokeDash(
                  "run:N", scale=alt.Scale(domain=runs, range=[[1, 0], [6, 3]]), legend=None)),
              base.mark_point(filled=True, size=50)]
    if dense_acc is not None and not math.isnan(dense_acc):
        r = alt.Chart(pd.DataFrame({"y": [100 * dense_acc], "label": [f"dense network {100 * dense_acc:.1f}%"]}))
        layers += [r.mark_rule(color=OKABE["black"], strokeDash=[2, 3]).encode(y="y:Q"),
                   r.mark_text(align="left", baseline="bottom", dx=3, dy=-2, fontSize=TEXT_PX, color="#444444").encode(
                       y="y:Q", x=alt.value(2), text="label:N")]
    return sized(alt.layer(*layers).properties(
        title=_title("Training in isolation: the method's mask vs a random one",
                     "same starting weights, epochs, learning rate and batch order; only which weights are kept differs"),
        width=width, height=height), height, 1, 1)


# ---- sparse speed --------------------------------------------------------------------------------

def speedup_chart(layers: pd.DataFrame, totals: list[dict], width: int = WIDTH) -> alt.Chart:
    """CSR speed-up over the dense kernel (dense ms / CSR ms) per pruned Linear layer and in total, per batch size.

    `layers`: SparseSpeedReport.to_frame(); `totals`: SparseSpeedReport.totals(). Log x axis centred on 1x.
    """
    d = layers[layers["kind"] == "linear"][["name", "shape", "batch_size", "dense_ms", "csr_ms", "density"]].copy()
    d["layer"] = [f"{layer_label(n, 'linear', tuple(sh))} ({100 * k:.1f}% kept)"
                  for n, sh, k in zip(d["name"], d["shape"], d["density"])]
    tot = pd.DataFrame([dict(name="all", batch_size=t["batch_size"], dense_ms=t["dense_ms"], csr_ms=t["csr_ms"],
                             density=float("nan"), layer="all Linear layers") for t in totals])
    d = pd.concat([d, tot], ignore_index=True)
    d["speedup"] = pd.to_numeric(d["dense_ms"], errors="coerce") / pd.to_numeric(d["csr_ms"], errors="coerce")
    d = d[np.isfinite(d["speedup"].astype(float)) & (d["speedup"] > 0)]
    if d.empty:
        return empty("Sparse (CSR) speed over dense, per layer", "No Linear layer was timed: the sparse kernel is "
                     "measured on pruned Linear layers only, and this network has none (or none ran).", width)
    d["batch"] = [f"batch {b}" for b in d["batch_size"]]
    d["label"] = [(f"{s:.2f}× faster" if s >= 1 else f"{1 / s:.2f}× slower") for s in d["speedup"]]
    order = list(dict.fromkeys(d["layer"]))
    batches = list(dict.fromkeys(d["batch"]))
    lim = float(max(4.0, d["speedup"].max() * 3, 1 / max(d["speedup"].min(), 1e-3) * 1.5)) if len(d) else 4.0
    base = alt.Chart(d).encode(
        # the y title above the labels, level (beside them it was drawn over them, projected); the x title on two
        # short lines and 5 ticks (one line was cut at 150% zoom, and "0.40.5" ran together)
        y=alt.Y("layer:N", sort=order, title="pruned Linear layer",
                axis=alt.Axis(labelLimit=240, labelFontSize=LEGEND_PX, titleAngle=0, titleAlign="right",
                              titleBaseline="bottom", titleX=0, titleY=-6)),
        yOffset=alt.YOffset("batch:N", sort=batches),
        x=alt.X("speedup:Q", scale=alt.Scale(type="log", domain=[1 / lim, lim]),
                title=["CSR speed-up over dense (dense time / CSR time)", "log scale; > 1: sparse faster"],
                axis=alt.Axis(format="~g", tickCount=5)),
        color=alt.Color("batch:N", sort=batches, scale=alt.Scale(domain=batches, range=[OKABE["orange"], OKABE["blue"],
                                                                                        OKABE["green"]][: len(batches)]),
                        legend=alt.Legend(orient="bottom", title=None, labelLimit=400)),
        tooltip=["layer:N", "batch:N", alt.Tooltip("dense_ms:Q", format=".4f", title="dense ms"),
                 alt.Tooltip("csr_ms:Q", format=".4f", title="CSR ms"), alt.Tooltip("speedup:Q", format=".2f")],
    )
    pts = base.mark_point(filled=True, size=110)
    rule_src = base.mark_rule(strokeWidth=2).encode(x2=alt.datum(1.0))
    # labels on the far side of the point from the 1x line, so they never sit on the bar
    text = (base.transform_filter("datum.speedup >= 1").mark_text(align="left", dx=8, fontSize=TEXT_PX)
            .encode(text="label:N", color=alt.value("#333333"))
            + base.transform_filter("datum.speedup < 1").mark_text(align="right", dx=-8, fontSize=TEXT_PX)
            .encode(text="label:N", color=alt.value("#333333")))
    one = alt.Chart(pd.DataFrame({"x": [1.0]})).mark_rule(color=OKABE["black"], strokeDash=[3, 3]).encode(x="x:Q")
    h = max(120, 24 * len(order) * max(1, len(batches)))
    return sized((rule_src + pts + text + one).properties(
        title=_title("Sparse (CSR) speed over dense, per layer", ["median of timed runs, 1 CPU thread",
                                                                  "dotted line: equal speed; left of it sparse is slower"]),
        width=width, height=h), h + 20, 2, 1, x_label_lines=2)  # + the y title's line above the plot


def file_size_chart(files: dict, width: int = WIDTH) -> alt.Chart:
    """Bytes of the pruned state_dict in four formats (horizontal bars, KiB)."""
    d = pd.DataFrame([dict(format=FILE_LABELS.get(k, k), kib=v / 1024, pct=100 * v / (files.get("dense") or 1))
                      for k, v in files.items()])
    d["label"] = [f"{k:,.0f} KiB ({p:.0f}%)" for k, p in zip(d["kib"], d["pct"])]
    order = [FILE_LABELS.get(k, k) for k in files]
    colors = [OKABE["grey"], OKABE["orange"], OKABE["sky"], OKABE["blue"]][: len(order)]
    base = alt.Chart(d).encode(
        # the axis title above the labels, level, ending at the axis: beside 260 px of labels it was drawn over the
        # longest one (Vega measures the labels before the page's font has loaded)
        y=alt.Y("format:N", sort=order, title="storage format",
                axis=alt.Axis(labelLimit=260, titleAngle=0, titleAlign="right", titleBaseline="bottom", titleX=0,
                              titleY=-6)),
        x=alt.X("kib:Q", title="file size (KiB)", scale=alt.Scale(domain=[0, float(d["kib"].max()) * 1.45]),
                axis=alt.Axis(tickCount=5, format=",.0f")),  # "1,000 1,100 …" every 100 KiB ran together
        tooltip=["format:N", alt.Tooltip("kib:Q", format=",.1f", title="KiB"),
                 alt.Tooltip("pct:Q", format=".1f", title="% of dense")],
    )
    bars = base.mark_bar(height={"band": 0.7}).encode(color=alt.Color("format:N", sort=order, legend=None,
                                                                      scale=alt.Scale(domain=order, range=colors)))
    text = base.mark_text(align="left", dx=4, fontSize=TEXT_PX).encode(text="label:N")
    h = 34 * len(d) + 10
    return sized((bars + text).properties(title=_title("File size of the pruned model",
                                                       "percent: of the dense state_dict"), width=width, height=h),
                 h + 20)  # and the axis title's line above the plot


def is_finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


__all__ = ["METHOD_COLOR", "aggregate", "dense_accuracy", "accuracy_chart", "error_chart", "bound_chart",
           "potential_chart", "cascade_frame", "cascade_chart", "isolation_frame", "isolation_chart",
           "speedup_chart", "file_size_chart", "is_finite"]
