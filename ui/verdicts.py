"""The "Verdict" callout of each analysis page: one or a few sentences computed from the numbers the page shows.

Pure functions of plain numbers and DataFrames (no Streamlit), so a test can build a case, compute the
sentence and check that every number in it is the one in the table beside it. Each returns a list of
Markdown sentences (empty when the numbers say nothing yet); ``ui.show_verdict`` in the views renders them.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

TOL = 1e-6  # a measured error this close above its bound is rounding, not a failure (float32 sums)
# Failing sampled rows are put down to δ only when δ times the sampled rows checked is at least this (a 0.1% chance
# of any failure); below, even one failure is more than the guarantee allows, and the verdict says so.
RARE = 1e-3


def _finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def pct(v: float, digits: int = 1) -> str:
    return f"{100 * v:.{digits}f}%"


def rate_pct(v: float) -> str:
    """A rate as a percentage, never rounded to a zero it is not: 1.40%, 0.12%, 0.0027% (8 of 300,000)."""
    return f"{100 * v:.2f}%" if v == 0 or 100 * v >= 0.1 else f"{100 * v:.2g}%"


def times(v: float) -> str:
    """A factor: 24× for large ones, 2.4× below 10, 1.3× near 1."""
    return f"{v:.0f}×" if v >= 10 else f"{v:.1f}×"


def pts(v: float) -> str:
    return f"{v:.1f}"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


# ---- Prune -----------------------------------------------------------------------------------------

def prune_verdict(h: dict) -> list[str]:
    """From tables.headline(report): what pruning cost in accuracy and agreement, and how the bound compares."""
    out = []
    drop = 100 * (h["accuracy_before"] - h["accuracy_after"])
    change = (f"lost **{pts(drop)} points** of accuracy ({pct(h['accuracy_before'])} → {pct(h['accuracy_after'])})"
              if drop >= 0.05 else
              f"gained {pts(-drop)} points of accuracy ({pct(h['accuracy_before'])} → {pct(h['accuracy_after'])})"
              if drop <= -0.05 else f"kept its accuracy ({pct(h['accuracy_before'])} → {pct(h['accuracy_after'])})")
    out.append(f"Keeping **{pct(h['keep_ratio'], 2)}** of the weights, {h['method']} {change}, without retraining; "
               f"the pruned network gives the original's class on {pct(h['agreement'])} of "
               f"{h['test_points']:,} test points.")
    empty = list(h.get("empty_layers") or [])
    if empty:  # the output no longer depends on the input: no bound on the rows says anything about the network
        out.append(f"**{len(empty)} of {h.get('layers', len(empty))} layers keep no weight** "
                   f"({', '.join(empty[:3])}{', …' if len(empty) > 3 else ''}): the network outputs the same for "
                   "every input, so its bounds describe nothing useful.")
        return out
    failed = int(h.get("failed_pairs_heldout") or 0)
    if h.get("has_bound") and failed:
        where = ", ".join(h.get("failed_layers_heldout") or [])
        out.append(f"On held-out points **{failed:,} of {int(h['pairs_heldout']):,}** (row, point) pairs exceeded "
                   f"their row's bound" + (f" (in {where})" if where else "")
                   + ": the Guarantees page shows which rows and why.")
    elif h.get("has_bound") and _finite(h["bound_max"]) and _finite(h["measured_max_heldout"]):
        b, m = float(h["bound_max"]), float(h["measured_max_heldout"])
        if m <= TOL and b <= TOL:  # nothing to be below: every row kept whole, or kept all with s > 0 on S
            out.append("The measured error on held-out points is 0, and so is the largest bound: every row kept all "
                       "of its weights that S shows any signal through.")
        elif m <= b + TOL and b >= 1:
            out.append(f"The largest measured error on held-out points ({m:.3g}) stays below the largest bound "
                       f"({b:.3g}), but a bound of 1 or more allows an error as large as the row's whole signal: the "
                       "Guarantees page counts the rows whose bound says something.")
        elif m <= b + TOL:
            ratio = b / m if m > 0 else math.inf
            loose = (f"the largest bound is about {times(ratio)} the largest error" if math.isfinite(ratio)
                     else "with no measured error at all")
            out.append(f"The largest measured error on held-out points ({m:.3g}) stays below the largest bound "
                       f"({b:.3g}): {loose}.")
        else:
            out.append(f"The largest measured error on held-out points ({m:.3g}) is above the largest bound "
                       f"({b:.3g}); the Guarantees page shows which rows and how often.")
    elif not h.get("has_bound"):
        out.append(f"{h['method']} gives no bound: only the measured error ({float(h['measured_max_heldout']):.3g} "
                   "at most, held-out) describes it.")
    return out


# ---- Guarantees --------------------------------------------------------------------------------------

def bound_rows_verdict(rows: pd.DataFrame, on: str = "held-out points", delta: float | None = None) -> list[str]:
    """Per-row check of the guarantee: rows has columns bound and measured (one row per unit and sign).

    Counts the rows with a finite bound, how many held (measured <= bound), and how loose the bound is:
    the median of bound / measured over rows whose bound held with a positive measured error and a
    positive bound (kept-whole rows have bound 0 and error 0 and say nothing about looseness)."""
    b = pd.to_numeric(rows["bound"], errors="coerce").to_numpy(dtype=float)
    m = pd.to_numeric(rows["measured"], errors="coerce").to_numpy(dtype=float)
    ok = np.isfinite(b) & np.isfinite(m)
    n = int(ok.sum())
    if n == 0:
        return ["No row carries a bound here: this method gives no guarantee, so only the measured error is shown."]
    held = ok & (m <= b + TOL)
    k = int(held.sum())
    # a deterministic or entirely pruned row's error is at most its whole signal (1): a bound of 1 or more holds
    # whatever happens, and says nothing
    methods = rows["method"].to_numpy() if "method" in rows else np.array([None] * len(rows))
    vacuous = ok & (b >= 1) & np.isin(methods, ["deterministic", "pruned entirely"])
    n_vac = int(vacuous.sum())
    ratio_ok = held & ~vacuous & (m > 0) & (b > 0)
    where = f"rows, measured on {on}"
    if n_vac == n:
        return [f"The bound held on all {n:,} {where}, but **every one of these bounds is 1 or more**, which says "
                "nothing for these rows: a deterministic or entirely pruned row's error is at most 1 anyway."]
    if k == n:
        head = f"The bound **held on all {n:,} {where}**"
    else:
        head = f"The bound **held on {k:,} of {n:,} {where}**; {_plural(n - k, 'row')} exceeded it"
        failed = ok & ~held
        kinds = methods[failed]
        det, sam, whole = (int((kinds == k).sum()) for k in ("deterministic", "sampled", "kept all with s > 0"))
        why = []
        if whole:  # LeNet-5's fc3: 24 of its 84 inputs are zero on every digit of S
            why.append(f"{whole} kept every weight that carried signal on S: the weights they dropped read inputs "
                       "that were zero on every point of S, so the bound could not see them")
        if det:
            why.append(f"{det} deterministic: their bound is guaranteed on the points of S only")
        if sam and delta:
            n_sampled = int((methods[ok] == "sampled").sum())
            if delta * n_sampled < RARE:
                why.append(f"{sam} sampled: more than δ = {delta:g} allows; their bound rests on the shares seen on "
                           "S, and a new point can give an input a larger share than every point of S did")
            else:
                why.append(f"{sam} sampled: each may, with probability up to δ = {delta:g}")
        if not det and not sam and not whole and delta:
            why.append(f"sampled rows may, with probability up to δ = {delta:g} each")
        head += f" ({'; '.join(why)})" if why else ""
    if ratio_ok.any():
        r = float(np.median(b[ratio_ok] / m[ratio_ok]))
        head += (f", and it is **loose by about {times(r)}** (median of bound ÷ measured error over the "
                 f"{int(ratio_ok.sum()):,} rows with an error" + (", leaving out the rows below" if n_vac else "")
                 + ")")
    out = [head + "."]
    if n_vac:
        out.append(f"**{n_vac:,} of the {n:,} rows** are deterministic or pruned entirely with a bound of 1 or more, "
                   "which says nothing: such a row's error is at most 1 anyway, so for them the bound held "
                   "trivially.")
    return out


def eps_sweep_verdict(df: pd.DataFrame) -> list[str]:
    """From tables.sweep_frame: how the keep ratio and the bound move with ε."""
    d = df.dropna(subset=["eps", "keep_ratio"]).sort_values("eps")
    if len(d) < 2:
        one = "One value of ε: give two or more to see how the kept share and the bound move with it."
        return [one] if len(d) else []
    lo, hi = d.iloc[0], d.iloc[-1]
    k0, k1, b0, b1 = pct(lo["keep_ratio"], 2), pct(hi["keep_ratio"], 2), f"{lo['bound_max']:.3g}", f"{hi['bound_max']:.3g}"
    kept = f"the kept share stays at {k0}" if k0 == k1 else f"the kept share falls from {k0} to {k1}"
    bound = f"the largest bound stays at {b0}" if b0 == b1 else f"the largest bound grows from {b0} to {b1}"
    out = [f"From ε = {lo['eps']:g} to ε = {hi['eps']:g} {kept} and {bound}."]
    # row by row: the largest error below the largest bound would hide a row that broke its own bound
    bad = d[d["failed_pairs_heldout"] > 0]
    if bad.empty:
        out.append(f"At every ε, every held-out (row, point) pair stayed within its row's bound ({len(d)} of "
                   f"{len(d)} values).")
    else:
        worst = bad.loc[bad["failed_pairs_heldout"].idxmax()]
        out.append(f"At {len(bad)} of {len(d)} values of ε (ε = {', '.join(f'{e:g}' for e in bad['eps'])}) some "
                   f"held-out (row, point) pairs exceeded their row's bound: at most "
                   f"{int(worst['failed_pairs_heldout']):,} of {int(worst['pairs_heldout']):,} (at ε = "
                   f"{worst['eps']:g}); set ε to one of these values in the sidebar and the Verdict at the top of the "
                   "page says which rows and why.")
    return out


# ---- Sensitivity -------------------------------------------------------------------------------------

def sensitivity_verdict(layer: str, weight: np.ndarray, sens: np.ndarray, kept: np.ndarray | None,
                        method: str, top_share: float = 0.1) -> list[str]:
    """How sensitivity and magnitude rank one layer's edges, and what the kept edges carry.

    Over the nonzero weights: of the top ``top_share`` by |w|, the share also in the top ``top_share`` by s;
    and the share of the layer's total sensitivity on the kept edges."""
    return rank_verdict(layer, weight, sens, top_share) + kept_verdict(weight, sens, kept, method)


