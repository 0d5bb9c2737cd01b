"""The Filters page's numbers without Streamlit: the measured table and the verdict sentence."""
from __future__ import annotations

import math

import pandas as pd

NETWORKS = ("original", "masked", "pruned")
NETWORK_NAMES = {"original": "original", "masked": "masked (same shapes, zeros)", "pruned": "smaller network"}
# The masked network's speed against the original's outside this span (it does the same work) means the timing was
# too noisy for a verdict on the smaller one
NOISE_SPAN = (0.8, 1.25)


def measured_table(report) -> pd.DataFrame:
    """One row per network: parameters, FLOPs, file size, and latency when it was measured."""
    r = report.result
    rows = []
    for k in NETWORKS:
        row = {"network": NETWORK_NAMES[k], "parameters": r.params[k], "FLOPs (MACs per input)": r.flops[k],
               "file size (KiB)": round(report.file_bytes[k] / 1024, 1)}
        if report.latency_ms:
            for b, v in report.latency_ms[k].items():
                row[f"latency batch {b.split('_')[1]} (ms)"] = round(v, 3)
        rows.append(row)
    return pd.DataFrame(rows)


def filters_verdict(report, retrained_accuracy: float | None = None) -> list[str]:
    """Sentences computed from the table: how much smaller, how much faster, what it cost in accuracy."""
    r = report.result
    method = r.settings["method"]
    p = r.params["pruned"] / r.params["original"]
    f = r.flops["pruned"] / r.flops["original"]
    out = [f"{method} kept {100 * p:.1f}% of the parameters and {100 * f:.1f}% of the FLOPs, and the network is "
           f"really smaller: {r.params['original']:,} → {r.params['pruned']:,} parameters, "
           f"{report.file_bytes['original'] / 1024:,.0f} → {report.file_bytes['pruned'] / 1024:,.0f} KiB on disk."]
    if not r.shrunk:
        out[0] = (f"{method} kept {100 * p:.1f}% of the parameters, but this network could not be rebuilt smaller "
                  f"({r.note}): the file and the latency stay those of the original.")
    if report.latency_ms:
        lat = report.latency_ms
        b = "batch_64" if "batch_64" in lat["original"] else next(iter(lat["original"]))
        speed = lat["original"][b] / lat["pruned"][b]
        masked = lat["original"][b] / lat["masked"][b]
        if not NOISE_SPAN[0] <= masked <= NOISE_SPAN[1]:
            # the masked network does exactly the original's work: a speed far from 1× is the machine's noise
            out.append(f"The latency at batch {b.split('_')[1]} was too noisy to tell: the masked network, which "
                       f"does exactly the original's work, measured {masked:.2f}× the original's speed (the "
                       f"smaller one {speed:.2f}×). Measure again when the machine is quieter.")
        else:
            verb = "faster" if speed >= 1.05 else ("no faster" if speed > 0.95 else "slower")
            out.append(f"At batch {b.split('_')[1]} on this CPU the smaller network is {verb}: "
                       f"{lat['original'][b]:.2f} → {lat['pruned'][b]:.2f} ms ({speed:.2f}×); the masked one, "
                       f"with zeros in the original shapes, does the original's work and measured {masked:.2f}×.")
    acc0, acc1 = report.e2e.accuracy_before, report.e2e.accuracy_after
    line = f"Test accuracy {100 * acc0:.1f}% → {100 * acc1:.1f}% ({100 * (acc1 - acc0):+.1f} points) before retraining"
    if retrained_accuracy is not None and not math.isnan(retrained_accuracy):
        line += f", {100 * retrained_accuracy:.1f}% ({100 * (retrained_accuracy - acc0):+.1f} points) after retraining"
    out.append(line + ".")
    if r.dead_on_s:
        out.append(f"{r.dead_on_s} filter(s) went because they were silent on every point of S, not because the "
                   "allocation chose them.")
    return out


def factor_span(v) -> str:
    """Speed factors as a range ("1.52× to 3.10×"), or one factor when they agree to two decimals ("1.00×")."""
    lo, hi = f"{min(v):.2f}×", f"{max(v):.2f}×"
    return lo if lo == hi else f"{lo} to {hi}"


# The comparison's columns as the page shows them (the frame keeps the library's names)
COMPARE_COLUMNS = {"method": "method", "kind": "pruned", "ratio": "keep ratio", "params": "parameters",
                   "params_share": "parameter share", "flops": "FLOPs", "flops_share": "FLOP share",
                   "accuracy": "accuracy", "latency_ms": "latency (ms)", "dense_latency_ms": "dense latency (ms)",
                   "speedup": "speed-up"}


def compare_verdict(frame: pd.DataFrame) -> list[str]:
    """At equal parameter counts: which kind is more accurate, and which one is really faster."""
    if frame.empty:
        return []
    out = []
    weights, channels = frame[frame["kind"] == "weights"], frame[frame["kind"] == "channels"]
    if not weights.empty and not channels.empty:
        best_w = weights.groupby("ratio")["accuracy"].max()
        best_c = channels.groupby("ratio")["accuracy"].max()
        gaps = (best_w - best_c).dropna()
        if len(gaps):
            lead = "weight pruning" if (gaps > 0).all() else ("channel pruning" if (gaps < 0).all() else None)
            spread = f"{100 * gaps.abs().min():.1f} to {100 * gaps.abs().max():.1f} points"
            if lead:
                out.append(f"At the same parameter count, {lead} is more accurate at every tested ratio, by {spread} "
                           "(best method of each kind, before retraining).")
            else:
                out.append(f"Neither kind is more accurate at every tested ratio (gaps of {spread}).")
    if "speedup" in frame and not channels.empty and not weights.empty:
        c, w = channels["speedup"], weights["speedup"]
        out.append(f"Only removing channels makes it faster: the smaller networks run {factor_span(c)} the dense "
                   f"speed at batch 64, the weight-pruned ones {factor_span(w)} (their zeros are still multiplied).")
    return out
