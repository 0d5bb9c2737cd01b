"""Small pandas / numpy records derived from the engine's records (no streamlit).

Every function takes engine objects (Prepared, Report, PruneResult, LayerError)
and returns a DataFrame or a dict of primitives that a chart or a table shows.
Sizes are bounded (pre-binned histograms, sampled points) so a browser never
receives more than a few thousand rows.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as Fn

from sipp_core.options import SIPP_METHODS
from sipp_core.zoo.layers import prunable_layers

# 2: every weight with a share of the signal on S (s > 0) kept; a weight silent on all of S (s = 0) is dropped
ROW_METHOD_NAMES = {0: "deterministic", 1: "sampled", 2: "kept all with s > 0", 3: "pruned entirely"}
SIGN_NAMES = {0: "+ (positive weights)", 1: "- (negative weights)"}
# The pruned state_dict's four file formats (sipp_core.plan.sparse_speed), in the speed panel's words
FILE_LABELS = {"dense": "dense state_dict (torch.save)", "dense_zip": "dense, zipped (np.savez_compressed)",
               "csr_torch": "sparse CSR (torch.save)", "csr_npz": "sparse CSR, zipped, small indices"}


def as_float(v) -> float:
    """float(v), or NaN where v is None or not a number (for tables and run listings)."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return v


def headline(report) -> dict:
    """The Prune page's headline numbers, as plain floats/ints."""
    r, e = report.result, report.end_to_end
    rows = report.layer_rows()
    bounds = [x["bound"] for x in rows if x["bound"] is not None and not math.isnan(x["bound"])]
    meas_h = [x["measured_max_heldout"] for x in rows]
    meas_s = [x["measured_max_s"] for x in rows]
    fail = [x["failure_rate"] for x in rows if not math.isnan(x["failure_rate"])]
    # row by row: the largest error and the largest bound may come from different rows (LeNet-5 at 20% kept: 0.918
    # below 8.73, while fc3's rows failed on 140 of 10,000 held-out pairs)
    held = [(x["label"], report.errors_heldout[x["name"]]) for x in rows if x["name"] in report.errors_heldout]
    failed = [(label, int(round(as_float(e.failure_rate) * e.pairs))) for label, e in held
              if not math.isnan(as_float(e.failure_rate))]
    p = report.prepared
    timings = dict(load=p.timings_s.get("load", float("nan")), sensitivity=p.timings_s.get("sensitivity", float("nan")),
                   prune=report.timings_s.get("prune", float("nan")), evaluate=report.timings_s.get("evaluate", float("nan")))
    return dict(
        kept=r.kept, total=r.total, keep_ratio=r.keep_ratio,
        params_kept=r.params_kept, params_total=r.params_total,
        accuracy_before=e.accuracy_before, accuracy_after=e.accuracy_after, agreement=e.agreement,
        logits_rel_error=e.logits_rel_error,
        bound_max=max(bounds) if bounds else float("nan"),
        measured_max_heldout=max(meas_h) if meas_h else float("nan"),
        measured_max_s=max(meas_s) if meas_s else float("nan"),
        failure_rate=max(fail) if fail else float("nan"),
        failed_pairs_heldout=sum(n for _, n in failed), pairs_heldout=sum(int(e.pairs) for _, e in held),
        failed_layers_heldout=[label for label, n in failed if n > 0],
        empty_layers=[x["label"] for x in rows if int(x["kept"]) == 0], layers=len(rows),
        has_bound=bool(bounds), timings=timings,
        method=r.settings["method"], sample_size=p.sample_size, sample_size_formula=p.sample_size_formula,
        test_points=len(p.record.y_test), heldout_points=len(p.heldout_x),
    )


def layer_table(report) -> pd.DataFrame:
    """One row per prunable layer (the Prune page's table and the CSV download)."""
    rows = report.layer_rows()
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["density"] = df["kept"] / df["total"]
    plans = getattr(report.result, "plans", None) or {}
    if report.result.settings.get("method") not in SIPP_METHODS:  # WT, random, SNIP: no rows of SiPP's kinds
        df = df.drop(columns=["rows_deterministic", "rows_sampled"], errors="ignore")
    elif all(n in plans for n in df["name"]):  # the rows of the two other kinds: det. + sampled alone may add to 0
        for col, code in (("rows_whole", 2), ("rows_pruned", 3)):
            df[col] = [int((plans[n].row_method == code).sum()) for n in df["name"]]
    order = ["label", "file_name", "name", "kind", "kept", "total", "density", "rows_deterministic", "rows_sampled",
             "rows_whole", "rows_pruned", "bound", "bound_mean",
             "measured_max_s", "measured_max_heldout", "measured_p95_heldout", "measured_mean_heldout",
             "failure_rate_s", "failure_rate"]
    return df[[c for c in order if c in df.columns]].reset_index(drop=True)


