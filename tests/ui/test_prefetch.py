"""The reports one slider step away are computed while the page is read (ui/prefetch.py): which settings, that
they land in the shared store, that they are the numbers a direct computation gives, and when it is skipped."""
from __future__ import annotations

import time
from dataclasses import replace

import pytest
import torch
from pagetest import new_app, ok, page_folders  # noqa: F401  (page_folders: this module's own cache)

from sipp_core.pipeline import evaluate_prune
from ui import engine, prefetch
from ui.settings import EPS_OPTIONS, Settings


def test_neighbours_are_one_slider_step_away():
    s = Settings()
    assert [n.keep_ratio for n in prefetch.neighbours(replace(s, keep_ratio=0.1))] == [0.105, 0.095]
    assert [n.keep_ratio for n in prefetch.neighbours(replace(s, keep_ratio=0.005))] == [0.01]
    assert [n.keep_ratio for n in prefetch.neighbours(replace(s, keep_ratio=1.0))] == [0.995]
    e = replace(s, mode="eps and delta", epsilon=1.0)
    i = EPS_OPTIONS.index(1.0)
    assert [n.epsilon for n in prefetch.neighbours(e)] == [EPS_OPTIONS[i + 1], EPS_OPTIONS[i - 1]]
    assert prefetch.neighbours(replace(e, epsilon=0.123)) == []  # typed off the slider: no step to guess


def _wait_idle(timeout: float = 60.0) -> None:
    w = prefetch.worker()
    deadline = time.time() + timeout
    while not w.idle():
        assert time.time() < deadline, "the prefetch worker did not finish"
        time.sleep(0.05)


def _same_numbers(a, b) -> None:
    assert (a.result.kept, a.end_to_end) == (b.result.kept, b.end_to_end)
    for n in a.errors_heldout:
        assert a.errors_heldout[n].max == b.errors_heldout[n].max and a.errors_s[n].p95 == b.errors_s[n].p95
        assert torch.equal(a.result.plans[n].values, b.result.plans[n].values)


def test_after_the_prune_page_both_neighbours_are_ready_and_exact(monkeypatch):
    monkeypatch.setenv("SIPP_PREFETCH", "1")
    at = new_app().run()
    ok(at)
    _wait_idle()
    s = Settings()
    prepared = engine.peek_prepared(s)
    assert prepared is not None
    for n in prefetch.neighbours(s):
        assert engine.is_report_cached(n), n.keep_ratio
        _same_numbers(engine.get_report(n, prepared), evaluate_prune(prepared, **n.prune_kwargs()))
    at.slider(key="keep").set_value(0.105).run()  # the page then shows the prefetched report as it is
    ok(at)
    assert at.metric[0].value.startswith("10.50%")


def test_nothing_is_computed_ahead_when_off_or_when_a_report_is_costly(monkeypatch):
    monkeypatch.setenv("SIPP_PREFETCH", "0")
    at = new_app().run()
    at.slider(key="keep").set_value(0.4).run()
    ok(at)
    _wait_idle()
    assert not any(engine.is_report_cached(n) for n in prefetch.neighbours(replace(Settings(), keep_ratio=0.4)))
    monkeypatch.setenv("SIPP_PREFETCH", "1")
    monkeypatch.setattr(prefetch, "PREFETCH_MAX_S", 0.0)  # every report now counts as costly
    at.slider(key="keep").set_value(0.45).run()
    ok(at)
    _wait_idle()
    assert not any(engine.is_report_cached(n) for n in prefetch.neighbours(replace(Settings(), keep_ratio=0.45)))


@pytest.mark.parametrize("bad", [RuntimeError("boom")])
def test_a_failing_job_does_not_stop_the_worker(bad):
    w = prefetch.worker()
    done = w.done
    hits = []

    def fail():
        raise bad

    w.submit([fail, lambda: hits.append(1)])
    deadline = time.time() + 10
    while w.done < done + 2:
        assert time.time() < deadline
        time.sleep(0.02)
    assert hits == [1]


def test_a_new_run_drops_the_neighbours_not_yet_started(monkeypatch):
    """A page run that starts while jobs wait for their start cancels them, so they cannot hold the model's lock
    against it."""
    monkeypatch.setenv("SIPP_PREFETCH", "1")
    monkeypatch.setattr(prefetch, "START_DELAY_S", 1.0)  # the jobs wait a second before they start
    w = prefetch.worker()
    _wait_idle()
    hits = []
    w.submit([lambda: hits.append(1), lambda: hits.append(2)])
    prefetch.forget()  # what studio.py does before the page runs
    time.sleep(1.5)
    assert hits == [] and w.idle()
