"""Progress over a whole job (a cascade, a sweep, a study): each stage's own 0..1 mapped into the job's range,
with a time estimate from the time taken so far."""
from __future__ import annotations

import re
import time

from ..zoo.train import Progress

__all__ = ["JobProgress"]

_ESTIMATE = re.compile(r"( \((about [^()]* left|took [^()]*)\))+$")


class JobProgress:
    """Maps a stage's own 0..1 progress into the job's range and adds a time estimate."""

    def __init__(self, progress: Progress | None):
        self.progress = progress
        self.start = time.perf_counter()
        self.last = 0.0

    def report(self, fraction: float, message: str) -> None:
        if self.progress is None:
            return
        # Monotone: a stage's own sub-steps (e.g. loading, then sensitivities) may each run 0..1.
        fraction = min(max(fraction, self.last, 0.0), 1.0)
        self.last = fraction
        elapsed = time.perf_counter() - self.start
        # A job inside a job (a study's cascades) reports through both: only the outer, whole job's estimate stays
        message = _ESTIMATE.sub("", message)
        if 0.02 < fraction < 1.0:
            left = elapsed / fraction * (1 - fraction)
            message = f"{message} (about {_fmt_s(left)} left)"
        elif fraction >= 1.0:
            message = f"{message} (took {_fmt_s(elapsed)})"
        self.progress(fraction, message)

    def stage(self, lo: float, hi: float, prefix: str = "") -> Progress:
        def sub(f: float, message: str) -> None:
            self.report(lo + (hi - lo) * f, f"{prefix}{message}")

        return sub


def _fmt_s(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"
