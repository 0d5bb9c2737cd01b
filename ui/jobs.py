"""Long work (sweeps, retraining) in a background thread: progress, time left and a Cancel button.

Why not in the script thread: any click (a "Cancel" button too) makes Streamlit stop the running
script at its next ``st.*`` call, so a cancel there would throw away the partial results the engine
is built to return. Instead:

* ``start(key, ...)`` runs ``fn(progress, should_stop)`` in a plain daemon thread that never calls
  Streamlit, and keeps the :class:`Job` in ``st.session_state[key]`` (per browser session, never shared);
* ``watch(key)`` draws an ``st.fragment(run_every=...)`` that polls the job: a progress bar with the
  engine's message (which carries its own time estimate) and a Cancel button that only sets the job's
  stop flag; the engine's ``should_stop()`` reads it between points / batches and returns what it finished
  with ``cancelled=True``. When the job ends, the fragment asks for one full rerun so the page draws
  the results.

Thread safety: the worker writes plain attributes (atomic under the GIL) and the page only reads them.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

import streamlit as st

from ui import ray_status

POLL_S = 0.5


def fmt_seconds(s: float) -> str:
    if s != s:  # nan
        return "?"
    if s < 1:
        return "under a second"
    if s < 90:
        return f"{s:.0f} s"
    return f"{s / 60:.1f} min"


class Job:
    """One run of ``fn(progress, should_stop)`` in a background thread.

    Attributes read by the page: fraction, message, result, error, started, finished, stop_requested.
    ``on_done(job)`` runs in the worker after fn returns (e.g. to save the run to the history); its
    error, if any, is kept in ``on_done_error`` and never hides the result.
    """

    def __init__(self, kind: str, label: str, fn: Callable[[Callable, Callable], Any],
                 on_done: Callable[["Job"], None] | None = None, estimate_s: float | None = None):
        self.kind = kind
        self.label = label
        self.fn = fn
        self.on_done = on_done
        self.estimate_s = estimate_s
        self.fraction = 0.0
        self.message = "starting…"
        self.result: Any = None
        self.error: BaseException | None = None
        self.on_done_error: BaseException | None = None
        self.started = time.time()
        self.finished: float | None = None
        self.shown = False  # a full script run has drawn the finished job
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sipp-{kind}", daemon=True)

    # -- worker side -------------------------------------------------------------------------------
    def _progress(self, fraction: float, message: str) -> None:
        try:
            self.fraction = min(max(float(fraction), 0.0), 1.0)
        except (TypeError, ValueError):
            pass
        self.message = str(message)[:200]

    def _run(self) -> None:
        try:
            self.result = self.fn(self._progress, self._stop.is_set)
        except BaseException as exc:  # noqa: BLE001 - shown on the page with its fix
            self.error = exc
        finally:
            if self.error is None and self.on_done is not None:
                try:
                    self.on_done(self)
                except BaseException as exc:  # noqa: BLE001
                    self.on_done_error = exc
            self.finished = time.time()

    def start(self) -> "Job":
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the job (tests and notebooks); True when it has finished."""
        self._thread.join(timeout)
        return self.done

    # -- page side ---------------------------------------------------------------------------------
    def cancel(self) -> None:
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def done(self) -> bool:
        return self.finished is not None

    @property
    def running(self) -> bool:
        return not self.done

    @property
    def elapsed(self) -> float:
        return (self.finished or time.time()) - self.started


def get(key: str) -> Job | None:
    job = st.session_state.get(key)
    return job if isinstance(job, Job) else None


def start(key: str, kind: str, label: str, fn: Callable[[Callable, Callable], Any],
          on_done: Callable[[Job], None] | None = None, estimate_s: float | None = None) -> Job:
    """Start a job for this session under `key` (the caller makes sure none is running there)."""
    job = Job(kind, label, fn, on_done=on_done, estimate_s=estimate_s).start()
    st.session_state[key] = job
    return job


def is_running(key: str) -> bool:
    job = get(key)
    return job is not None and job.running


def watch(key: str, poll_s: float = POLL_S) -> Job | None:
    """Draw the job's live progress and Cancel button; returns the job (None when there is none).

    Call it in every full run of the page. While the job runs, only this fragment reruns (every
    `poll_s` seconds); when it ends, one full rerun lets the page draw the results.
    """
    job = get(key)
    if job is None:
        return None
    if job.done:
        job.shown = True  # this full run is the one that draws the results

    @st.fragment(run_every=poll_s if job.running else None)
    def _panel() -> None:
        j = get(key)
        if j is None:
            return
        if j.running:
            st.progress(j.fraction, text=f"{j.label}: {j.message}")
            c1, c2 = st.columns([1, 4], vertical_alignment="center")
            c1.button("Cancel", key=f"{key}_cancel", on_click=j.cancel, disabled=j.stop_requested,
                      icon=":material/stop_circle:", help="Stops after the current point or training batch; "
                                                          "what finished so far is kept and shown.")
            note = f"running for {fmt_seconds(j.elapsed)}"
            if j.estimate_s:
                note += f" (estimated {fmt_seconds(j.estimate_s)} in all)"
            if j.stop_requested:
                note += " · cancelling: the current step finishes first"
            if ray_status.note():
                note += f" · {ray_status.note()}"
            c2.caption(note + " · you can switch pages; the run continues and its result waits here.")
        elif not j.shown:
            st.rerun()  # full rerun: the page draws the finished job

    _panel()
    return job
