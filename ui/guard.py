"""What every workbench page does first: check the settings, get sensitivities, get the report.

Errors become ``st.error`` messages that say how to fix them, never tracebacks;
the sidebar keeps working, so the user can change the setting and go on. An engine
error is recognised by its class (``sipp_core.errors``), never by its message.
"""
from __future__ import annotations

import traceback

import streamlit as st

from sipp_core.errors import CheckpointError, SippError
from sipp_core.zoo.models import ModelDataMismatch
from ui import engine, lessons, prefetch
from ui.settings import METHOD_LABELS, Settings, check_settings, fmt_num
from ui.sidebar import current_settings


def friendly(exc: BaseException) -> str:
    """One message with a fix for an engine error (no traceback)."""
    name = type(exc).__name__
    msg = str(exc).strip() or name
    if isinstance(exc, SippError) and exc.fix:  # the engine named the problem and the fix itself
        return f"{exc.problem}. Fix: {exc.fix}"
    if isinstance(exc, ModelDataMismatch):
        return f"{msg}. Fix: pick one of those models in the sidebar, or another data set."
    if isinstance(exc, CheckpointError):
        return f"A checkpoint could not be used: {msg}. Fix: delete that file; it is rebuilt on the next run."
    if isinstance(exc, (ValueError, TypeError)):
        return f"{msg}. Fix: change that setting in the sidebar."
    if isinstance(exc, MemoryError):
        return "Out of memory. Fix: choose a smaller model, data set or |S|."
    return f"The engine stopped with {name}: {msg}. Fix: try other settings; if it persists, report it."


def show_error(exc: BaseException) -> None:
    st.error(friendly(exc), icon=":material/error:")
    with st.expander("Technical details"):
        st.code("".join(traceback.format_exception_only(type(exc), exc)).strip())


def describe(s: Settings) -> str:
    budget = f"keep ratio κ = {s.keep_ratio:.3f}" if s.mode == "keep ratio" else f"ε = {fmt_num(s.epsilon)}"
    return (f"**{s.model}** on **{s.dataset}** · {METHOD_LABELS.get(s.method, s.method)} · {budget} · "
            f"δ = {fmt_num(s.delta)} · seed {s.seed}")


def _check_cheap(s: Settings) -> bool:
    problems = check_settings(s)
    for p in problems:
        st.error(p, icon=":material/error:")
    if problems:
        return False
    try:
        engine.resolve_device(s.device)
    except ValueError as exc:
        st.error(str(exc), icon=":material/error:")
        return False
    try:
        facts = engine.model_facts(s.model, s.dataset)
    except Exception as exc:  # noqa: BLE001 - every engine error is shown, never raised
        show_error(exc)
        return False
    if not s.auto_sample and s.sample_size > facts["pool"]:
        st.error(f"|S| = {s.sample_size:,} is more than the S-pool of {s.dataset} holds ({facts['pool']:,} points). "
                 f"Fix: choose |S| ≤ {facts['pool']:,}, or switch '|S| from the formula' on.", icon=":material/error:")
        return False
    return True


def get_prepared(s: Settings):
    """Sensitivities for the heavy settings: at once when cheap, else behind a button with st.progress."""
    if engine.can_auto_prepare(s):
        try:
            if engine.is_prepared(s):
                return engine.get_prepared(s)
            with st.spinner(f"Computing sensitivities for {s.model} on {s.dataset}…"):
                return engine.get_prepared(s)
        except Exception as exc:  # noqa: BLE001
            show_error(exc)
            return None
    status = engine.checkpoint_status(s.model, s.dataset)
    facts = engine.model_facts(s.model, s.dataset)
    what = ("train the network (no checkpoint yet; it is cached for next time), then compute sensitivities"
            if status == "missing" else "compute sensitivities (a large network: this can take a while)")
    st.info(f"{s.model} on {s.dataset} needs a one-off step: {what}. It has {facts['prunable']:,} prunable weights.",
            icon=":material/hourglass:")
    if not st.button("Train and compute sensitivities" if status == "missing" else "Compute sensitivities",
                     type="primary", key="prepare_button"):
        st.stop()
    bar = st.progress(0.0, text="starting…")

    def progress(fraction: float, message: str) -> None:
        bar.progress(min(max(float(fraction), 0.0), 1.0), text=message[:120])

    try:
        prepared = engine.get_prepared(s, progress=progress)
    except Exception as exc:  # noqa: BLE001
        bar.empty()
        show_error(exc)
        return None
    bar.progress(1.0, text="done")
    st.rerun()  # redraw without the button: the result is cached now
    return prepared


def obtain(page_title: str, intro: str | None = None, own_budget: bool = False):
    """Header + guard: returns (settings, prepared, report) or stops the page with a clear message.
    own_budget: the page chooses its own method and budget (Filters), and its header says so."""
    s = current_settings()
    st.title(page_title)
    st.caption(describe(s) + (" · the method and budget of the sidebar are not used here" if own_budget else ""))
    lessons.apply(page_title)  # a lesson link's text and hidden controls
    if intro:
        st.markdown(intro)
    if not _check_cheap(s):
        st.stop()
    prepared = get_prepared(s)
    if prepared is None:
        st.stop()
    try:
        report = engine.get_report(s, prepared)
    except Exception as exc:  # noqa: BLE001
        show_error(exc)
        st.stop()
    prefetch.note(s, prepared, report)
    return s, prepared, report
