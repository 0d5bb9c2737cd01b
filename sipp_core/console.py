"""Progress and warnings on the command line (stderr), for a terminal and for a log.

On a terminal, one line is redrawn in place: a bar, the share done and what runs now. Written to a file, a pipe or
a CI log, a redrawn line would pile up as one long line of carriage returns (a 24-point sweep wrote one line of
1.4 kB, and the line grows with every point), so there each tenth of the work gets a line of its own, and so does
the end.

A warning is one line (warning_line). The engine also hands some warnings to the progress callback, for the app,
which shows its progress but not Python's warnings; on the command line such a message prints once, as the warning.
"""
from __future__ import annotations

import sys
from typing import TextIO

BAR = 30  # characters in a terminal's bar
STEPS = 10  # lines a log gets for the whole job: one per tenth done
_warned: set[str] = set()  # the warnings printed so far (warning_line)


def warning_line(message, file: TextIO | None = None) -> None:
    """A warning as one plain line (what was set aside, what was not cached), not Python's source lines."""
    _warned.add(str(message))
    print(f"warning: {message}", file=sys.stderr if file is None else file, flush=True)


class ProgressPrinter:
    """A `progress(fraction, message)` callback that prints to stderr (or `stream`).

    A fraction of 0 or less is an announcement (what starts now, how long it will take): a line of its own on a
    terminal too, so that a bar drawn over it does not erase it.
    """

    def __init__(self, prefix: str, width: int = 60, stream: TextIO | None = None):
        self.prefix, self.width = prefix, width
        self._stream = stream
        self._step = -1  # the last tenth a log got a line for
        self._open = False  # a terminal's bar is drawn and its line not yet ended

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr  # read late: tests and callers swap stderr

    def terminal(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):  # no isatty, or a closed stream
            return False

    def __call__(self, fraction: float, message: str) -> None:
        out = self.stream
        if fraction <= 0.0:
            if message in _warned:  # printed already, as a warning
                return
            if self._open:
                print(file=out)
                self._open = False
            print(f"{self.prefix}: {message}", file=out, flush=True)
            return
        done = fraction >= 1.0
        if self.terminal():
            bar = "#" * int(BAR * min(fraction, 1.0))
            print(f"\r{self.prefix} [{bar:<{BAR}}] {100 * fraction:5.1f}% {message[:self.width]:<{self.width}}",
                  end="\n" if done else "", file=out, flush=True)
            self._open = not done
            return
        step = STEPS if done else int(STEPS * fraction)
        if step > self._step:
            print(f"{self.prefix} {100 * fraction:5.1f}% {message}", file=out, flush=True)
            self._step = -1 if done else step  # after the end, a next job through the same printer starts afresh
