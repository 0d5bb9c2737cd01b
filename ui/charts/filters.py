"""Charts of filter pruning (the Filters page and notebooks): channel sensitivities, widths before and after,
FLOPs per layer. No Streamlit."""
from __future__ import annotations

import math

import altair as alt
import pandas as pd

from .core import OKABE, TEXT_PX, WIDTH, _title, empty, sized

KEPT_SCALE = alt.Scale(domain=["kept", "removed"], range=[OKABE["blue"], "#C8C8C8"])
BAR_MAX_PX = 48  # a layer of few channels (LeNet-5's conv1 reads 1): bars this wide, not one bar across the plot


def channel_sensitivity_bars(result, layer: str, width: int = WIDTH, height: int = 260) -> alt.Chart:
    """One layer's channel sensitivities, sorted, coloured by kept or removed."""
    s = result.channel_sensitivities[layer].double().numpy()
    kept = result.channels[layer].numpy()
    label = result.labels[layer]
    if len(s) == 0 or s.max() <= 0:
        return empty(f"Channel sensitivities of {label}", "No channel of this layer received any signal on S: every "
                     "sensitivity is 0.", width)
    df = pd.DataFrame({"channel": range(len(s)), "sensitivity": s, "status": ["kept" if k else "removed" for k in kept]})
    df = df.sort_values("sensitivity", ascending=False).reset_index(drop=True)
    df["rank"] = range(1, len(df) + 1)
    if len(df) <= 40:  # a band per channel, its rank below it; with few channels a band is wider than a bar needs
        bar = alt.MarkDef(type="bar", size=BAR_MAX_PX) if width / len(df) > 1.5 * BAR_MAX_PX else "bar"
        x = {"x": alt.X("rank:O", title="channels, largest sensitivity first")}
    else:  # hundreds of channels: abutting bars on a rank axis with ticks (a band each left gaps that banded)
        bar = alt.MarkDef(type="bar", stroke=None)
        df["lo"], df["hi"] = df["rank"] - 0.5, df["rank"] + 0.5
        x = {"x": alt.X("lo:Q", title="channels, largest sensitivity first (rank)",
                        scale=alt.Scale(domain=[0.5, len(df) + 0.5], nice=False), axis=alt.Axis(format="d")),
             "x2": alt.X2("hi:Q"), "y2": alt.datum(0)}
    chart = alt.Chart(df, mark=bar).encode(
        **x,
        y=alt.Y("sensitivity:Q", title="sensitivity s_j (0 to 1)", scale=_share_scale(float(s.max()))),
        color=alt.Color("status:N", scale=KEPT_SCALE, title=None, legend=alt.Legend(orient="bottom")),
        tooltip=["channel:Q", alt.Tooltip("sensitivity:Q", format=".4f"), "status:N"],
    )
    n_kept = int(kept.sum())
    return sized(chart.properties(
        title=_title(f"Channel sensitivities of {label}",
                     f"{n_kept} of {len(s)} input channels kept; s_j: the largest share one of the channel's "
                     "weights takes of a unit's input on S"),
        width=width, height=height), height, legend_rows=1, subtitle_lines=2)


def _share_scale(top: float) -> alt.Scale:
    """A 0-to-1 share's axis: up to the largest value rounded up to a tenth, never past 1 (Vega's own rounding
    drew an axis to 1.1, above anything a share can be); Vega's rounding below a tenth."""
    return alt.Scale(domain=[0, min(1.0, math.ceil(top * 10) / 10)], nice=False) if top >= 0.1 else alt.Scale()


def widths_chart(result, width: int = WIDTH) -> alt.Chart:
    """Output channels (filters) of every layer before and after: the architecture, layer by layer."""
    rows = []
    for w in result.widths:
        label = w.label
        rows.append({"layer": label, "network": "original", "filters": w.out_before})
        rows.append({"layer": label, "network": "pruned", "filters": w.out_after})
    df = pd.DataFrame(rows)
    order = [w.label for w in result.widths]
    h = max(140, 46 * len(order))
    base = alt.Chart(df).encode(
        y=alt.Y("layer:N", sort=order, title=None, axis=alt.Axis(labelLimit=260)),  # labels name the layers
        yOffset=alt.YOffset("network:N", sort=["original", "pruned"]),
        # room right of the longest bar for its count (a 120-unit layer's "120" sat on the plot's edge)
        x=alt.X("filters:Q", title="output channels (filters or units)",
                scale=alt.Scale(domainMax=float(df["filters"].max()) * 1.15, nice=False)),
        color=alt.Color("network:N", scale=alt.Scale(domain=["original", "pruned"], range=["#C8C8C8", OKABE["blue"]]),
                        title=None, legend=alt.Legend(orient="bottom")),
        tooltip=["layer:N", "network:N", "filters:Q"],
    )
    # counts in dark grey: in the original's light grey (#C8C8C8) they were hard to read on a projector
    chart = base.mark_bar() + base.mark_text(align="left", dx=3, fontSize=TEXT_PX, color="#333333").encode(
        text="filters:Q", color=alt.value("#333333"))
    return sized(chart.properties(
        title=_title("Widths before and after", "grey: the original network; blue: the smaller one"),
        width=width, height=h), h, legend_rows=1)


