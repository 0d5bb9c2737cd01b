"""What the Trade-offs and Retraining pages show of a finished run, with the same functions the Run history page
uses to reopen a stored one: a sweep (charts, verdict, tables, downloads), a prune-retrain cascade, a lottery
ticket trained in isolation.
"""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from sipp_core.jobs.sweeps import ROW_FIELDS, SweepResult, prune_potential
from ui import show
from ui import verdicts as vd
from ui.charts import tradeoffs as ct
from ui.results import fmt_pct, verdict_box
from ui.sidebar import BIND

PRUNE_AT = {"trained": "the trained network (lottery ticket)", "init": "the initial weights θ₀ (prune at initialisation)"}
SCOPES = {"layerwise": "same kept count in every layer (default)", "global": "same total count, anywhere"}


# ---- a trade-off sweep ----------------------------------------------------------------------------

def cancelled_note(frame: pd.DataFrame, settings: dict) -> str:
    """What a cancelled sweep finished and what it never ran: its methods and seeds without a point."""
    asked_methods = list(settings.get("methods") or [])
    asked_seeds = list(settings.get("seeds") or [])
    ratios = list(settings.get("ratios") or [])
    total = len(asked_methods) * len(asked_seeds) * len(ratios)
    out = f"Cancelled: showing the {len(frame)}" + (f" of {total}" if total else "") + " points that finished."
    ran_m, ran_s = set(frame["method"]), set(frame["seed"])
    never = [m for m in asked_methods if m not in ran_m]
    if never:
        out += f" Never ran: {', '.join(never)}."
    seeds = [str(x) for x in asked_seeds if x not in ran_s]
    if seeds:
        out += f" Seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)} never ran."
    return out


def show_sweep(frame: pd.DataFrame, settings: dict, key: str, cancelled: bool = False, drop_bind: bool = False) -> None:
    """Charts, prune potential, tables and downloads for a sweep's rows."""
    if frame.empty:
        st.info("The sweep finished no point before it was cancelled.", icon=":material/info:")
        return
    frame = frame.reindex(columns=list(ROW_FIELDS))
    if cancelled:
        st.warning(cancelled_note(frame, settings), icon=":material/stop_circle:")
    failed = frame[frame["error"].notna()]
    if len(failed):
        st.warning(f"{len(failed)} point(s) failed and are left out of the charts, e.g. {failed.iloc[0]['method']} at "
                   f"{failed.iloc[0]['keep_ratio_requested']:g}: {failed.iloc[0]['error']}", icon=":material/warning:")
    extra = BIND if drop_bind else {}
    col, _ = st.columns([1, 2])
    drop = col.number_input("Largest acceptable accuracy drop (percentage points)", min_value=0.0, max_value=100.0,
                           value=2.0, step=0.5, format="%.2f", key=f"{key}_drop",
                           help="The prune potential is the largest pruned share whose mean accuracy (over seeds) "
                                "stays within this drop of the dense network, walking down the grid.", **extra)
    axes = ["keep", "params", "flops"] + (["latency"] if pd.to_numeric(frame["latency_ms"], errors="coerce").notna().any()
                                           else [])
    x_axis = st.radio("Accuracy against", axes, horizontal=True, key=f"{key}_x",
                      format_func={"keep": "keep ratio", "params": "parameters kept", "flops": "FLOPs kept",
                                   "latency": "measured latency"}.get,
                      help="Weight methods keep every layer's shape: their parameters and FLOPs count nonzero weights "
                           "only, and their latency is that of the dense kernels. Channel methods (pfp, filter-…) "
                           "make the network smaller, so all three are what it really costs.")
    show.chart_row([ct.accuracy_chart(frame, max_drop_pts=drop, x_axis=x_axis), ct.error_chart(frame)])
    pp = prune_potential(frame, drop / 100.0)
    verdict_box(vd.compare_methods(ct.aggregate(frame)) + vd.potential_verdict(pp, drop))
    bound = ct.bound_chart(frame)
    if bound is not None:
        show.chart_row([ct.potential_chart(pp, drop), bound])
    else:
        left, right = st.columns(2)
        show.chart(ct.potential_chart(pp, drop), left)
        right.info("None of these methods gives an error bound (only SiPP does).", icon=":material/info:")

    st.subheader("Prune potential")
    table = pd.DataFrame({
        "method": pp["method"], "largest pruned share": pp["max_pruned_share"],
        "at keep ratio": pp["keep_ratio_requested"], "kept share (realised)": pp["keep_ratio"],
        "accuracy after": pp["accuracy_after"], "accuracy drop (points)": 100 * pp["accuracy_drop"],
        "seeds": pp["seeds"]})
    num = st.column_config.NumberColumn
    show.table(table, hide_index=True, width="stretch", key=f"{key}_potential", column_config={
        "largest pruned share": num(format="percent"), "kept share (realised)": num(format="percent"),
        "at keep ratio": num(format="%.4g"), "accuracy after": num(format="percent"),
        "accuracy drop (points)": num(format="%.2f")})
    notes = [f"**{m}**: {n}." for m, n in zip(pp["method"], pp["note"]) if isinstance(n, str) and n]
    if notes:  # a sentence under the table: in a grid cell it would be cut off, or push the numbers out of sight
        st.markdown("  \n".join(notes))
    st.caption("Rule: average over seeds, walk from the largest keep ratio down, stop at the first ratio whose mean "
               "drop exceeds the limit; a lucky point further down does not count. Known only up to the grid's "
               "resolution: extend or refine the grid for a sharper answer.")

    agg = ct.aggregate(frame)
    with st.expander(f"All points ({len(frame)} rows; means over seeds below)", icon=":material/table:"):
        show.table(agg.rename(columns={
            "keep_ratio_requested": "keep ratio asked", "keep_pct": "kept % (realised)", "acc_pct": "accuracy %",
            "acc_lo": "accuracy % (lowest seed)", "acc_hi": "accuracy % (highest seed)", "err": "logits error",
            "err_lo": "logits error (lowest)", "err_hi": "logits error (highest)", "bound": "largest bound",
            "bound_lo": "largest bound (lowest)", "bound_hi": "largest bound (highest)", "agreement_pct": "agreement %",
            "drop_pts": "drop (points)", "time_ms": "time per point (ms)", "params_pct": "parameters kept %",
            "flops_pct": "FLOPs kept %", "latency_ms": "latency (ms)"}), hide_index=True, width="stretch",
            key=f"{key}_agg")
        st.caption("Per seed and point (the CSV below keeps the library's column names):")
        show.table(frame.rename(columns=POINT_COLUMNS), hide_index=True, width="stretch", key=f"{key}_rows")
    res = SweepResult(rows=tuple(frame.to_dict(orient="records")), settings=dict(settings), cancelled=cancelled)
    stem = f"sweep-{settings.get('model', 'model')}-{settings.get('dataset', 'data')}"
    d1, d2, _ = st.columns([1, 1, 3])
    d1.download_button("Points (CSV)", frame.to_csv(index=False), f"{stem}.csv", "text/csv", on_click="ignore",
                       icon=":material/download:", key=f"{key}_csv")
    d2.download_button("Sweep (JSON)", res.to_json(), f"{stem}.json", "application/json", on_click="ignore",
                       icon=":material/download:", key=f"{key}_json")


