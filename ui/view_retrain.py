"""Retraining: prune-retrain cascades and training in isolation (lottery tickets), from sipp_core.jobs.retrain.

Both run as background jobs (ui/jobs.py): progress with the engine's time-left estimate, a Cancel button
(the engine stops after the current batch and returns the finished steps / epochs), and an estimate
before starting, from a short timing of this network's training steps on this machine. Training runs
on the sidebar's device (GPU when present with "auto"); pruning and sensitivities on the CPU. Finished
runs are cached for all sessions and saved to the run history (cancelled ones too, marked).
"""
from __future__ import annotations

import json
import math
import time

import pandas as pd
import streamlit as st

from ui import charts_tradeoffs as ct
from ui import engine, jobs, show
from ui.settings import METHOD_LABELS, Settings, fmt_num
from ui.sidebar import BIND, current_settings
from ui.view_common import describe, show_error

CASCADE_JOB, ISOLATION_JOB = "_job_cascade", "_job_isolation"
DEFAULT_SCHEDULE = "0.5, 0.2, 0.1, 0.05, 0.02"
ISO_KEEP = [0.5, 0.2, 0.1, 0.05, 0.02, 0.01]
PRUNE_AT = {"trained": "the trained network (lottery ticket)", "init": "the initial weights θ₀ (prune at initialisation)"}
SCOPES = {"layerwise": "same kept count in every layer (default)", "global": "same total count, anywhere"}
INTRO = ("Pruning without retraining (the other pages) shows what the **mask** keeps. Here the pruned network "
         "trains: either **fine-tuned** after each pruning step of a schedule, or **trained from its starting "
         "weights** with the mask fixed, against a random mask with the same counts (the lottery-ticket test).")


@st.cache_resource(show_spinner=False)
def _results() -> engine.Store:
    """Finished (not cancelled) retraining runs, shared by all sessions (never mutated)."""
    return engine.Store(16, 256 * 2**20)


def parse_schedule(text: str) -> tuple[float, ...]:
    """'0.5, 0.2, 0.1' -> (0.5, 0.2, 0.1); ValueError with the fix for anything else."""
    try:
        vals = tuple(float(v) for v in str(text).replace(";", ",").split(",") if v.strip())
    except ValueError as exc:
        raise ValueError(f"the schedule must be keep ratios separated by commas, e.g. {DEFAULT_SCHEDULE}; "
                         f"got {text!r}") from exc
    if not vals:
        raise ValueError(f"give at least one keep ratio, e.g. {DEFAULT_SCHEDULE}")
    if any(not (0 < v <= 1) or math.isnan(v) for v in vals):
        raise ValueError(f"keep ratios must lie in (0, 1]; got {', '.join(f'{v:g}' for v in vals)}")
    if any(b >= a for a, b in zip(vals, vals[1:])):
        raise ValueError(f"the schedule must decrease (each step prunes further); got {', '.join(f'{v:g}' for v in vals)}")
    return vals


@st.cache_data(show_spinner=False, max_entries=32, ttl=600)
def measured_epoch_seconds(model: str, dataset: str, device: str, threads: int) -> float:
    """Seconds per masked-training epoch (batch 64) with its test evaluation: sipp_core's own train_masked,
    timed now on a slice of the training split (a fraction of a second), scaled to the full split."""
    import types

    import torch

    from sipp_core.jobs.retrain import train_masked
    from sipp_core.zoo.layers import prunable_layers
    from sipp_core.zoo.models import build_model
    from sipp_core.zoo.train import accuracy

    rec = engine.load_record(dataset)
    net = build_model(model, rec.input_shape, rec.num_classes, seed=0)
    gen = torch.Generator().manual_seed(0)
    masks = {n: torch.rand(m.weight.shape, generator=gen) < 0.5 for n, m in prunable_layers(net).items()}

    def part(n_train: int, n_test: int):
        return types.SimpleNamespace(x_train=rec.x_train[:n_train], y_train=rec.y_train[:n_train],
                                     x_test=rec.x_test[:n_test], y_test=rec.y_test[:n_test])

    train_masked(net, masks, part(64, 64), epochs=1, device=device)  # warm-up (allocations, kernels)
    n = min(len(rec.x_train), 64 * (8 if model in engine.LIGHT_MODELS else 3))
    log = train_masked(net, masks, part(n, 8), epochs=1, device=device)
    t0 = time.perf_counter()
    accuracy(net, rec.x_test, rec.y_test)
    eval_s = time.perf_counter() - t0
    per_batch = max(log.seconds, 1e-6) / math.ceil(n / 64)
    return per_batch * math.ceil(len(rec.x_train) / 64) + eval_s


