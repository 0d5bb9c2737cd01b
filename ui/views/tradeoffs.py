"""Trade-offs: keep ratios x methods x seeds on the sidebar's trained network (sipp_core.jobs.sweeps).

The sweep runs in a background job (ui/jobs.py) with live progress and a Cancel button; a cancelled
sweep shows the points it finished. Sensitivities come from the app's own cache (``prepare_fn``): the
sidebar's seed reuses what the other pages computed, further seeds are computed once and cached too.
Each seed's network is a private deep copy (taken under the model lock), so a sweep never touches the
model other sessions are using. Finished sweeps are kept in a process-wide store keyed by every
setting, and saved to the run history.
"""
from __future__ import annotations

import copy
import dataclasses
import math

import streamlit as st

from sipp_core.errors import SippError, fix_of
from sipp_core.jobs.sweeps import parse_ratios, sweep
from sipp_core.options import METHODS, STRUCTURED_METHODS
from ui import engine, jobs, ray_status, run_store
from ui.guard import describe, get_prepared, show_error
from ui.links import link_many, link_number
from ui.settings import METHOD_LABELS, Settings, fmt_num
from ui.sidebar import BIND, current_settings, page_link_problems
from ui.sweep_results import show_sweep

JOB_KEY = "_job_sweep"
# Large ratios first: on the default network the 2-point prune potential then has an answer for most methods.
DEFAULT_RATIOS = "0.7, 0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01"
CALIBRATE_LIMIT_S = 6.0  # time one point per untimed method before the estimate only while this is the cost
# A sweep's wall time over the sum of its points' own times: it runs in a background thread beside the page's
# progress polling and pays model copies and bookkeeping that a point's time leaves out (1.0 to 2.3 measured in
# the browser on a busy 2-core machine). Replaced by the measured ratio once a sweep on the network finishes.
OVERHEAD = 1.6
INTRO = ("Prune the **same trained network** at many keep ratios with several methods and compare accuracy, "
         "output error and SiPP's guaranteed bound. Each point prunes once, without retraining; the sensitivities "
         "are computed once per seed and reused by every point. The network, |S|, δ and the allocation come from "
         "the sidebar.")


@st.cache_resource(show_spinner=False)
def _results() -> engine.Store:
    """Finished (not cancelled) sweeps, shared by all sessions (never mutated)."""
    return engine.Store(24, 64 * 2**20)


def _methods() -> list[str]:
    return list(METHODS) + list(STRUCTURED_METHODS)


def sweep_request(s: Settings, methods, ratios, seeds: int, latency: bool = False) -> dict:
    """The sweep's arguments (plain values) for the sidebar settings and the page's widgets.

    ratios: the typed keep ratios ("0.5, 0.1, 0.05", or "K1:K2:N" for N ratios on a log grid) or a sequence."""
    grid = parse_ratios(ratios) if isinstance(ratios, str) else tuple(sorted({float(r) for r in ratios}, reverse=True))
    return dict(model=s.model, dataset=s.dataset, methods=list(methods), ratios=list(grid),
                seeds=[int(s.seed) + i for i in range(int(seeds))],
                sample_size=None if s.auto_sample else int(s.sample_size), delta=float(s.delta),
                allocation=s.allocation, measure_latency=bool(latency))


def result_key(s: Settings, req: dict) -> tuple:
    heavy = tuple(v for i, v in enumerate(s.heavy_key) if i != 3)  # the seeds are in the request
    return (heavy, tuple(req["methods"]), tuple(req["ratios"]), tuple(req["seeds"]), req["delta"], req["allocation"],
            req.get("measure_latency", False))


def prepare_fn(s: Settings):
    """seed -> the app's cached Prepared for the sidebar settings with that seed, with a private model copy.

    Safe in a worker thread: the process-wide store and locks are looked up here, in the script thread.
    """
    store, locks = engine.prepared_store(), engine.model_locks()

    def fn(seed: int, progress=None):
        prepared = engine.get_prepared(dataclasses.replace(s, seed=int(seed)), progress, store=store)
        with engine.model_lock(prepared, locks):
            model = copy.deepcopy(prepared.model)
        return dataclasses.replace(prepared, trained=dataclasses.replace(prepared.trained, model=model))

    return fn


