"""Where the app's long jobs run: on the Ray cluster named by SIPP_RAY_ADDRESS, else in this process.

    SIPP_RAY_ADDRESS=head-node:6379 make run

With the variable set, the Trade-offs and Retraining pages hand their sweeps, cascades and runs in
isolation to that cluster (``sipp_core.jobs.ray_executor``: one task per point or step); the progress
line then counts finished tasks and names the cluster's workers. Without it, everything runs in the app's
process as it always has. The cluster's Python must have sipp-studio installed, at this version.
"""
from __future__ import annotations

import os

from sipp_core.jobs.executors import RAY_ADDRESS_ENV, Executor, get_executor


def address() -> str | None:
    """The cluster's address from SIPP_RAY_ADDRESS, or None (run in this process)."""
    return os.environ.get(RAY_ADDRESS_ENV, "").strip() or None


def executor() -> Executor | None:
    """The executor the pages pass to the engine: a Ray executor for SIPP_RAY_ADDRESS, else None (in-process).

    A missing Ray raises the engine's BadInput naming the install command; the page shows it like any
    other error of the job."""
    where = address()
    return get_executor("ray", ray_address=where) if where else None


def note() -> str:
    """A few words for the progress panel: where the job runs."""
    where = address()
    return f"on the Ray cluster at {where}" if where else ""