def rank_verdict(layer: str, weight: np.ndarray, sens: np.ndarray, top_share: float = 0.1) -> list[str]:
    """sensitivity_verdict's first sentence: whether |w| and s rank the layer's edges alike (no mask: the app
    caches it per layer, since sorting a layer's edges twice is most of the verdict's cost)."""
    w = np.abs(np.asarray(weight, dtype=float)).ravel()
    s = np.asarray(sens, dtype=float).ravel()
    live = w > 0
    n = int(live.sum())
    if n == 0:
        return []
    w, s = w[live], s[live]
    k = max(1, int(round(top_share * n)))
    top_w = set(np.argsort(-w, kind="stable")[:k].tolist())
    top_s = set(np.argsort(-s, kind="stable")[:k].tolist())
    shared = len(top_w & top_s)
    both = shared / k
    count = f"{shared:,} of {k:,} ({pct(both, 0)})"  # "7%" alone hid that it was 1 edge of 15
    return [f"In `{layer}`, of the {k:,} edges with the largest |w| ({pct(top_share, 0)} of {n:,}), only "
            f"**{count}** are also among the {k:,} most sensitive: sensitivity and magnitude rank edges "
            f"differently." if both < 0.9 else
            f"In `{layer}`, of the {k:,} edges with the largest |w| ({pct(top_share, 0)} of {n:,}), **{count}** "
            f"are also among the {k:,} most sensitive: here magnitude and sensitivity mostly agree."]


