"""Warm a fresh server up: at start-up, the app's script runs on the default settings in a session that no browser
sees: on the default page, then on the pages a class clicks through first (PAGES).

The first run in a process pays for everything done once per process: importing torch, pandas and Altair (1.8 s
of a 2-core laptop's 2.6 s), reading the default data set, loading the default network, computing its
sensitivities and first report, building the chart templates; a page's first visit builds that page's own
results and charts. app.py starts the warm-up as the server starts, with the same code and the same
process-wide caches as the pages. The server does not wait for it: a page opened meanwhile is served at once,
and its run waits only for what the warm-up is still computing (the same imports, the same cached results),
never computing anything twice; if a user's run is already under way when the imports are done, the warm-up's
run ends there (redundant) and leaves the CPU to it. A page opened after the warm-up (the time to read the
address and click it) finds everything ready and only draws: its first result comes in about 2 s instead of 4.
The runs after the first page, which nobody waits for, start only when no user's page is being computed or
drawn (users_busy) and run at a lower CPU priority (yield_cpu).

SIPP_WARMUP=0 turns it off. The warm-up saves nothing to the run history (run_store asks is_warmup()).
"""
from __future__ import annotations

import asyncio
import os
import threading
import time
from contextlib import asynccontextmanager, contextmanager

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ClientState_pb2 import ClientState
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.runtime import Runtime, SessionClient
from streamlit.runtime.scriptrunner import get_script_run_ctx

_SESSIONS: set[str] = set()  # ids of the warm-up sessions running now
_BACKGROUND: set[str] = set()  # those of them past their first page: nobody waits for their runs
BACKGROUND_NICE = 10  # the CPU priority of those runs, below the users' pages (Linux: per thread)
TIMEOUT_S = 120.0  # a run that takes longer is stopped (its session closed)
# The pages run, in this order (URL names; "" is the default page, Prune): the first section's pages, which a
# class clicks through first, so that a first visit to each only draws too.
PAGES = ("", "sensitivity", "kept_edges", "guarantees")
# Then, once a visitor's first page is drawn and read, Learn, where a class starts: its first visit trains the
# walkthrough's small network (3 s of a 2-core laptop's server time). Not before a visitor: a page opened while it
# ran would share the interpreter with it (the first result 5 s after the start: 2.08 s against 1.86 s).
AFTER_A_VISITOR = ("learn",)
PREFETCH_WAIT_S = 2.0  # then wait this long at most for the next steps' reports (ui.prefetch) to be ready
# A page after the first waits until no user's run has been under way for this long: after its run, the browser
# still draws the page (0.5-0.9 s on a 2-core laptop), and a warm-up run beside it would share those two cores.
QUIET_S = 1.0
POLL_S = 0.05

_users_lock = threading.Lock()
_users = {"running": 0, "ended": float("-inf")}  # users' runs under way, and when the last one ended (monotonic)


def enabled() -> bool:
    return os.environ.get("SIPP_WARMUP", "1").strip().lower() not in ("0", "false", "no", "off")


def is_warmup() -> bool:
    """True inside the warm-up run (no user made it: nothing is saved for it)."""
    ctx = get_script_run_ctx(suppress_warning=True)
    return ctx is not None and ctx.session_id in _SESSIONS


def lower_priority(nice: int) -> None:
    """Run the calling thread at niceness `nice` or its own, whichever is lower in priority (Linux: per thread;
    elsewhere, or if refused, nothing)."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(nice, os.getpriority(os.PRIO_PROCESS, tid)))
    except (AttributeError, OSError):
        pass


def yield_cpu() -> None:
    """studio.py, first thing in a run: a warm-up run that no one waits for (pages after the first) runs at a
    lower CPU priority, so that it never slows a user's page. Its thread ends with the run."""
    ctx = get_script_run_ctx(suppress_warning=True)
    if ctx is not None and ctx.session_id in _BACKGROUND:
        lower_priority(BACKGROUND_NICE)


@contextmanager
def counted_run():
    """studio.py makes each run inside this. A user's run is counted, so that the warm-up knows when users wait
    for a page (users_busy, redundant); a warm-up run is not."""
    if is_warmup():
        yield
        return
    with _users_lock:
        _users["running"] += 1
    try:
        yield
    finally:
        with _users_lock:
            _users["running"] -= 1
            _users["ended"] = time.monotonic()


def users_busy() -> bool:
    """True while a user's run is under way or ended less than QUIET_S ago (its page is still being drawn)."""
    with _users_lock:
        return _users["running"] > 0 or time.monotonic() - _users["ended"] < QUIET_S


