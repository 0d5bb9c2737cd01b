"""Retraining: prune-retrain cascades and training in isolation (lottery tickets), from sipp_core.jobs.retrain.

Both run as background jobs (ui/jobs.py): progress with the engine's time-left estimate, a Cancel button
(the engine stops after the current batch and returns the finished steps / epochs), and an estimate
before starting, from a short timing of this network's training steps on this machine. Training runs
on the sidebar's device (GPU when present with "auto"); pruning and sensitivities on the CPU. Finished
runs are cached for all sessions and saved to the run history (cancelled ones too, marked).
"""
from __future__ import annotations

import math
import time
import types

import streamlit as st
import torch

from sipp_core.io import checkpoints
from sipp_core.jobs.retrain import prune_retrain, train_isolated, train_masked
from sipp_core.options import METHODS
from sipp_core.zoo.layers import prunable_layers
from sipp_core.zoo.models import build_model
from sipp_core.zoo.train import DEFAULT_EPOCHS, DEFAULT_LR, accuracy
from ui import engine, jobs, ray_status, run_store
from ui.guard import describe, show_error
from ui.links import link_log, link_number, link_shown, link_slider
from ui.settings import METHOD_LABELS, Settings, fmt_num
from ui.sidebar import BIND, current_settings, page_link_problems
from ui.sweep_results import PRUNE_AT, SCOPES, show_cascade, show_isolation

CASCADE_JOB, ISOLATION_JOB = "_job_cascade", "_job_isolation"
DEFAULT_SCHEDULE = "0.5, 0.2, 0.1, 0.05, 0.02"
ISO_KEEP = [0.5, 0.2, 0.1, 0.05, 0.02, 0.01]
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
    """Seconds of one step's pruning (sensitivities on the fine-tuned weights, prune, evaluate), for the estimate:
    the network's own sensitivity time. A small network is prepared for it (a fraction of a second, shared with
    every page): without it, a page opened first on a fresh server guessed 1.5 s a step, twice the real time."""
    p = engine.peek_prepared(s)
    if p is None and engine.can_auto_prepare(s):
        try:
            p = engine.get_prepared(s)
        except Exception:  # noqa: BLE001 - only an estimate: the run itself reports the problem with its fix
            p = None
    return float(p.timings_s.get("sensitivity", 1.0)) + 0.3 if p is not None else 1.5


def _has_checkpoint(model: str, dataset: str, epochs: int, seed: int) -> bool:
    name = checkpoints.checkpoint_name(model, dataset, int(epochs), int(seed))
    # ASSETS_DIR read at call time: tests point it elsewhere
    return (checkpoints.ASSETS_DIR / name).exists() or (checkpoints.cache_dir() / name).exists()


def _device_words(s: Settings) -> str:
    try:
        return engine.resolve_device(s.device)[1]
    except ValueError as exc:
        return str(exc)


def _start(job_key: str, kind: str, label: str, key: tuple, fn, est: float, s: Settings) -> None:
    """Start the job (store, history and the epoch-time memory are looked up here, in the script thread)."""
    save, store, observed = run_store.saver(run_store.history()), _results(), _observed()

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


# ---- the two tabs ------------------------------------------------------------------------------------

# The page's two tabs, by label: a link names one by its label (rt_tab=Train in isolation (lottery tickets)).
TABS = ("Prune-retrain cascade", "Train in isolation (lottery tickets)")


def _remember_tab() -> None:
    st.session_state["_rt_tab_last"] = st.session_state.get("rt_tab")


def _methods() -> list[str]:
    return list(METHODS)


def _methods_help(methods: list[str]) -> str:
    return "; ".join(f"**{m}**: {METHOD_LABELS.get(m, m)}" for m in methods)


def _cascade_tab(s: Settings) -> None:
    methods = _methods()
    c1, c2, c3 = st.columns([1.4, 2, 1])
    # the method's own name in the box, and so in a link (rt_method=wt), as the sidebar's; its description below
    method = c1.selectbox("Method", methods, index=methods.index("sipp-hybrid"), key="rt_method",
                          help=_methods_help(methods), **BIND)
    c1.caption(METHOD_LABELS.get(method, method))
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
        kw = dict(method=method, schedule=sched, epochs=int(epochs), seed=int(s.seed),
                  sample_size=None if s.auto_sample else int(s.sample_size), delta=float(s.delta), device=s.device)
        _start(CASCADE_JOB, "retrain", "Prune-retrain cascade", key,
               lambda progress, stop: prune_retrain(s.model, s.dataset, progress=progress, should_stop=stop,
                                                    executor=ray_status.executor(), **kw), est, s)
    res = _finished(CASCADE_JOB, key)
    if res is None:
        return
    show_cascade(list(res.steps), res.dense_accuracy, res.settings, res.cancelled, key="rt", device=res.device,
                 result=res)