def kept_verdict(weight: np.ndarray, sens: np.ndarray, kept: np.ndarray | None, method: str) -> list[str]:
    """sensitivity_verdict's second sentence: the share of the layer's total sensitivity on the kept edges."""
    live = (np.asarray(weight) != 0).ravel()
    s = np.asarray(sens, dtype=float).ravel()[live]
    if kept is None or not live.any() or s.sum() <= 0:
        return []
    kp = np.asarray(kept).ravel()[live].astype(bool)
    return [f"The {kp.sum():,} edges {method} kept ({pct(kp.mean())} of the layer) carry "
            f"**{pct(float(s[kp].sum() / s.sum()))}** of its total sensitivity."]


# ---- Kept edges ----------------------------------------------------------------------------------------

def kept_units_verdict(layer: str, kept_per_unit: np.ndarray, fan_in: int) -> list[str]:
    """How evenly one layer's kept edges spread over its output units (counts per unit, out of fan_in each)."""
    k = np.asarray(kept_per_unit, dtype=float).ravel()
    if k.size == 0 or fan_in <= 0:
        return []
    empty = int((k == 0).sum())
    if k.min() == k.max():  # not "between 25 and 25"
        line = (f"In `{layer}`, every unit keeps {int(k.min()):,} of its {fan_in:,} inputs "
                f"({pct(float(k.sum()) / (k.size * fan_in))} of the layer)")
    else:
        line = (f"In `{layer}`, units keep between {int(k.min()):,} and {int(k.max()):,} of their {fan_in:,} inputs "
                f"(median {np.median(k):g}, {pct(float(k.sum()) / (k.size * fan_in))} of the layer)")
    line += (f"; **{empty} of {k.size} units kept no edge** and output only their bias." if empty else
             "; every unit kept at least one edge.")
    return [line]