def redundant() -> bool:
    """True in a warm-up run when a user's run is under way. That run computes, into the same caches, what its
    page needs (the default page's results, when it is the default page a first visitor opened), so a warm-up
    page drawn beside it for nobody would only take the CPU from it: studio.py ends the warm-up's run there."""
    if not is_warmup():
        return False
    with _users_lock:
        return _users["running"] > 0


async def _quiet() -> None:
    """Wait until no user waits for a page (users_busy is False)."""
    while users_busy():
        await asyncio.sleep(POLL_S)


class _Watcher(SessionClient):
    """The warm-up session's client: drops what a run draws and notes when the run is over."""

    def __init__(self) -> None:
        self.finished = asyncio.Event()
        self.status: int | None = None

    def expect_run(self) -> None:
        self.finished.clear()
        self.status = None

    def write_forward_msg(self, msg: ForwardMsg) -> None:
        if msg.WhichOneof("type") == "script_finished" and msg.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
            self.status = msg.script_finished
            self.finished.set()

    @property
    def client_context(self):
        return None


async def run_pages(runtime: Runtime, pages: tuple[str, ...] = PAGES, timeout: float = TIMEOUT_S,
                    foreground: int = 1) -> bool:
    """Run the app's script on each of `pages` in turn, in one session, as a browser visiting them would, waiting
    for the end of each run. The first `foreground` pages run at once; the others in the background (below the
    users' runs, each after no user's run for QUIET_S).

    Must run on the server's event loop (Streamlit's Runtime calls are made there). Returns True when every run
    finished (with or without an error drawn on its page) within `timeout`.
    """
    watcher = _Watcher()
    session_id = runtime.connect_session(watcher, user_info={})
    _SESSIONS.add(session_id)
    try:
        for i, name in enumerate(pages):
            if i >= foreground:  # the first page is what a first visitor waits for; the others wait for theirs
                _BACKGROUND.add(session_id)
                await _quiet()
            watcher.expect_run()
            runtime.handle_backmsg(session_id, BackMsg(rerun_script=ClientState(page_name=name)))
            try:
                await asyncio.wait_for(watcher.finished.wait(), timeout)
            except asyncio.TimeoutError:
                return False
            if watcher.status != ForwardMsg.FINISHED_SUCCESSFULLY:
                return False
        return True
    finally:
        runtime.close_session(session_id)
        _SESSIONS.discard(session_id)
        _BACKGROUND.discard(session_id)


async def _prefetch_settled(limit_s: float) -> None:
    """Wait (at most limit_s) for the reports the warm-up run queued ahead (ui.prefetch), so that "done" on the
    terminal means the server has nothing left to do."""
    # Imported here, not at the top: app.py imports this module as the server starts, and ui.prefetch imports torch,
    # which would hold the server back for the length of that import (the warm-up has done it by now).
    from ui import prefetch

    if not prefetch.enabled():
        return
    deadline = time.perf_counter() + limit_s
    worker = prefetch.worker()
    while not worker.idle() and time.perf_counter() < deadline:
        await asyncio.sleep(0.02)


async def warm(runtime: Runtime) -> None:
    """The warm-up, with a line on the terminal when it starts and ends (it never stops the server)."""
    t0 = time.perf_counter()
    print("  Warming up: the first pages run once in the background (SIPP_WARMUP=0 skips it)…", flush=True)
    try:
        done = await run_pages(runtime)
        await _prefetch_settled(PREFETCH_WAIT_S)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - the first page does the work instead; the server keeps serving
        print(f"  Warm-up stopped ({type(exc).__name__}: {exc}); the first page will do its work.", flush=True)
        return
    state = "done" if done else "not finished"
    print(f"  Warm-up {state} after {time.perf_counter() - t0:.1f} s.", flush=True)
    if done:
        await _a_visitor_served()
        try:
            await run_pages(runtime, AFTER_A_VISITOR, foreground=0)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the page does its own work when visited; the server keeps serving
            pass


async def _a_visitor_served() -> None:
    """Wait until a user's run has ended (a visitor's first page is drawn)."""
    while True:
        with _users_lock:
            if _users["ended"] > float("-inf"):
                return
        await asyncio.sleep(POLL_S * 4)


@asynccontextmanager
async def lifespan(_app):
    """st.App's start-up and shut-down hook (app.py): start the warm-up and serve at once.

    The server does not wait for the warm-up: a page opened meanwhile is served, and its run waits only for what
    the warm-up is still computing (the same imports, the same cached results), never computing it twice.
    """
    task = asyncio.get_running_loop().create_task(warm(Runtime.instance())) if enabled() else None
    try:
        yield
    finally:
        if task is not None and not task.done():
            task.cancel()
