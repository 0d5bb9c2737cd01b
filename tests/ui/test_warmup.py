"""The server's start-up run (ui/warmup.py): how it drives a session, and that it saves no run.

The real server is exercised in tests/ui/test_browser.py (a warm-up beside a first page, and a page opened after
it); here a small stand-in for Streamlit's Runtime checks the protocol: one session, one rerun request, closed
whatever happens.
"""
from __future__ import annotations

import asyncio
import os
import sys
import threading
import time

import pytest
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.testing.v1 import AppTest

from ui import warmup


class FakeRuntime:
    """Answers each rerun request with the given script_finished statuses, one per event-loop turn."""

    def __init__(self, statuses=(ForwardMsg.FINISHED_SUCCESSFULLY,)):
        self.statuses = list(statuses)
        self.client = None
        self.reruns = 0
        self.pages: list[str] = []
        self.closed: list[str] = []
        self.seen_as_warmup: list[bool] = []
        self.seen_in_background: list[bool] = []

    def connect_session(self, client, user_info):
        self.client = client
        return "warm-1"

    def handle_backmsg(self, session_id, msg):
        assert msg.WhichOneof("type") == "rerun_script"
        self.reruns += 1
        self.pages.append(msg.rerun_script.page_name)
        self.seen_as_warmup.append(session_id in warmup._SESSIONS)
        self.seen_in_background.append(session_id in warmup._BACKGROUND)
        loop = asyncio.get_running_loop()
        for i, status in enumerate(self.statuses):
            out = ForwardMsg()
            out.script_finished = status
            loop.call_later(0.01 * (i + 1), self.client.write_forward_msg, out)

    def close_session(self, session_id):
        self.closed.append(session_id)


@pytest.fixture(autouse=True)
def no_users(monkeypatch):
    """No user's run counted yet (other tests' AppTest runs count as users' runs)."""
    monkeypatch.setattr(warmup, "_users", {"running": 0, "ended": float("-inf")})


def test_one_run_per_page_in_a_session_marked_as_the_warm_up_then_closed():
    rt = FakeRuntime()
    assert asyncio.run(warmup.run_pages(rt, pages=("", "sensitivity", "guarantees"), timeout=5)) is True
    assert rt.pages == ["", "sensitivity", "guarantees"] and rt.seen_as_warmup == [True] * 3
    assert rt.seen_in_background == [False, True, True]  # the first page at the normal priority: a visitor may wait
    assert rt.closed == ["warm-1"] and not warmup._SESSIONS and not warmup._BACKGROUND


def test_the_default_warm_up_starts_on_the_default_page():
    assert warmup.PAGES[0] == ""
    from ui.nav import PAGES

    stems = {p.path.removeprefix("pages/").removesuffix(".py") for p in PAGES}
    assert set(warmup.PAGES[1:]) <= stems  # every other name is a page's URL name
    assert set(warmup.AFTER_A_VISITOR) <= stems and "learn" in warmup.AFTER_A_VISITOR  # its first visit: 3 s


def test_a_failed_page_stops_the_warm_up():
    rt = FakeRuntime([ForwardMsg.FINISHED_WITH_COMPILE_ERROR])
    assert asyncio.run(warmup.run_pages(rt, pages=("", "sensitivity"), timeout=5)) is False
    assert rt.pages == [""] and rt.closed == ["warm-1"]


def test_a_run_cut_short_by_a_rerun_is_waited_past():
    rt = FakeRuntime([ForwardMsg.FINISHED_EARLY_FOR_RERUN, ForwardMsg.FINISHED_SUCCESSFULLY])
    assert asyncio.run(warmup.run_pages(rt, pages=("",), timeout=5)) is True
    assert rt.client.status == ForwardMsg.FINISHED_SUCCESSFULLY


def test_a_run_that_never_ends_times_out_and_its_session_is_closed():
    rt = FakeRuntime([])
    assert asyncio.run(warmup.run_pages(rt, timeout=0.1)) is False
    assert rt.closed == ["warm-1"] and not warmup._SESSIONS


def test_a_failing_runtime_still_closes_the_session():
    class Broken(FakeRuntime):
        def handle_backmsg(self, session_id, msg):
            raise RuntimeError("runtime stopped")

    rt = Broken()
    with pytest.raises(RuntimeError):
        asyncio.run(warmup.run_pages(rt, timeout=1))
    assert rt.closed == ["warm-1"] and not warmup._SESSIONS


def test_warm_reports_a_failure_on_the_terminal_and_returns(capsys):
    class Broken(FakeRuntime):
        def connect_session(self, client, user_info):
            raise RuntimeError("no sessions now")

    asyncio.run(warmup.warm(Broken()))
    out = capsys.readouterr().out
    assert "Warm-up stopped (RuntimeError: no sessions now)" in out


@pytest.mark.parametrize("value, on", [("0", False), ("off", False), ("1", True), ("", True)])
def test_sipp_warmup_switch(monkeypatch, value, on):
    if value:
        monkeypatch.setenv("SIPP_WARMUP", value)
    else:
        monkeypatch.delenv("SIPP_WARMUP", raising=False)
    assert warmup.enabled() is on


def test_the_lifespan_starts_no_run_when_switched_off(monkeypatch):
    monkeypatch.setenv("SIPP_WARMUP", "0")

    async def go():
        async with warmup.lifespan(None):
            return len(asyncio.all_tasks())

    assert asyncio.run(go()) == 1  # only this coroutine: no warm-up task


SCRIPT = """
import os
import threading
import streamlit as st
from ui import warmup
warmup.yield_cpu()
st.session_state["seen"] = warmup.is_warmup()
st.session_state["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
"""


