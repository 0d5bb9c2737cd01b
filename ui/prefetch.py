"""Compute the reports one slider step away while the user reads this one (small networks only).

A keep-ratio or ε slider moved by one step (an arrow key, a short drag) then finds its report ready and only
draws: the prune-and-measure step (50-100 ms for LeNet-300 on a 2-core machine) leaves the wait. One worker
thread per process, at a lower CPU priority than the pages; a newer request replaces an older one, so a fast
series of moves never queues work. Skipped when one report costs more than PREFETCH_MAX_S (large networks:
the CPU is better left to the user) and when SIPP_PREFETCH=0.

The reports are ordinary engine results (ui.engine.get_report), built by the same code under the same
locks: a prefetched report is the report the page would compute, so no number depends on whether it was.
"""
from __future__ import annotations

import os
import threading
from dataclasses import replace

import streamlit as st

from ui import engine
from ui.settings import EPS_OPTIONS, KEEP_MAX, KEEP_MIN, KEEP_STEP, Settings
from ui.warmup import lower_priority

PREFETCH_MAX_S = 0.3  # a report that costs more is not computed ahead
START_DELAY_S = float(os.environ.get("SIPP_PREFETCH_DELAY", "0.1"))
WORKER_NICE = 10  # the worker's CPU priority below the pages' (Linux: per thread)


def enabled() -> bool:
    return os.environ.get("SIPP_PREFETCH", "1").strip().lower() not in ("0", "false", "no", "off")


def neighbours(s: Settings) -> list[Settings]:
    """The settings one step of the budget slider away: keep ratio ± one step, or ε one option either way."""
    if s.mode == "keep ratio":
        ks = (round(s.keep_ratio + d, 6) for d in (KEEP_STEP, -KEEP_STEP))
        return [replace(s, keep_ratio=k) for k in ks if KEEP_MIN <= k <= KEEP_MAX]
    if s.epsilon not in EPS_OPTIONS:
        return []
    i = EPS_OPTIONS.index(s.epsilon)
    return [replace(s, epsilon=EPS_OPTIONS[j]) for j in (i + 1, i - 1) if 0 <= j < len(EPS_OPTIONS)]


class Worker:
    """One daemon thread that runs the latest list of jobs it was given (older lists are dropped)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._jobs: list = []
        self._busy = False
        self._fresh = False
        self.done = 0  # jobs finished (tests wait on it)
        self._thread = threading.Thread(target=self._run, name="sipp-prefetch", daemon=True)
        self._thread.start()

    def submit(self, jobs: list) -> None:
        with self._cond:
            self._jobs = list(jobs)
            self._fresh = True
            self._cond.notify()

    def cancel(self) -> None:
        """Drop the jobs not yet started (a job already running finishes: at most one report's time)."""
        with self._cond:
            self._jobs = []

    def idle(self) -> bool:
        with self._cond:
            return not self._jobs and not self._busy

    def _run(self) -> None:
        lower_priority(WORKER_NICE)
        while True:
            with self._cond:
                while not self._jobs:
                    self._cond.wait()
                if self._fresh:  # let the page's last messages leave and the browser draw them first
                    self._fresh = False
                    self._cond.wait(START_DELAY_S)
                    continue
                job = self._jobs.pop(0)
                self._busy = True
            try:
                job()
            except Exception:  # noqa: BLE001 - a neighbour that fails is reported when the user goes there
                pass
            finally:
                with self._cond:
                    self._busy = False
                    self.done += 1


@st.cache_resource(show_spinner=False)
def worker() -> Worker:
    return Worker()


_shown = threading.local()  # per script thread: the report the running page shows


def note(s: Settings, prepared, report) -> None:
    """ui.guard.obtain: this run's page shows `report` (its neighbours are queued once the page is drawn)."""
    _shown.value = (s, prepared, report)


def forget() -> None:
    """studio.py, before the page runs: nothing shown yet in this run, and the neighbours of the page before
    are no longer worth computing: a job waiting for its start would only hold the model's lock against this run."""
    _shown.value = None
    if enabled():
        worker().cancel()


def after_page() -> int:
    """studio.py, once the page is drawn: queue the neighbours of the report it showed (if any).
    Returns how many were queued."""
    shown, _shown.value = getattr(_shown, "value", None), None
    if shown is None or not enabled():
        return 0
    s, prepared, report = shown
    cost = sum(report.timings_s.get(k, 0.0) for k in ("prune", "evaluate"))
    if cost > PREFETCH_MAX_S:
        return 0
    jobs = [engine.report_job(n, prepared) for n in neighbours(s) if not engine.is_report_cached(n)]
    if jobs:
        worker().submit(jobs)
    return len(jobs)