def run_sweep(req: dict, prepare, progress=None, should_stop=None):
    """The sweep itself (what the background job runs); `prepare` from prepare_fn(), made in the script thread."""
    return sweep(req["model"], req["dataset"], methods=req["methods"], ratios=req["ratios"], seeds=req["seeds"],
                 sample_size=req["sample_size"], delta=req["delta"], allocation=req["allocation"], cache=False,
                 measure_latency=req.get("measure_latency", False),
                 prepare_fn=prepare, progress=progress, should_stop=should_stop, executor=ray_status.executor())


@st.cache_resource(show_spinner=False)
def _observed() -> dict:
    """Seconds per point, per (model, dataset, method), and seconds per new seed, per (model, dataset): from the
    last finished sweep, or from one point timed before the estimate (all sessions)."""
    return {}


def _observe(observed: dict, s: Settings, res) -> None:
    """Remember what a finished sweep cost, per method (runs in the worker; plain dict writes)."""
    per_method: dict[str, list[float]] = {}
    for r in res.rows:
        t = r.get("time_s")
        if t is not None and not (isinstance(t, float) and math.isnan(t)):
            per_method.setdefault(r["method"], []).append(float(t))
    for m, ts in per_method.items():
        observed[(s.model, s.dataset, m)] = sum(ts) / len(ts)
    busy = sum(sum(ts) for ts in per_method.values())
    total = res.timings_s.get("total", 0.0) - sum(res.timings_s.get("prepare", {}).values())
    if busy > 0.5 and total > 0:
        observed[(s.model, s.dataset, "overhead")] = min(max(total / busy, 1.0), 5.0)
    prep = [v for v in res.timings_s.get("prepare", {}).values() if v > 0.05]  # seeds that computed sensitivities
    if prep:
        observed[(s.model, s.dataset)] = sum(prep) / len(prep)


def untimed(s: Settings, methods) -> list[str]:
    return [m for m in methods if (s.model, s.dataset, m) not in _observed()]


def point_guess(report) -> float:
    """Seconds per point guessed from the sidebar's own prune and evaluation (before any point is timed)."""
    if report is None:
        return 0.5
    return max(0.05, float(report.timings_s.get("prune", 0.1)) + float(report.timings_s.get("evaluate", 0.1)))