# ---- Trade-offs ---------------------------------------------------------------------------------------

def _span(d: np.ndarray) -> str:
    lo, hi = float(np.min(d)), float(np.max(d))
    return f"by {pts(lo)} points" if round(lo, 1) == round(hi, 1) else f"by {pts(lo)} to {pts(hi)} points"


def short_list(items: list[str], most: int = 8) -> str:
    """Items joined by commas, the middle ones left out past `most` ("0.9, 0.802, 0.715, …, 0.0123, 0.01")."""
    if len(items) <= most:
        return ", ".join(items)
    head = most // 2 + most % 2
    return ", ".join(items[:head]) + ", …, " + ", ".join(items[-(most - head):])


def compare_methods(agg: pd.DataFrame, value: str = "acc_pct", what: str = "accuracy") -> list[str]:
    """From charts.tradeoffs.aggregate (mean over seeds per method and keep ratio asked): the best method
    by mean ``value`` over the keep ratios all methods ran, then how it compares with each other method.

    "A beats B at every tested keep ratio, by a to b points", or at k of n ratios, or "ties"."""
    d = agg.dropna(subset=[value])
    if d.empty or d["method"].nunique() < 2:
        return []
    piv = d.pivot_table(index="keep_ratio_requested", columns="method", values=value, aggfunc="mean")
    piv = piv.dropna(axis=0, how="any").sort_index(ascending=False)
    if len(piv) == 0:
        return []
    order = list(dict.fromkeys(d["method"]))  # the sweep's own method order breaks ties
    best = max(piv.columns, key=lambda c: (float(piv[c].mean()), -order.index(c)))
    n = len(piv)
    ratios = short_list([f"{r:.3g}" for r in piv.index])
    out = [f"Best {what} on average over the {n} keep ratio{'s' if n > 1 else ''} every method ran ({ratios}): "
           f"**{best}** ({float(piv[best].mean()):.1f}%)."]
    for m in sorted((c for c in piv.columns if c != best), key=lambda c: -float(piv[c].mean())):
        diff = (piv[best] - piv[m]).to_numpy(dtype=float)
        wins = diff > 0.05
        if wins.all():
            where = "at every tested keep ratio" if n > 1 else f"at keep ratio {piv.index[0]:g}"
            out.append(f"{best} beats {m} {where}, {_span(diff)}.")
        elif not (diff < -0.05).any() and not wins.any():
            out.append(f"{best} and {m} tie within 0.05 points at every tested keep ratio.")
        else:
            won = [f"{r:g}" for r, w in zip(piv.index, wins) if w]
            lost = [f"{r:g}" for r, x in zip(piv.index, diff) if x < -0.05]
            line = f"{best} beats {m} at {len(won)} of {n} keep ratios"
            if lost:
                line += f"; {m} is ahead at {', '.join(lost)}, by up to {pts(float(-diff.min()))} points"
            out.append(line + ".")
    return out