# A sweep point's fields (sweep_points.ROW_FIELDS) as the page's table heads them
POINT_COLUMNS = {
    "keep_ratio_requested": "keep ratio asked", "keep_ratio": "keep ratio (realised)", "kept": "weights kept",
    "total": "weights", "accuracy_before": "accuracy before", "accuracy_after": "accuracy after",
    "accuracy_drop": "accuracy drop", "logits_rel_error": "logits relative error", "bound_max": "largest bound",
    "measured_max_heldout": "largest error held-out", "failure_rate_heldout": "failure rate held-out",
    "params_share": "parameter share", "flops_share": "FLOP share", "latency_ms": "latency (ms)",
    "dense_latency_ms": "dense latency (ms)", "time_s": "time (s)",
}


# ---- a retraining run -----------------------------------------------------------------------------

def _downloads(result, stem: str, frame: pd.DataFrame, key: str) -> None:
    d1, d2, _ = st.columns([1, 1, 3])
    d1.download_button("Table (CSV)", frame.to_csv(index=False), f"{stem}.csv", "text/csv", on_click="ignore",
                       icon=":material/download:", key=f"{key}_csv")
    d2.download_button("Run (JSON)", result if isinstance(result, str) else result.to_json(), f"{stem}.json",
                       "application/json", on_click="ignore", icon=":material/download:", key=f"{key}_json")