LAYER_TABLE_LABELS = {
    "label": "layer", "name": "module name", "kind": "kind", "kept": "kept", "total": "weights", "density": "kept share",
    "rows_deterministic": "det. rows", "rows_sampled": "sampled rows", "rows_whole": "rows kept all with s > 0",
    "rows_pruned": "rows pruned entirely", "bound": "largest bound",
    "bound_mean": "mean bound", "measured_max_s": "max error on S", "measured_max_heldout": "max error held-out",
    "measured_p95_heldout": "p95 error held-out", "measured_mean_heldout": "mean error held-out",
    "failure_rate_s": "failure rate on S", "failure_rate": "failure rate held-out",
}


def layer_names(report_or_prepared) -> list[str]:
    if hasattr(report_or_prepared, "result"):
        return [l.name for l in report_or_prepared.result.layers]
    return list(report_or_prepared.infos)


def layer_labels(report_or_prepared) -> dict[str, str]:
    """Module name -> "fc1 · Linear 784→300" for every prunable layer, in forward order."""
    prepared = getattr(report_or_prepared, "prepared", report_or_prepared)
    return {n: prepared.infos[n].label for n in layer_names(report_or_prepared)}


def layer_label(report_or_prepared, name: str) -> str:
    """The label of one layer (its module name and shape), e.g. for a selectbox's format_func."""
    prepared = getattr(report_or_prepared, "prepared", report_or_prepared)
    return prepared.infos[name].label


# ---- sensitivity ---------------------------------------------------------------------------

def sensitivity_histogram(sensitivities: dict, bins_per_decade: int = 8) -> tuple[pd.DataFrame, dict]:
    """Log-binned share of edges per layer (pre-binned: ~100 rows per layer) and the zero counts."""
    # s is a share, at most 1; float32 sums leave some at 1.0000001 (LeNet-5's conv1: 80 of 150), which would
    # open a bin above 1
    sensitivities = {n: s.clamp(max=1.0) for n, s in sensitivities.items()}
    pos = [s[s > 0] for s in sensitivities.values()]
    allpos = torch.cat([p.flatten() for p in pos]) if pos else torch.tensor([])
    if allpos.numel() == 0:
        return pd.DataFrame(columns=["layer", "lo", "hi", "share", "count"]), {n: int(s.numel()) for n, s in sensitivities.items()}
    # Whole bins from the one holding the smallest s to the one whose top edge is the largest: np.histogram's last
    # bin is closed on the right, so s = 1 (common: a weight that carries a unit's whole input on some point of S)
    # falls in the bin ending at 1, not in one from 1 to 1.33 drawn at s = 1.15, past anything a share can be
    k_lo = math.floor(math.log10(float(allpos.min())) * bins_per_decade)
    k_hi = max(math.ceil(math.log10(float(allpos.max())) * bins_per_decade), k_lo + 1)
    edges = np.arange(k_lo, k_hi + 1) / bins_per_decade
    frames, zeros = [], {}
    for name, s in sensitivities.items():
        v = s.flatten().double().numpy()
        zeros[name] = int((v <= 0).sum())
        counts, _ = np.histogram(np.log10(v[v > 0]), bins=edges)
        frames.append(pd.DataFrame(dict(layer=name, lo=10 ** edges[:-1], hi=10 ** edges[1:], count=counts,
                                        share=counts / max(v.size, 1))))
    df = pd.concat(frames, ignore_index=True)
    return df[df["count"] > 0].reset_index(drop=True), zeros


def weight_sensitivity_points(weight: torch.Tensor, sens: torch.Tensor, mask: torch.Tensor | None,
                              max_points: int = 2500, seed: int = 0) -> pd.DataFrame:
    """A seeded sample of edges with |w|, s and kept (for the s-vs-|w| scatter)."""
    w = weight.reshape(weight.shape[0], -1).detach().float().cpu()
    s = sens.reshape(w.shape).float().cpu()
    n = w.numel()
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n, generator=gen)[:max_points] if n > max_points else torch.arange(n)
    f, j = idx // w.shape[1], idx % w.shape[1]
    df = pd.DataFrame(dict(unit=f.numpy(), input=j.numpy(), w=w.flatten()[idx].numpy(),
                           abs_w=w.flatten()[idx].abs().numpy(), s=s.flatten()[idx].numpy()))
    if mask is not None:
        df["kept"] = np.where(mask.reshape(w.shape).flatten()[idx].numpy(), "kept", "pruned")
    return df