def potential_verdict(pp: pd.DataFrame, drop_pts: float) -> list[str]:
    """From sweeps.prune_potential: which method prunes the most within the accuracy drop, and by how much."""
    if pp is None or pp.empty:
        return []
    ok = pp.dropna(subset=["max_pruned_share"])
    if ok.empty:
        return [f"No method stays within a {drop_pts:g}-point drop at any keep ratio of the grid: allow a larger "
                "drop or add larger keep ratios."]
    top = ok.sort_values("max_pruned_share", ascending=False, kind="stable").iloc[0]
    share = pct(float(top["max_pruned_share"]))
    tied = [str(m) for m, v in zip(ok["method"], ok["max_pruned_share"]) if pct(float(v)) == share]
    who = " and ".join(f"**{m}**" for m in tied)
    line = (f"Within a {drop_pts:g}-point accuracy drop, {who} prune{'s' if len(tied) == 1 else ''} the most: "
            f"**{share}** of the weights (keep ratio {float(top['keep_ratio_requested']):g}).")
    none = [str(m) for m in pp.loc[pp["max_pruned_share"].isna(), "method"]]
    if none:
        line += f" {', '.join(none)} drop{'s' if len(none) == 1 else ''} more than that at every keep ratio tried."
    return [line]


# ---- Retraining ---------------------------------------------------------------------------------------

def cascade_verdict(steps: list[dict], dense_acc: float) -> list[str]:
    """Prune and fine-tune steps: where the last step ends against dense, and what fine-tuning recovered."""
    if not steps or not _finite(dense_acc):
        return []
    last = steps[-1]
    after, ft = float(last["accuracy_pruned"]), float(last["accuracy_finetuned"])
    gap = 100 * (dense_acc - ft)
    rel = (f"{pts(gap)} points below" if gap >= 0.05 else f"{pts(-gap)} points above" if gap <= -0.05 else "level with")
    return [f"At {pct(float(last['keep_ratio']), 2)} of the weights, fine-tuning brings accuracy to **{pct(ft)}**, "
            f"{rel} the dense network ({pct(dense_acc)}); right after pruning it was {pct(after)}, so "
            f"fine-tuning recovered **{pts(100 * (ft - after))} points**."]


def isolation_verdict(ticket: dict, random: dict | None, dense_acc: float) -> list[str]:
    """Mask trained in isolation: the method's mask against a random mask with the same count, and dense."""
    if not ticket or not _finite(ticket.get("accuracy")):
        return []
    t = float(ticket["accuracy"])
    line = f"Trained with its mask at {pct(float(ticket['keep_ratio']), 2)} of the weights, the method reaches **{pct(t)}**"
    if random and _finite(random.get("accuracy")):
        r = float(random["accuracy"])
        diff = 100 * (t - r)
        line += (f", **{pts(diff)} points above** a random mask with the same count ({pct(r)})" if diff >= 0.05 else
                 f", **{pts(-diff)} points below** a random mask with the same count ({pct(r)})" if diff <= -0.05
                 else f", the same as a random mask with the same count ({pct(r)})")
    if _finite(dense_acc):
        g = 100 * (dense_acc - t)
        line += (f"; {pts(g)} points below the dense network ({pct(dense_acc)})" if g >= 0.05 else
                 f"; {pts(-g)} points above the dense network ({pct(dense_acc)})" if g <= -0.05 else
                 f"; level with the dense network ({pct(dense_acc)})")
    return [line + "."]


# ---- Nonsmoothness ------------------------------------------------------------------------------------