def show_cascade(steps: list[dict], dense_acc: float, settings: dict, cancelled: bool = False, key: str = "rt",
                 device: str | None = None, result=None) -> None:
    if cancelled:
        st.warning(f"Cancelled: showing the {len(steps)} step(s) that finished.", icon=":material/stop_circle:")
    if not steps:
        st.info("No step finished.", icon=":material/info:")
        return
    last = steps[-1]
    c = st.columns(4)
    c[0].metric("Dense accuracy", fmt_pct(dense_acc))
    c[1].metric("Weights kept (last step)", f"{100 * last['keep_ratio']:.2f}%")
    # short deltas (what they compare with is in the label): projected at 150% zoom, "-9.90 pts vs dense" was cut
    c[2].metric("After fine-tuning (vs dense)", fmt_pct(last['accuracy_finetuned']),
                delta=f"{100 * (last['accuracy_finetuned'] - dense_acc):+.1f} points")
    c[3].metric("Right after pruning (vs dense)", fmt_pct(last['accuracy_pruned']),
                delta=f"{100 * (last['accuracy_pruned'] - dense_acc):+.1f} points")
    verdict_box(vd.cascade_verdict(steps, dense_acc))
    zero = all(bool(s.get("pruned_weights_zero")) for s in steps)
    st.caption((":green[Checked: pruned weights stayed exactly zero through every fine-tuning step.]" if zero else
                ":red[Pruned weights did not all stay zero: the mask was not held.]")
               + (f" Fine-tuned on {device}." if device else ""))
    show.chart(ct.cascade_chart(steps, dense_acc))
    frame = ct.cascade_frame(steps)
    num = st.column_config.NumberColumn
    shown = frame.assign(accuracy_drop=100 * frame["accuracy_drop"])  # points, as the verdict and the metrics say
    show.table(shown.rename(columns={"keep_ratio_requested": "keep ratio asked", "keep_ratio": "kept share",
                                       "accuracy_pruned": "accuracy after pruning",
                                       "accuracy_finetuned": "accuracy after fine-tuning",
                                       "accuracy_drop": "drop vs dense (points)",
                                       "agreement_pruned": "agreement after pruning",
                                       "pruned_weights_zero": "pruned stay zero", "prune_s": "prune (s)",
                                       "finetune_s": "fine-tune (s)"}),
                 hide_index=True, width="stretch", key=f"{key}_table", column_config={
                     "step": num(pinned=True),  # the table scrolls sideways at 1280 px, presenting
                     "kept share": num(format="percent"), "accuracy after pruning": num(format="percent"),
                     "accuracy after fine-tuning": num(format="percent"), "drop vs dense (points)": num(format="%.1f"),
                     "agreement after pruning": num(format="percent"), "prune (s)": num(format="%.2f"),
                     "fine-tune (s)": num(format="%.2f")})
    st.caption(f"Method {settings.get('method')} · schedule {', '.join(f'{v:g}' for v in settings.get('schedule', []))}"
               f" · {settings.get('epochs')} fine-tuning epoch(s) per step, Adam lr {settings.get('lr', 1e-3):g}, "
               f"batch {settings.get('batch_size', 64)}, cosine decay restarted at each step · |S| = "
               f"{settings.get('sample_size')} · seed {settings.get('seed')}")
    payload = result.to_json() if result is not None else json.dumps(dict(kind="retrain", settings=settings,
                                                                          dense_accuracy=dense_acc, steps=steps))
    _downloads(payload, f"cascade-{settings.get('model')}-{settings.get('method')}", frame, key)


def show_isolation(ticket: dict, random: dict, dense_acc: float, settings: dict, cancelled: bool = False,
                   key: str = "li", device: str | None = None, result=None) -> None:
    if cancelled:
        st.warning("Cancelled: showing the epochs that finished." if ticket else "Cancelled before any masked "
                   "training finished.", icon=":material/stop_circle:")
    if not ticket:
        return
    scope = settings.get("random_scope", "layerwise")
    rlabel = "random mask, same count per layer" if scope == "layerwise" else "random mask, same total count"
    c = st.columns(4)
    c[0].metric(f"Dense network ({settings.get('epochs')} epochs)",
                "n/a" if not ct.is_finite(dense_acc) else fmt_pct(dense_acc),
                help="Trained from the same θ₀ for the same number of epochs (the shipped checkpoint when that is "
                     "this model's default; otherwise trained here and cached). n/a: pruning at initialisation "
                     "without a trained checkpoint.")
    c[1].metric("Weights kept", f"{100 * ticket['keep_ratio']:.2f}%")
    c[2].metric("Method's mask, trained", fmt_pct(ticket['accuracy']) if ct.is_finite(ticket.get("accuracy"))
                else "n/a")
    if random and ct.is_finite(random.get("accuracy")):
        c[3].metric("Random mask, trained (vs method)", fmt_pct(random['accuracy']),
                    delta=f"{100 * (random['accuracy'] - ticket['accuracy']):+.1f} points")
    else:
        c[3].metric("Random mask, trained", "not run")
    verdict_box(vd.isolation_verdict(ticket, random, dense_acc))
    zero = all(d.get("pruned_weights_zero") in (True, None) for d in (ticket, random) if d)
    st.caption((":green[Checked: pruned weights stayed exactly zero during training.]" if zero
                else ":red[Pruned weights did not all stay zero.]") + (f" Trained on {device}." if device else ""))
    show.chart(ct.isolation_chart(ticket, random, dense_acc, random_label=rlabel))
    rewind = settings.get("rewind_epoch", 0)
    start = "θ₀, the initial weights" if not rewind else f"the weights after {rewind} dense epoch(s)"
    st.caption(f"Mask: {settings.get('method')} at keep ratio {settings.get('keep_ratio'):g}, chosen on "
               f"{PRUNE_AT.get(settings.get('prune_at'), settings.get('prune_at'))}; kept weights reset to {start}; "
               f"{settings.get('epochs')} epochs, Adam lr {settings.get('lr', 1e-3):g}, batch "
               f"{settings.get('batch_size', 64)}, cosine decay · random baseline: {SCOPES.get(scope, scope)}, same "
               f"starting weights, epochs and batch order · seed {settings.get('seed')}")
    frame = ct.isolation_frame(ticket, random)
    payload = result.to_json() if result is not None else json.dumps(dict(kind="isolation", settings=settings,
                                                                          ticket=ticket, random=random))
    _downloads(payload, f"isolation-{settings.get('model')}-{settings.get('method')}", frame, key)