def with_kept(points: pd.DataFrame, weight: torch.Tensor, mask: torch.Tensor) -> pd.DataFrame:
    """weight_sensitivity_points(..., mask=None) with the mask's "kept" / "pruned" column added (a new frame)."""
    cols = weight.reshape(weight.shape[0], -1).shape[1]
    flat = mask.reshape(-1).cpu().numpy()
    idx = points["unit"].to_numpy() * cols + points["input"].to_numpy()
    return points.assign(kept=np.where(flat[idx], "kept", "pruned"))


def row_totals_frame(weight: torch.Tensor, sens: torch.Tensor) -> pd.DataFrame:
    """Total sensitivity T of every (unit, sign) row and its number of weights with s > 0."""
    w = weight.reshape(weight.shape[0], -1).detach().float().cpu()
    s = sens.reshape(w.shape).double().cpu()
    out = []
    for col, sel in ((0, w > 0), (1, w < 0)):
        t = (s * sel).sum(1)
        nnz = ((s > 0) & sel).sum(1)
        out.append(pd.DataFrame(dict(unit=np.arange(w.shape[0]), sign=SIGN_NAMES[col], T=t.numpy(), nnz=nnz.numpy())))
    return pd.concat(out, ignore_index=True)


def top_edges(prepared, report=None, k: int = 15, layer: str | None = None) -> pd.DataFrame:
    """The k edges of largest sensitivity (of one layer, or of all layers)."""
    mods = prunable_layers(prepared.model)
    frames = []
    for name, s in prepared.sensitivities.items():
        if layer is not None and name != layer:
            continue
        w = mods[name].weight.detach().reshape(s.shape[0], -1).float().cpu()
        flat = s.reshape(w.shape).flatten().float()
        kk = min(k, flat.numel())
        vals, idx = torch.topk(flat, kk)
        f, j = idx // w.shape[1], idx % w.shape[1]
        df = pd.DataFrame(dict(layer=prepared.infos[name].label, unit=f.numpy(), input=j.numpy(), w=w.flatten()[idx].numpy(), s=vals.numpy()))
        if report is not None:
            m = report.result.masks[name].reshape(w.shape).flatten()
            df["kept"] = m[idx].numpy()
        frames.append(df)
    df = pd.concat(frames, ignore_index=True).sort_values("s", ascending=False).head(k)
    return df.reset_index(drop=True)


# ---- kept edges ----------------------------------------------------------------------------