def _isolation_controls(s: Settings) -> dict:
    """The tab's widgets: method, keep ratio, epochs, rewind epoch, where the mask is chosen, the random baseline."""
    methods = _methods()
    c1, c2, c3, c4 = st.columns([1.4, 1, 1, 1])
    method = c1.selectbox("Method (chooses the mask)", methods, index=methods.index("sipp-hybrid"), key="li_method",
                          help=_methods_help(methods), **BIND)
    c1.caption(METHOD_LABELS.get(method, method))
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
    return dict(method=method, keep=keep, epochs=epochs, rewind=rewind, prune_at=prune_at, scope=scope)


def _isolation_problems(o: dict) -> list[str]:
    """Combinations of the tab's widgets that make no run, each with its fix."""
    problems = []
    if o["rewind"] >= o["epochs"]:
        problems.append(f"the rewind epoch ({o['rewind']}) must be below the number of epochs ({o['epochs']}). "
                        "Fix: lower it")
    if o["prune_at"] == "init" and o["rewind"]:
        problems.append("pruning at initialisation resets to θ₀ itself. Fix: set 'Rewind to epoch' to 0")
    return problems


def _isolation_cost(s: Settings, o: dict, per_epoch: float) -> tuple[float, str]:
    """(estimated seconds, what happens to the dense network) for the tab's settings."""
    epochs = int(o["epochs"])
    have = _has_checkpoint(s.model, s.dataset, epochs, int(s.seed))
    dense_epochs = (int(o["rewind"]) if have else (epochs if o["prune_at"] == "trained" else 0))
    est = 1.0 + (dense_epochs + 2 * epochs) * per_epoch + _prune_seconds(s)
    dense_note = ("dense network from its checkpoint" if have else
                  (f"dense network trained first ({epochs} epochs)" if o["prune_at"] == "trained"
                   else "no dense training"))
    return est, dense_note


def _isolation_tab(s: Settings) -> None:
    o = _isolation_controls(s)
    problems = _isolation_problems(o)
    for p in problems:
        st.error(p[0].upper() + p[1:] + ".", icon=":material/error:")
    if problems:
        return
    key = ("isolation", s.model, s.dataset, o["method"], float(o["keep"]), int(o["epochs"]), int(o["rewind"]),
           o["prune_at"], o["scope"], int(s.seed), None if s.auto_sample else int(s.sample_size), float(s.delta),
           s.device)
    timing = epoch_seconds(s, "li_estimate")
    if timing is None:
        return
    per_epoch, source = timing
    est, dense_note = _isolation_cost(s, o, per_epoch)
    running = jobs.is_running(ISOLATION_JOB)
    cached = _results().peek(key)
    b, cap = st.columns([1, 4], vertical_alignment="center")
    go = b.button("Train in isolation", type="primary", key="li_run", icon=":material/play_arrow:",
                  disabled=running or cached is not None)
    cap.caption(f"{dense_note}; {2 * int(o['epochs'])} masked epochs (method's mask and random mask): estimated "
                f"**{jobs.fmt_seconds(est)}** (one epoch ≈ {per_epoch:.2f} s, {source})"
                + (" · this run is cached: shown below" if cached is not None else ""))
    if go and not running:
        kw = dict(method=o["method"], keep_ratio=float(o["keep"]), epochs=int(o["epochs"]),
                  rewind_epoch=int(o["rewind"]), prune_at=o["prune_at"], random_scope=o["scope"], seed=int(s.seed),
                  sample_size=None if s.auto_sample else int(s.sample_size), delta=float(s.delta), device=s.device)
        _start(ISOLATION_JOB, "isolation", "Training in isolation", key,
               lambda progress, stop: train_isolated(s.model, s.dataset, progress=progress, should_stop=stop,
                                                     executor=ray_status.executor(), **kw), est, s)
    res = _finished(ISOLATION_JOB, key)
    if res is None:
        return
    show_isolation(res.ticket, res.random, res.dense_accuracy, res.settings, res.cancelled, key="li",
                   device=res.device, result=res)


def _threads() -> int:
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
    methods = _methods()
    names = list(TABS)
    page_link_problems("retrain", {"rt_tab": link_shown(names),
        "rt_method": link_shown(methods), "rt_epochs": link_number(1, 50, True), "li_method": link_shown(methods),
        "li_keep": link_slider(link_log(ISO_KEEP, 0.05)), "li_epochs": link_number(1, 100, True),
        "li_rewind": link_number(0, 99, True), "li_at": link_shown(list(PRUNE_AT), PRUNE_AT.get),
        "li_scope": link_shown(list(SCOPES), SCOPES.get)})
    # A tracked tab (key, on_change): a run started in the second tab used to bring the first back on its rerun,
    # hiding the run's progress and result.
    # The tab chosen last is remembered in the session (a widget's own state goes when its page is left), so that
    # coming back to the page shows it again.
    # Bound to the URL (rt_tab=<the tab's label>), so that a link can open the second tab.
    last = st.session_state.get("_rt_tab_last")
    cascade, isolation = st.tabs(names, key="rt_tab", default=last if last in names else None,
                                 on_change=_remember_tab, bind="query-params")
    with cascade:
        _cascade_tab(s)
    with isolation:
        _isolation_tab(s)