def calibrate(s: Settings, methods, ratios) -> None:
    """Time each method that has no timing yet at two keep ratios from the middle of the grid (on the sidebar's
    cached sensitivities) and keep the second, warm, time: the estimate then rests on measured times rather
    than on the sidebar's prune."""
    observed = _observed()
    todo = untimed(s, methods)
    if not todo:
        return
    grid = sorted(ratios)
    pair = grid[len(grid) // 2: len(grid) // 2 + 2] if len(grid) > 1 else grid
    res = sweep(s.model, s.dataset, methods=todo, ratios=pair, seeds=[int(s.seed)], delta=float(s.delta),
                allocation=s.allocation, sample_size=None if s.auto_sample else int(s.sample_size), cache=False,
                prepare_fn=prepare_fn(s))  # a private copy of the cached network, as the sweep itself uses
    for r in res.rows:  # the last point of each method wins: the first one also builds per-layer caches
        if not math.isnan(r["time_s"]):
            observed[(s.model, s.dataset, r["method"])] = float(r["time_s"])


def estimate_seconds(s: Settings, req: dict, prepared, report=None) -> tuple[float, bool]:
    """(seconds, measured): points x each method's seconds per point x the sweep's overhead + seeds without
    sensitivities x seconds per seed. Measured: every method has a timed point on this network; else the missing ones are guessed
    from the sidebar's own prune (a cold first call) and the estimate is rough."""
    observed = _observed()
    guess = point_guess(report)
    per_point = [observed.get((s.model, s.dataset, m)) for m in req["methods"]]
    measured = all(v is not None for v in per_point)
    per_seed = observed.get((s.model, s.dataset)) or float(
        prepared.timings_s.get("prepare_total", prepared.timings_s.get("sensitivity", 2.0)))
    new_seeds = sum(not engine.is_prepared(dataclasses.replace(s, seed=sd)) for sd in req["seeds"])
    points = sum(v if v is not None else guess for v in per_point) * len(req["ratios"]) * len(req["seeds"])
    overhead = observed.get((s.model, s.dataset, "overhead"), OVERHEAD)
    return points * overhead + new_seeds * per_seed, measured


# ---- the page -------------------------------------------------------------------------------------

def _header(s: Settings):
    st.title("Trade-offs")
    st.caption(describe(s) + " · the method and budget of the sidebar are not used here")
    st.markdown(INTRO)
    try:
        engine.resolve_device(s.device)
        facts = engine.model_facts(s.model, s.dataset)
    except Exception as exc:  # noqa: BLE001
        show_error(exc)
        st.stop()
    if not s.auto_sample and s.sample_size > facts["pool"]:
        st.error(f"|S| = {s.sample_size:,} is more than the S-pool holds ({facts['pool']:,}). Fix: choose a smaller "
                 "|S| in the sidebar or switch '|S| from the formula' on.", icon=":material/error:")
        st.stop()
    prepared = get_prepared(s)
    if prepared is None:
        st.stop()
    return prepared


def _request(s: Settings):
    """The page's widgets (methods, typed keep ratios, seeds) as a sweep request, and the column that
    shows its size; stops the page with the fix when they make no sweep."""
    methods_all = _methods()
    page_link_problems("tradeoffs", {"to_methods": link_many(methods_all), "to_seeds": link_number(1, 5, True),
                                     "to_latency": ("bool",)})
    st.subheader("Sweep")
    c1, c2 = st.columns([2.3, 1.2])  # the five default methods' chips on one line at 150% zoom
    methods = c1.multiselect("Methods", methods_all, default=["sipp-hybrid", "sipp-det", "sipp-rand", "wt", "random"],
                             key="to_methods", help="Each method prunes the same network at every keep ratio: "
                             + "; ".join(f"**{m}**: {METHOD_LABELS.get(m, m)}" for m in methods_all), **BIND)
    text = c2.text_input("Keep ratios", DEFAULT_RATIOS, key="to_ratios",
                         help="The keep ratios to run, separated by commas (e.g. 0.5, 0.1, 0.05), each in (0, 1]; "
                              "or K1:K2:N for N ratios evenly spaced in log from K1 to K2 (e.g. 0.5:0.01:8).", **BIND)
    c4, c5 = st.columns([1.35, 3])  # "Time each network" on one line at 150% zoom
    seeds = c4.number_input("Seeds", min_value=1, max_value=5, value=1, step=1, key="to_seeds",
                            help=f"Seeds {s.seed}, {s.seed + 1}, …: each draws its own S and sampling; bands in the "
                                 "charts show their range.", **BIND)
    latency = c4.checkbox("Time each network", value=False, key="to_latency",
                          help="Also measure every pruned network's CPU latency at batch 64 beside the dense one "
                               "(median of 10 runs; slower): then accuracy can be drawn against latency.", **BIND)
    if not methods:
        st.error("Choose at least one method. Fix: pick methods in the box above.", icon=":material/error:")
        st.stop()
    try:
        req = sweep_request(s, methods, text, seeds, latency)
    except ValueError as exc:
        text = exc.problem if isinstance(exc, SippError) else str(exc)
        fix = fix_of(exc) or f"type numbers in (0, 1] separated by commas, e.g. {DEFAULT_RATIOS}"  # the refusal's own
        st.error(f"{text[:1].upper()}{text[1:]}. Fix: {fix}.", icon=":material/error:")
        st.stop()
    return req, c5


def _sidebar_report(s: Settings, prepared):
    """The sidebar's own prune when it is cached already (used for the estimate only), else None."""
    try:
        return engine.get_report(s, prepared) if engine.is_report_cached(s) else None
    except Exception:  # noqa: BLE001 - only used for the estimate
        return None


def _start(s: Settings, req: dict, key: tuple, est: float) -> None:
    """Start the sweep job (the store, the history and the cost memory are looked up here, in the script thread)."""
    hist = run_store.history()
    store, observed = _results(), _observed()
    save = run_store.saver(hist)

    def on_done(job, key=key, store=store):
        res = job.result
        if res is not None and not res.cancelled:
            store.get_or_build(key, lambda: res)
        if res is not None:
            _observe(observed, s, res)
        save(job)

    st.session_state["_sweep_key"] = key
    prepare = prepare_fn(s)
    jobs.start(JOB_KEY, "sweep", "Sweep", lambda progress, stop: run_sweep(req, prepare, progress, stop),
               on_done=on_done, estimate_s=est)
    st.rerun()  # redraw with the button off and the progress bar on


def _result_to_show(job, cached, key: tuple):
    """(result, note, from_cache): the cached sweep for these settings, else this session's last sweep."""
    result, note, from_cache = cached, None, cached is not None
    if job is not None and job.done and job.result is not None:
        if st.session_state.get("_sweep_key") == key:
            result, from_cache = job.result, False
        elif result is None:
            result = job.result
            note = "Showing your last sweep: its settings differ from the ones above (press Run sweep for those)."
    return result, note, from_cache


def _show_result(result, note: str | None, from_cache: bool) -> None:
    st.divider()
    if note:
        st.caption(f":orange[{note}]")
    rs = result.settings
    st.caption(f"{rs['model']} on {rs['dataset']} · seeds {', '.join(map(str, rs['seeds']))} · δ = {fmt_num(rs['delta'])}"
               f" · allocation {rs['allocation']} · total {jobs.fmt_seconds(result.timings_s.get('total', math.nan))}"
               + (" (from the cache)" if from_cache else ""))
    show_sweep(result.to_frame(), rs, key="to", cancelled=result.cancelled, drop_bind=True)


def render() -> None:
    s = current_settings()
    prepared = _header(s)
    req, c5 = _request(s)
    key = result_key(s, req)
    points = len(req["methods"]) * len(req["ratios"]) * len(req["seeds"])
    cached = _results().peek(key)
    report = _sidebar_report(s, prepared)
    est, measured = estimate_seconds(s, req, prepared, report)
    todo = untimed(s, req["methods"])
    if cached is None and todo and point_guess(report) * len(todo) <= CALIBRATE_LIMIT_S:
        with st.spinner(f"Timing one point of {', '.join(todo)} for the estimate…"):
            try:
                calibrate(s, req["methods"], req["ratios"])
            except Exception:  # noqa: BLE001 - only the estimate depends on it; the sweep reports its own errors
                pass
        est, measured = estimate_seconds(s, req, prepared, report)
    c5.caption(f"Keep ratios: {', '.join(f'{r:g}' for r in req['ratios'])}  \n"
               f"{_count(len(req['methods']), 'method')} × {_count(len(req['ratios']), 'ratio')} × "
               f"{_count(len(req['seeds']), 'seed')} = "
               f"**{points} points**, estimated **{jobs.fmt_seconds(est)}**"
               + (" (from timed points of each method on this network)" if measured
                  else " (rough: not every method has a timed point on this network yet)")
               + (" (this sweep is cached: shown at once)" if cached is not None else ""))

    running = jobs.is_running(JOB_KEY)
    start = st.button("Run sweep", type="primary", key="to_run", icon=":material/play_arrow:",
                      disabled=running or cached is not None,
                      help="Runs in the background with a Cancel button; results are cached for everyone.")
    if start and not running:
        _start(s, req, key, est)
    job = jobs.watch(JOB_KEY)

    if job is not None and job.done and job.error is not None:
        show_error(job.error)
    result, note, from_cache = _result_to_show(job, cached, key)
    if result is None:
        if job is None or job.done:
            st.info("Choose methods and a keep-ratio range, then press **Run sweep**.", icon=":material/info:")
        return
    _show_result(result, note, from_cache)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