@st.cache_resource(show_spinner=False)
def _observed() -> dict:
    """(model, dataset, device) -> seconds per epoch seen in the last finished run (all sessions)."""
    return {}


def epoch_seconds(s: Settings, button_key: str) -> tuple[float, str] | None:
    """Seconds per training epoch for the estimate, and where the number comes from.

    Small zoo networks are timed at once; a large one (seconds per batch on a CPU) only after a click,
    so opening the page never stalls. None while that click is pending, or after an error (shown)."""
    seen = _observed().get((s.model, s.dataset, s.device))
    if seen:
        return seen, "seen in the last run"
    if s.model not in engine.LIGHT_MODELS and not st.session_state.get(f"_timed_{s.model}_{s.dataset}_{s.device}"):
        if not st.button("Estimate the time", key=button_key, icon=":material/timer:",
                         help="Times a few training steps of this network on this machine."):
            st.caption(f"{s.model} is a large network: press **Estimate the time** before starting (a few seconds).")
            return None
        st.session_state[f"_timed_{s.model}_{s.dataset}_{s.device}"] = True
    try:
        with st.spinner("Timing a few training steps…"):
            return measured_epoch_seconds(s.model, s.dataset, s.device, _threads()), "timed on this machine"
    except Exception as exc:  # noqa: BLE001 - shown with its fix; the page stays up
        show_error(exc)
        return None


def _observe(observed: dict, key: tuple, result) -> None:
    """Remember the seconds per epoch a finished run took (runs in the worker; plain dict write)."""
    try:
        if hasattr(result, "steps"):
            ep = sum(st_["epochs"] for st_ in result.steps)
            secs = sum(st_["finetune_s"] for st_ in result.steps)
        else:
            runs = [d for d in (result.ticket, result.random) if d and d.get("epochs")]
            ep = sum(d["epochs"] for d in runs)
            secs = sum(d["seconds"] for d in runs)
        if ep:
            observed[key] = secs / ep
    except (AttributeError, KeyError, TypeError):
        pass


def _prune_seconds(s: Settings) -> float:
    p = engine.peek_prepared(s)
    return float(p.timings_s.get("sensitivity", 1.0)) + 0.3 if p is not None else 1.5


def _has_checkpoint(model: str, dataset: str, epochs: int, seed: int) -> bool:
    from sipp_core.io.checkpoints import ASSETS_DIR, cache_dir, checkpoint_name

    name = checkpoint_name(model, dataset, int(epochs), int(seed))
    return (ASSETS_DIR / name).exists() or (cache_dir() / name).exists()


def _device_words(s: Settings) -> str:
    try:
        return engine.resolve_device(s.device)[1]
    except ValueError as exc:
        return str(exc)


def _start(job_key: str, kind: str, label: str, key: tuple, fn, est: float, s: Settings) -> None:
    """Start the job (store, history and the epoch-time memory are looked up here, in the script thread)."""
    from ui.view_history import history, saver

    save, store, observed = saver(history()), _results(), _observed()

    def on_done(job):
        res = job.result
        if res is not None and not res.cancelled:
            store.get_or_build(key, lambda: res)
        if res is not None:
            _observe(observed, (s.model, s.dataset, s.device), res)
        save(job)

    st.session_state[job_key + "_key"] = key
    jobs.start(job_key, kind, label, fn, on_done=on_done, estimate_s=est)
    st.rerun()  # redraw with the start button off and the progress bar on


def _result_for(job_key: str, key: tuple):
    """(result, from_cache, note) for the current settings: a cached run, or this session's last job."""
    cached = _results().peek(key)
    job = jobs.get(job_key)
    if job is not None and job.done and job.result is not None:
        if st.session_state.get(job_key + "_key") == key:
            return job.result, False, None
        if cached is None:
            return job.result, False, "Showing your last run: its settings differ from the ones above."
    return cached, cached is not None, None