def kept_matrix(report, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mask F x J bool, pruned-copy values F x J, original weights F x J) of one layer."""
    plan = report.result.plans[name]
    w = prunable_layers(report.prepared.model)[name].weight.detach().float().cpu()
    F = w.shape[0]
    return (plan.mask.reshape(F, -1).numpy(), plan.values.reshape(F, -1).float().numpy(), w.reshape(F, -1).numpy())


def heatmap_frame(report, name: str) -> pd.DataFrame:
    """Long table of every edge of a SMALL layer: unit, input, w, s, kept, new value."""
    mask, vals, w = kept_matrix(report, name)
    s = report.prepared.sensitivities[name].reshape(w.shape).float().numpy()
    F, J = w.shape
    ff, jj = np.meshgrid(np.arange(F), np.arange(J), indexing="ij")
    return pd.DataFrame(dict(unit=ff.ravel(), input=jj.ravel(), w=w.ravel(), s=s.ravel(),
                             kept=np.where(mask.ravel(), "kept", "pruned"), value=np.where(mask.ravel(), vals.ravel(), np.nan)))


def kept_per_unit(report, name: str) -> pd.DataFrame:
    plan = report.result.plans[name]
    rk = plan.row_kept.reshape(-1, 2).numpy()
    F = rk.shape[0]
    return pd.concat([
        pd.DataFrame(dict(unit=np.arange(F), sign=SIGN_NAMES[c], kept=rk[:, c])) for c in (0, 1)
    ], ignore_index=True)


def input_pixel_maps(report, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """For a first layer on image inputs: per-pixel (dense edge count, kept edge count, kept |w| sum).

    Linear layers: the J inputs ARE the flattened pixels. Conv layers: every edge (f, c, dy, dx) is
    used once per output patch, so a pixel's count is a transposed convolution of the kept mask.
    Returns arrays shaped (H, W) summed over channels, or None for a non-image / deeper layer.
    """
    prepared = report.prepared
    shape = tuple(prepared.record.input_shape)
    if len(shape) != 3:
        return None
    mod = prunable_layers(prepared.model)[name]
    info = prepared.infos[name]
    C, H, W = shape
    mask = report.result.plans[name].mask
    vals = report.result.plans[name].values
    if info.kind == "linear":
        if info.fan_in != C * H * W:
            return None
        dense = np.full((C, H, W), float(info.out_units))
        kept = mask.reshape(info.out_units, C, H, W).sum(0).float().numpy()
        wsum = vals.reshape(info.out_units, C, H, W).abs().sum(0).float().numpy()
        return dense.sum(0), kept.sum(0), wsum.sum(0)
    if mod.in_channels != C:
        return None
    with torch.no_grad():
        x = torch.zeros(1, C, H, W)
        out = Fn.conv2d(x, mod.weight.detach().cpu(), None, mod.stride, mod.padding, mod.dilation)
        ones = torch.ones_like(out)

        def back(weight):
            full = Fn.conv_transpose2d(ones, weight.float(), None, mod.stride, mod.padding, 0, 1, mod.dilation)
            return full[0, :, :H, :W].sum(0).numpy()

        dense = back(torch.ones_like(mod.weight.detach().cpu()))
        kept = back(mask.float())
        wsum = back(vals.abs().float())
    return dense, kept, wsum


# ---- guarantees ----------------------------------------------------------------------------

def row_scatter_frame(report, name: str, on: str = "heldout") -> pd.DataFrame:
    """Per (unit, sign) row: its bound, the largest measured error (S or held-out) and how it was pruned."""
    plan = report.result.plans[name]
    err = (report.errors_heldout if on == "heldout" else report.errors_s)[name]
    b = plan.row_bound.reshape(-1, 2).double().numpy()
    e = err.row_error.reshape(-1, 2).double().numpy()
    meth = plan.row_method.reshape(-1, 2).numpy()
    kept = plan.row_kept.reshape(-1, 2).numpy()
    F = b.shape[0]
    frames = []
    for c in (0, 1):
        frames.append(pd.DataFrame(dict(unit=np.arange(F), sign=SIGN_NAMES[c], bound=b[:, c], measured=e[:, c],
                                        method=[ROW_METHOD_NAMES.get(int(m), str(m)) for m in meth[:, c]],
                                        kept=kept[:, c])))
    return pd.concat(frames, ignore_index=True)


def guarantee_frame(report) -> pd.DataFrame:
    """Long table: per layer, the largest bound, the mean bound, and measured errors on S / held-out."""
    recs = []
    for row in report.layer_rows():
        for series, key in (("largest row bound", "bound"), ("mean row bound", "bound_mean"),
                            ("measured max on S", "measured_max_s"), ("measured max held-out", "measured_max_heldout"),
                            ("measured p95 held-out", "measured_p95_heldout")):
            recs.append(dict(layer=row["label"], series=series, value=as_float(row[key])))
    return pd.DataFrame(recs)


def failure_frame(report) -> pd.DataFrame:
    recs = []
    labels = layer_labels(report)
    for name in layer_names(report):
        for on, errs in (("on S", report.errors_s), ("held-out", report.errors_heldout)):
            e = errs[name]
            rate = as_float(e.failure_rate)
            recs.append(dict(layer=labels[name], points=on, failure_rate=rate, pairs=int(e.pairs),
                             failures=0 if math.isnan(rate) else int(round(rate * e.pairs))))
    return pd.DataFrame(recs)


def sweep_frame(reports: dict) -> pd.DataFrame:
    """{eps: Report} -> one row per eps with keep ratio, largest bound and largest measured errors."""
    recs = []
    for eps, rep in sorted(reports.items()):
        h = headline(rep)
        recs.append(dict(eps=float(eps), keep_ratio=h["keep_ratio"], bound_max=h["bound_max"],
                         measured_max_heldout=h["measured_max_heldout"], measured_max_s=h["measured_max_s"],
                         accuracy_after=h["accuracy_after"], failed_pairs_heldout=h["failed_pairs_heldout"],
                         pairs_heldout=h["pairs_heldout"]))
    return pd.DataFrame(recs)
