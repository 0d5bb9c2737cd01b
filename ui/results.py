"""Result displays that several pages share: the verdict callout, a prune's headline metrics, its deployable files.

The Prune and Bring-your-own pages show the same headline metrics. A sweep's and a retraining run's displays are
in ui.sweep_results (their charts need Altair, which the first page does without).
"""
from __future__ import annotations

import io
import math
import tempfile
import zipfile
from pathlib import Path

import streamlit as st

# ---- the verdict callout ---------------------------------------------------------------------------

def verdict_box(lines: list[str], where=None) -> None:
    """The page's conclusion in a callout headed "Verdict" (sentences from ui.verdicts); nothing when empty."""
    if not lines:
        return
    where = where if where is not None else st
    body = lines[0] if len(lines) == 1 else "\n".join(f"- {x}" for x in lines)
    where.success("**Verdict**\n\n" + body, icon=":material/gavel:")


# ---- a prune's headline ---------------------------------------------------------------------------

def fmt_pct(v: float, digits: int = 1) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.{digits}f}%"


def fmt_val(v: float) -> str:
    if v is None or (isinstance(v, float) and (math.isnan(v))):
        return "none"
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    return f"{v:.3g}"


def headline_metrics(h: dict, detailed: bool = True) -> None:
    """The five headline metrics of a prune (tables.headline), as a row of st.metric.

    detailed: the Prune page's longer captions (all parameters, what agreement and the
    bound are relative to, the error on S); the Bring-your-own page shows the short ones."""
    c1, c2, c3, c4, c5 = st.columns(5)
    c1.metric("Weights kept", fmt_pct(h["keep_ratio"], 2))
    c1.caption(f"{h['kept']:,} of {h['total']:,} prunable weights" + (
        f" · all parameters (biases too): {fmt_pct(h['params_kept'] / h['params_total'], 2)} of "
        f"{h['params_total']:,}" if detailed else ""))
    change = 100 * (h["accuracy_after"] - h["accuracy_before"])
    # a change that rounds to 0.0 points is no change: grey, no arrow (a green "↑ +0.0 pts" read as a gain)
    moved = abs(change) >= 0.05
    c2.metric("Accuracy after", fmt_pct(h["accuracy_after"]), delta=f"{change:+.1f} pts",
              delta_color="normal" if moved else "off", delta_arrow="auto" if moved else "off")
    c2.caption(f"before: {fmt_pct(h['accuracy_before'])} · {'top-1 on ' if detailed else ''}"
               f"{h['test_points']:,} test points, no retraining")
    c3.metric("Agreement", fmt_pct(h["agreement"]))
    c3.caption(("same class as the original · " if detailed else "")
               + f"logits relative error {h['logits_rel_error']:.3g}")
    c4.metric("Largest bound", fmt_val(h["bound_max"]) if h["has_bound"] else "none")
    relative = ", relative to the row's own signal z^σ" if detailed else ""
    c4.caption(f"largest row bound{relative}; sampled rows hold w.p. ≥ 1 − δ, deterministic ones on the points of S"
               if h["has_bound"] else "this method gives no guarantee")
    c5.metric("Largest measured error", fmt_val(h["measured_max_heldout"]))
    c5.caption(f"largest row error on {h['heldout_points']} held-out points · on S: {fmt_val(h['measured_max_s'])}"
               if detailed else f"on {h['heldout_points']} held-out points")


def export_zip(report) -> bytes:
    """The deployable files of a pruned network, zipped: model.pt2, model.onnx (checked with onnxruntime
    against PyTorch on the test split), masks.pt, state_dict.pt, report.json and report.csv."""
    with tempfile.TemporaryDirectory() as tmp:
        report.result.export(tmp, check_inputs=report.prepared.record.x_test, report=report.to_dict())
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(Path(tmp).iterdir()):
                zf.write(path, path.name)
        return buf.getvalue()