def _finished(job_key: str, key: tuple):
    """Polls the job; shows its error (for these settings), then the result's provenance and time.
    Returns the result to show, or None."""
    job = jobs.watch(job_key)
    if job is not None and job.done and job.error is not None and st.session_state.get(job_key + "_key") == key:
        show_error(job.error)
    res, from_cache, note = _result_for(job_key, key)
    if res is None:
        return None
    if note:
        st.caption(f":orange[{note}]")
    st.caption(f"Took {jobs.fmt_seconds(res.timings_s.get('total', math.nan))}" + (" (from the cache)" if from_cache else ""))
    return res


def _downloads(result, stem: str, frame: pd.DataFrame, key: str) -> None:
    d1, d2, _ = st.columns([1, 1, 3])
    d1.download_button("Table (CSV)", frame.to_csv(index=False), f"{stem}.csv", "text/csv", on_click="ignore",
                       icon=":material/download:", key=f"{key}_csv")
    d2.download_button("Run (JSON)", result if isinstance(result, str) else result.to_json(), f"{stem}.json",
                       "application/json", on_click="ignore", icon=":material/download:", key=f"{key}_json")


# ---- showing results (also used by the history page) ----------------------------------------------

def show_cascade(steps: list[dict], dense_acc: float, settings: dict, cancelled: bool = False, key: str = "rt",
                 device: str | None = None, result=None) -> None:
    if cancelled:
        st.warning(f"Cancelled: showing the {len(steps)} step(s) that finished.", icon=":material/stop_circle:")
    if not steps:
        st.info("No step finished.", icon=":material/info:")
        return
    last = steps[-1]
    c = st.columns(4)
    c[0].metric("Dense accuracy", f"{100 * dense_acc:.2f}%")
    c[1].metric("Weights kept (last step)", f"{100 * last['keep_ratio']:.2f}%")
    c[2].metric("Accuracy after fine-tuning", f"{100 * last['accuracy_finetuned']:.2f}%",
                delta=f"{100 * (last['accuracy_finetuned'] - dense_acc):+.2f} pts vs dense")
    c[3].metric("Right after pruning", f"{100 * last['accuracy_pruned']:.2f}%",
                delta=f"{100 * (last['accuracy_pruned'] - dense_acc):+.2f} pts vs dense")
    zero = all(bool(s.get("pruned_weights_zero")) for s in steps)
    st.caption((":green[Checked: pruned weights stayed exactly zero through every fine-tuning step.]" if zero else
                ":red[Pruned weights did not all stay zero: the mask was not held.]")
               + (f" Fine-tuned on {device}." if device else ""))
    show.chart(ct.cascade_chart(steps, dense_acc))
    frame = ct.cascade_frame(steps)
    num = st.column_config.NumberColumn
    st.dataframe(frame.rename(columns={"keep_ratio_requested": "keep ratio asked", "keep_ratio": "kept share",
                                       "accuracy_pruned": "accuracy after pruning",
                                       "accuracy_finetuned": "accuracy after fine-tuning",
                                       "accuracy_drop": "drop vs dense", "agreement_pruned": "agreement after pruning",
                                       "pruned_weights_zero": "pruned stay zero", "prune_s": "prune (s)",
                                       "finetune_s": "fine-tune (s)"}),
                 hide_index=True, width="stretch", key=f"{key}_table", column_config={
                     "kept share": num(format="percent"), "accuracy after pruning": num(format="percent"),
                     "accuracy after fine-tuning": num(format="percent"), "drop vs dense": num(format="percent"),
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
                "n/a" if not ct.is_finite(dense_acc) else f"{100 * dense_acc:.2f}%",
                help="Trained from the same θ₀ for the same number of epochs (the shipped checkpoint when that is "
                     "this model's default; otherwise trained here and cached). n/a: pruning at initialisation "
                     "without a trained checkpoint.")
    c[1].metric("Weights kept", f"{100 * ticket['keep_ratio']:.2f}%")
    c[2].metric("Method's mask, trained", f"{100 * ticket['accuracy']:.2f}%" if ct.is_finite(ticket.get("accuracy"))
                else "n/a")
    if random and ct.is_finite(random.get("accuracy")):
        c[3].metric("Random mask, trained", f"{100 * random['accuracy']:.2f}%",
                    delta=f"{100 * (random['accuracy'] - ticket['accuracy']):+.2f} pts vs method")
    else:
        c[3].metric("Random mask, trained", "not run")
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


# ---- the two tabs ------------------------------------------------------------------------------------

def _methods() -> list[str]:
    from sipp_core.options import METHODS

    return list(METHODS)


def _cascade_tab(s: Settings) -> None:
    from sipp_core.zoo.train import DEFAULT_LR

    methods = _methods()
    c1, c2, c3 = st.columns([1.4, 2, 1])
    method = c1.selectbox("Method", methods, index=methods.index("sipp-hybrid"), key="rt_method",
                          format_func=lambda m: f"{m}: {METHOD_LABELS.get(m, m)}", **BIND)
    text = c2.text_input("Keep-ratio schedule (decreasing)", DEFAULT_SCHEDULE, key="rt_schedule",
                         help="Keep ratios over all prunable weights of the original network.", **BIND)
    epochs = c3.number_input("Fine-tuning epochs per step", 1, 50, 2, key="rt_epochs", **BIND)
    st.caption(f"Each step prunes the current network with the method (sensitivities recomputed on its fine-tuned "
               f"weights, same S; a weight once pruned stays pruned), then fine-tunes it with the mask fixed: Adam, "
               f"lr {DEFAULT_LR:g}, batch 64, a cosine schedule **restarted at each step**. Pruned weights are "
               f"checked to be exactly zero after every step. Device: {_device_words(s)}.")
    try:
        sched = parse_schedule(text)
    except ValueError as exc:
        st.error(f"{exc}. Fix: edit the schedule, e.g. {DEFAULT_SCHEDULE}.", icon=":material/error:")
        return
    key = ("cascade", s.model, s.dataset, method, sched, int(epochs), int(s.seed),
           None if s.auto_sample else int(s.sample_size), float(s.delta), s.device)
    timing = epoch_seconds(s, "rt_estimate")
    if timing is None:
        return
    per_epoch, source = timing
    est = 1.0 + len(sched) * (int(epochs) * per_epoch + _prune_seconds(s))
    running = jobs.is_running(CASCADE_JOB)
    cached = _results().peek(key)
    b, cap = st.columns([1, 4], vertical_alignment="center")
    go = b.button("Run cascade", type="primary", key="rt_run", icon=":material/play_arrow:",
                  disabled=running or cached is not None)
    cap.caption(f"{len(sched)} steps × {int(epochs)} epoch(s): estimated **{jobs.fmt_seconds(est)}** "
                f"(one epoch here ≈ {per_epoch:.2f} s, {source})"
                + (" · this run is cached: shown below" if cached is not None else ""))
    if go and not running:
        from sipp_core.jobs.retrain import prune_retrain

        kw = dict(method=method, schedule=sched, epochs=int(epochs), seed=int(s.seed),
                  sample_size=None if s.auto_sample else int(s.sample_size), delta=float(s.delta), device=s.device)
        _start(CASCADE_JOB, "retrain", "Prune-retrain cascade", key,
               lambda progress, stop: prune_retrain(s.model, s.dataset, progress=progress, should_stop=stop, **kw), est, s)
    res = _finished(CASCADE_JOB, key)
    if res is None:
        return
    show_cascade(list(res.steps), res.dense_accuracy, res.settings, res.cancelled, key="rt", device=res.device,
                 result=res)


def _isolation_tab(s: Settings) -> None:
    from sipp_core.zoo.train import DEFAULT_EPOCHS, DEFAULT_LR

    methods = _methods()
    c1, c2, c3, c4 = st.columns([1.4, 1, 1, 1])
    method = c1.selectbox("Method (chooses the mask)", methods, index=methods.index("sipp-hybrid"), key="li_method",
                          format_func=lambda m: f"{m}: {METHOD_LABELS.get(m, m)}", **BIND)
    keep = c2.select_slider("Keep ratio", ISO_KEEP, value=0.05, format_func=fmt_num, key="li_keep", **BIND)
    epochs = c3.number_input("Training epochs", 1, 100, 5, key="li_epochs",
                             help=f"For the dense network and both masked trainings. With "
                                  f"{DEFAULT_EPOCHS.get(s.model, 30)} (this model's default) the shipped dense "
                                  "checkpoint is reused; otherwise the dense network is trained here first "
                                  "(and cached).", **BIND)
    rewind = c4.number_input("Rewind to epoch", 0, 99, 0, key="li_rewind",
                             help="0: reset kept weights to θ₀ (their initial values). k > 0: to their values after "
                                  "k dense epochs (late rewinding).", **BIND)
    c5, c6 = st.columns(2)
    prune_at = c5.radio("Choose the mask on", list(PRUNE_AT), format_func=PRUNE_AT.get, key="li_at", horizontal=True,
                        **BIND)
    scope = c6.radio("Random baseline", list(SCOPES), format_func=SCOPES.get, key="li_scope", horizontal=True, **BIND)
    st.caption(f"The kept weights go back to their starting values (the method's reweighting is discarded, only the "
               f"mask is kept) and the masked network trains: Adam, lr {DEFAULT_LR:g}, batch 64, cosine decay, the "
               f"pruned weights held at exactly zero. The random mask trains from the same start with the same "
               f"epochs, seed and batch order. Device: {_device_words(s)}.")
    problems = []
    if rewind >= epochs:
        problems.append(f"the rewind epoch ({rewind}) must be below the number of epochs ({epochs}). Fix: lower it")
    if prune_at == "init" and rewind:
        problems.append("pruning at initialisation resets to θ₀ itself. Fix: set 'Rewind to epoch' to 0")
    for p in problems:
        st.error(p[0].upper() + p[1:] + ".", icon=":material/error:")
    if problems:
        return
    key = ("isolation", s.model, s.dataset, method, float(keep), int(epochs), int(rewind), prune_at, scope,
           int(s.seed), None if s.auto_sample else int(s.sample_size), float(s.delta), s.device)
    timing = epoch_seconds(s, "li_estimate")
    if timing is None:
        return
    per_epoch, source = timing
    have = _has_checkpoint(s.model, s.dataset, int(epochs), int(s.seed))
    dense_epochs = (int(rewind) if have else (int(epochs) if prune_at == "trained" else 0))
    est = 1.0 + (dense_epochs + 2 * int(epochs)) * per_epoch + _prune_seconds(s)
    running = jobs.is_running(ISOLATION_JOB)
    cached = _results().peek(key)
    b, cap = st.columns([1, 4], vertical_alignment="center")
    go = b.button("Train in isolation", type="primary", key="li_run", icon=":material/play_arrow:",
                  disabled=running or cached is not None)
    dense_note = ("dense network from its checkpoint" if have else
                  (f"dense network trained first ({int(epochs)} epochs)" if prune_at == "trained" else "no dense training"))
    cap.caption(f"{dense_note}; {2 * int(epochs)} masked epochs (method's mask and random mask): estimated "
                f"**{jobs.fmt_seconds(est)}** (one epoch ≈ {per_epoch:.2f} s, {source})"
                + (" · this run is cached: shown below" if cached is not None else ""))
    if go and not running:
        from sipp_core.jobs.retrain import train_isolated

        kw = dict(method=method, keep_ratio=float(keep), epochs=int(epochs), rewind_epoch=int(rewind),
                  prune_at=prune_at, random_scope=scope, seed=int(s.seed),
                  sample_size=None if s.auto_sample else int(s.sample_size), delta=float(s.delta), device=s.device)
        _start(ISOLATION_JOB, "isolation", "Training in isolation", key,
               lambda progress, stop: train_isolated(s.model, s.dataset, progress=progress, should_stop=stop, **kw), est, s)
    res = _finished(ISOLATION_JOB, key)
    if res is None:
        return
    show_isolation(res.ticket, res.random, res.dense_accuracy, res.settings, res.cancelled, key="li",
                   device=res.device, result=res)


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def render() -> None:
    s = current_settings()
    st.title("Retraining")
    st.caption(describe(s) + " · the network, seed, |S|, δ and device come from the sidebar")
    st.markdown(INTRO)
    try:
        engine.resolve_device(s.device)
        engine.model_facts(s.model, s.dataset)
    except Exception as exc:  # noqa: BLE001
        show_error(exc)
        st.stop()
    cascade, isolation = st.tabs(["Prune-retrain cascade", "Train in isolation (lottery tickets)"])
    with cascade:
        _cascade_tab(s)
    with isolation:
        _isolation_tab(s)