def flops_chart(result, width: int = WIDTH) -> alt.Chart:
    """Multiply-accumulates per layer for one input, original against pruned."""
    rows = []
    for name, v in result.flops_per_layer.items():
        label = result.labels.get(name, name)
        rows.append({"layer": label, "network": "original", "MACs": v["original"]})
        rows.append({"layer": label, "network": "pruned", "MACs": v["pruned"]})
    df = pd.DataFrame(rows)
    order = [result.labels.get(n, n) for n in result.flops_per_layer]
    h = max(140, 46 * len(order))
    chart = alt.Chart(df).mark_bar().encode(
        y=alt.Y("layer:N", sort=order, title=None, axis=alt.Axis(labelLimit=260)),  # labels name the layers
        yOffset=alt.YOffset("network:N", sort=["original", "pruned"]),
        # at most 6 ticks: in presentation type, ten labels such as "220k" ran into each other
        x=alt.X("MACs:Q", title="multiply-accumulates per input", axis=alt.Axis(format=",.3~s", tickCount=6)),
        color=alt.Color("network:N", scale=alt.Scale(domain=["original", "pruned"], range=["#C8C8C8", OKABE["blue"]]),
                        title=None, legend=alt.Legend(orient="bottom")),
        tooltip=["layer:N", "network:N", alt.Tooltip("MACs:Q", format=",")],
    )
    total = result.flops
    return sized(chart.properties(
        title=_title("FLOPs per layer", f"all layers: {total['original']:,} → {total['pruned']:,} multiply-accumulates "
                     f"({100 * total['pruned'] / total['original']:.1f}%)"),
        width=width, height=h), h, legend_rows=1)


COMPARE_X = {
    "params_share": ("parameters kept (share of the dense network)", ".0%"),
    "flops_share": ("FLOPs kept (share of the dense network)", ".0%"),
    "latency_ms": ("CPU latency at batch 64 (ms, measured)", ".2f"),
}


def compare_chart(frame: pd.DataFrame, x: str = "params_share", width: int = WIDTH, height: int = 300) -> alt.Chart:
    """Test accuracy against size, FLOPs or latency: weight methods (circles) and channel methods (squares)."""
    title, fmt = COMPARE_X[x]
    if frame.empty or x not in frame:
        return empty("Accuracy against cost", "No comparison has been run yet.", width)
    df = frame.copy()
    df["accuracy %"] = 100 * df["accuracy"]
    methods = list(dict.fromkeys(df["method"]))
    palette = [OKABE[k] for k in ("blue", "vermillion", "green", "orange", "purple", "sky")]
    enc = dict(
        x=alt.X(f"{x}:Q", title=title, axis=alt.Axis(format=fmt), scale=alt.Scale(zero=False)),
        y=alt.Y("accuracy %:Q", title="test accuracy (%)", scale=alt.Scale(zero=False)),
        color=alt.Color("method:N", sort=methods, scale=alt.Scale(domain=methods, range=palette[:len(methods)]),
                        title="method", legend=alt.Legend(orient="bottom")),
        tooltip=["method:N", "kind:N", "ratio:Q", alt.Tooltip("params:Q", format=","), alt.Tooltip("flops:Q", format=","),
                 alt.Tooltip("accuracy %:Q", format=".2f")] + ([alt.Tooltip("latency_ms:Q", format=".3f")]
                                                               if "latency_ms" in df else []),
    )
    base = alt.Chart(df).encode(**enc)
    lines = base.mark_line(strokeWidth=2).encode(detail="method:N")
    points = base.mark_point(size=110, filled=True).encode(
        shape=alt.Shape("kind:N", scale=alt.Scale(domain=["weights", "channels"], range=["circle", "square"]),
                        title="removes", legend=alt.Legend(orient="bottom")))
    sub = ("circles: weights zeroed (same shapes); squares: channels removed (a smaller network)"
           if x != "latency_ms" else "the latency of what really runs: dense kernels for weight pruning")
    return sized((lines + points).properties(title=_title("Accuracy against cost", sub), width=width, height=height),
                 height, legend_rows=2, subtitle_lines=2)
