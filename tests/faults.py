"""The fault and bad-input suite's registry: each case names its surface and its expected outcome.

A fault case is an ordinary test marked with ``fault(...)``::

    @fault("npz label of 2**62", surface="library", outcome="clear error")
    def test_huge_label_is_refused(tmp_path): ...

conftest collects the marked tests and prints one table at the end of the run
(case | surface | outcome | result), so a reader sees at a glance which bad
inputs and faults are covered and that each ended as promised.

Surfaces: "library", "command line", "app". Outcomes: "clear error" (a
message naming the problem and the fix, no traceback), "recovered" (the work
goes on, with a warning where something was set aside or not saved).
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import textwrap

import pytest

from sipp_core.__main__ import main

SURFACES = ("library", "command line", "app")
OUTCOMES = ("clear error", "recovered")


def fault(case: str, *, surface: str, outcome: str):
    """Mark a test as one case of the fault suite."""
    if surface not in SURFACES:
        raise ValueError(f"surface must be one of {SURFACES}, got {surface!r}")
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
    return pytest.mark.fault(case=case, surface=surface, outcome=outcome)


def run_limited(code: str, *, memory_mb: int, timeout: float = 120.0, env: dict | None = None):
    """Run Python ``code`` in a subprocess whose address space is capped at ``memory_mb``.

    Memory-heavy fault cases run here: if the code under test allocated what a
    hostile input asks for, the child would die with MemoryError instead of the
    test machine. Returns the CompletedProcess; its stdout carries what the code
    printed, and ``peak_rss_mb`` (the child's peak resident set, from
    getrusage) is attached to it.
    """
    limit = memory_mb * 1024 * 1024

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=cap, env={**os.environ, **(env or {})})
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the max over all waited-for children: exact when this child set a new max
    proc.peak_rss_mb = after / 1024 if after > before else None
    return proc


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """main(argv) as the shell would see it: the exit status (argparse's SystemExit included), stdout, stderr;
    never a traceback."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err