def smp_verdict(before: dict, after: dict, keep_ratio: float) -> list[str]:
    """From Nonsmoothness.summary() of both networks: SMP, its scale (the logits' variation along the
    path) and the scale-free SMP, with the reason SMP moved."""
    s0, s1 = float(before["smp"]), float(after["smp"])
    r0, r1 = float(before.get("relative_smp", math.nan)), float(after.get("relative_smp", math.nan))
    v0, v1 = float(before.get("logit_variation", math.nan)), float(after.get("logit_variation", math.nan))
    if not (_finite(s0) and _finite(s1)) or s0 <= 0:
        return []
    direction = "lowered" if s1 < s0 else "raised"
    line = f"Pruning to {pct(keep_ratio, 1)} {direction} output SMP from **{s0:.3g} to {s1:.3g}**"
    if not (_finite(r0) and _finite(r1) and _finite(v0) and _finite(v1)) or v0 <= 0 or r0 <= 0:
        return [line + "."]
    scale = v1 / v0
    rel = r1 / r0
    smp_ratio = s1 / s0
    # which factor moved SMP more: the logits' scale or the kinks relative to it (SMP = relative SMP × variation)
    if abs(math.log(scale)) >= abs(math.log(rel)):
        why = (f"mostly because the logits shrank (their variation along the path fell from {v0:.3g} to {v1:.3g})"
               if scale < 1 else
               f"mostly because the logits grew (their variation along the path rose from {v0:.3g} to {v1:.3g})")
    else:
        why = "mostly because the kinks changed relative to the logits' size"
    # The relative figure is each path's SMP over its own variation, then averaged: not the ratio of the two means
    # above, which a reader would otherwise compute and find different
    paths = after.get("paths")
    per = f"each path's SMP over its variation, averaged over the {int(paths)} paths" if paths else \
        "each path's SMP over its variation, averaged over the paths"
    line += f", {why}: relative to their size ({per}), SMP went from **{r0:.3g} to {r1:.3g}**"
    line += (" (more kinked)." if r1 > r0 * 1.05 else " (less kinked)." if r1 < r0 / 1.05 else " (about the same).")
    out = [line]
    if smp_ratio < 1 < rel:
        t0, t1 = (float(d.get("region_transitions", math.nan)) for d in (before, after))
        more = "So the pruned network is smaller in scale but relatively more kinked"
        if _finite(t0) and _finite(t1) and t1 > t0:
            more += f"; a path also crosses more linear regions in it ({t0:.1f} → {t1:.1f} region transitions, mean)."
        elif _finite(t0) and _finite(t1) and t1 < t0:
            more += (f", although a path crosses fewer linear regions in it ({t0:.1f} → {t1:.1f} region transitions, "
                     "mean).")
        else:
            more += "."
        out.append(more)
    return out


def propagation_verdict(rows: list[dict], network: str = "the original network") -> list[str]:
    """From Nonsmoothness.propagation_rows() of one network: measured ÷ predicted per Linear/Conv stage.

    The linear rule is an upper bound: equal when no two inputs' kinks coincide; below it where kinks
    coincide and partly cancel, because one unit's zero crossing reaches every output through weights of
    both signs."""
    lin = [r for r in rows if r["kind"] in ("linear", "conv2d") and _finite(r["smp_predicted"]) and r["smp_predicted"] > 0
           and _finite(r["smp"])]
    if not lin:
        return []
    ratios = [(r["layer"], float(r["smp"]) / float(r["smp_predicted"])) for r in lin]
    lowest = min(ratios, key=lambda x: x[1])
    last = ratios[-1]
    span = (f"measured SMP is between {pct(min(x[1] for x in ratios), 0)} and {pct(max(x[1] for x in ratios), 0)} "
            f"of it" if len(ratios) > 1 else f"measured SMP is {pct(ratios[0][1], 0)} of it")
    line = f"The rule for Linear and Conv layers is an **upper bound**; in {network}, {span}"
    if len(ratios) > 1:
        line += f", lowest at `{lowest[0]}`" + (" (the output layer)" if lowest[0] == last[0] else "")
    line += "."
    if last[1] < 0.9:
        line += (f" At the output layer `{last[0]}` the prediction is about {times(1 / last[1])} the "
                 "measurement.")
    line += (" It falls below wherever kinks of different inputs coincide: one ReLU's zero crossing reaches every "
             "unit of the next layer at the same point t, through weights of both signs, so the slope jumps partly "
             "cancel instead of adding.")
    over = [(n, r) for n, r in ratios if r > 1 + 1e-6]
    if over:  # the rule holds for the true slope jumps; the measurement counts kinks above each signal's own floor
        line += (f" At {', '.join(f'`{n}` ({pct(r, 0)})' for n, r in over)} the measurement is above it: each signal's "
                 "kinks are counted only above that signal's own noise floor, so kinks too small to count on a "
                 "layer's inputs can add up to one that counts on its output.")
    return [line]