def test_is_warmup_is_true_only_in_a_warm_up_session(monkeypatch):
    at = AppTest.from_string(SCRIPT).run()
    assert at.session_state["seen"] is False
    assert warmup.is_warmup() is False  # outside any script run
    monkeypatch.setattr(warmup, "_SESSIONS", {"test session id"})  # AppTest's session id
    at.run()
    assert at.session_state["seen"] is True


def test_warm_up_runs_past_the_first_page_yield_the_cpu_and_only_they(monkeypatch):
    base = os.getpriority(os.PRIO_PROCESS, 0)
    at = AppTest.from_string(SCRIPT).run()
    assert at.session_state["nice"] == base
    monkeypatch.setattr(warmup, "_SESSIONS", {"test session id"})
    at.run()
    assert at.session_state["nice"] == base  # the first page: a visitor may be waiting for it
    monkeypatch.setattr(warmup, "_BACKGROUND", {"test session id"})
    at.run()
    assert at.session_state["nice"] == max(base, warmup.BACKGROUND_NICE) or sys.platform != "linux"
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # the test's own thread is untouched


def test_users_runs_are_counted_and_a_page_just_drawn_keeps_them_busy(monkeypatch):
    monkeypatch.setattr(warmup, "QUIET_S", 0.2)
    assert not warmup.users_busy()
    with warmup.counted_run():
        assert warmup.users_busy() and warmup._users["running"] == 1
        # a run that fails (or st.stop, st.rerun) still ends its count
        with pytest.raises(RuntimeError), warmup.counted_run():
            raise RuntimeError("page failed")
        assert warmup._users["running"] == 1
    assert warmup._users["running"] == 0
    assert warmup.users_busy()  # its page is still being drawn
    time.sleep(0.25)
    assert not warmup.users_busy()


def test_the_pages_after_the_first_wait_until_no_user_waits_for_a_page(monkeypatch):
    """A user's page under way (or drawn less than QUIET_S ago) holds the warm-up's second page back."""
    monkeypatch.setattr(warmup, "QUIET_S", 0.1)
    rt = FakeRuntime()
    ended_user_run_at: list[float] = []
    asked_at: dict[str, float] = {}

    def handle(session_id, msg, handle=rt.handle_backmsg):
        asked_at[msg.rerun_script.page_name] = time.monotonic()
        handle(session_id, msg)

    rt.handle_backmsg = handle

    async def go():
        gate = threading.Event()

        def user():  # a user's run that takes 0.3 s, under way before the warm-up starts
            with warmup.counted_run():
                gate.set()
                time.sleep(0.3)
            ended_user_run_at.append(time.monotonic())

        t = threading.Thread(target=user)
        t.start()
        gate.wait()
        ok = await warmup.run_pages(rt, pages=("", "sensitivity"), timeout=5)
        t.join()
        return ok

    assert asyncio.run(go()) is True
    assert rt.pages == ["", "sensitivity"]
    assert asked_at[""] < ended_user_run_at[0]  # the first page is not held back: a visitor may wait for it
    assert asked_at["sensitivity"] >= ended_user_run_at[0] + 0.1


STOPPING = """
import streamlit as st
from ui import warmup
with warmup.counted_run():
    st.session_state["counted"] = warmup._users["running"]
    if warmup.redundant():
        st.stop()
    st.session_state["drawn"] = True
"""


def test_a_warm_up_run_ends_early_while_a_users_run_computes_the_page(monkeypatch):
    at = AppTest.from_string(STOPPING).run()
    assert at.session_state["counted"] == 1 and at.session_state["drawn"] is True  # a user's run: counted, drawn
    assert warmup._users["running"] == 0
    monkeypatch.setattr(warmup, "_SESSIONS", {"test session id"})  # AppTest's session id: now the warm-up's
    at = AppTest.from_string(STOPPING).run()
    assert at.session_state["counted"] == 0 and at.session_state["drawn"] is True  # not counted; nobody else runs
    monkeypatch.setitem(warmup._users, "running", 1)  # a user's run is under way
    at = AppTest.from_string(STOPPING).run()
    assert "drawn" not in at.session_state and not at.exception  # ended early, quietly


def test_every_page_but_the_compiled_one_has_the_builders_imported_before_it_runs(monkeypatch):
    from ui import nav

    imported: list[str] = []
    monkeypatch.setattr(nav, "later_import", imported.append)

    class Page:
        def __init__(self, title):
            self.title = title

        def run(self):
            pass

    nav.run_page(Page("Prune"))
    assert imported == []
    nav.run_page(Page("Sensitivity"))
    assert imported == ["ui.charts.core"] and nav.COMPILED_TITLES == {"Prune"}


def test_learn_is_warmed_only_once_a_visitors_first_page_is_drawn(monkeypatch, capsys):
    """The first section's pages run at start-up; Learn waits for a user's run to end (and for QUIET_S without
    one): before a visitor it would share the interpreter with the page they open."""
    monkeypatch.setattr(warmup, "QUIET_S", 0.05)
    monkeypatch.setattr(warmup, "PREFETCH_WAIT_S", 0.0)
    rt = FakeRuntime()

    async def go():
        task = asyncio.create_task(warmup.warm(rt))
        await asyncio.sleep(0.6)
        before = list(rt.pages)
        with warmup.counted_run():  # a visitor's first page
            pass
        await asyncio.wait_for(task, 5)
        return before

    before = asyncio.run(go())
    assert before == list(warmup.PAGES)  # nothing of AFTER_A_VISITOR before the visitor
    assert rt.pages == list(warmup.PAGES) + list(warmup.AFTER_A_VISITOR)
    assert rt.seen_in_background[len(warmup.PAGES):] == [True] * len(warmup.AFTER_A_VISITOR)
    assert "Warm-up done" in capsys.readouterr().out
