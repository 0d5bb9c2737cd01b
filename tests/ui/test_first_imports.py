"""ui/first_imports.py: the first run's imports are made with the garbage collector off, then frozen, once; two
runs making them at once freeze when the first is done and turn the collector back on only when both are; a
failed import freezes nothing."""
from __future__ import annotations

import gc
import threading

import pytest

from ui import first_imports


@pytest.fixture
def fresh(monkeypatch):
    """A process whose imports are not made yet; gc.freeze recorded, not done (it would freeze this test run)."""
    monkeypatch.setattr(first_imports, "_state", {"inside": 0, "was_enabled": True, "frozen": False})
    frozen: list[int] = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(1))
    assert gc.isenabled()
    yield frozen
    gc.enable()


def test_the_imports_run_without_the_collector_then_are_frozen_once(fresh):
    with first_imports.heavy_imports():
        assert not gc.isenabled()
    assert gc.isenabled() and fresh == [1]
    with first_imports.heavy_imports():  # a later run: nothing to do, the collector is left alone
        assert gc.isenabled()
    assert fresh == [1]


def test_two_runs_importing_at_once_turn_the_collector_on_when_both_are_done(fresh):
    inside, release = threading.Event(), threading.Event()

    def other_run():
        with first_imports.heavy_imports():
            inside.set()
            release.wait(5)

    t = threading.Thread(target=other_run)
    t.start()
    inside.wait(5)
    with first_imports.heavy_imports():
        assert not gc.isenabled()
    # the first run done freezes (its script's end is followed by a full collection), but the other run is still
    # importing: the collector stays off
    assert not gc.isenabled() and fresh == [1]
    release.set()
    t.join(5)
    assert gc.isenabled() and fresh == [1]


def test_a_failed_import_freezes_nothing_and_the_next_run_tries_again(fresh):
    with pytest.raises(ImportError), first_imports.heavy_imports():
        raise ImportError("no module named torch")
    assert gc.isenabled() and fresh == []
    with first_imports.heavy_imports():
        assert not gc.isenabled()
    assert gc.isenabled() and fresh == [1]


def test_a_collector_switched_off_before_stays_off(fresh):
    gc.disable()
    with first_imports.heavy_imports():
        pass
    assert not gc.isenabled() and fresh == [1]


def test_a_later_import_runs_without_the_collector_then_freezes_and_only_once(fresh, monkeypatch, tmp_path):
    """What the first page does without (the chart builders) is imported later the same way: collector off, then
    its objects frozen; a module already imported costs nothing."""
    (tmp_path / "sipp_later_probe.py").write_text("import gc\nCOLLECTOR_ON = gc.isenabled()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    first_imports.later_import("sipp_later_probe")
    import sipp_later_probe

    assert sipp_later_probe.COLLECTOR_ON is False and gc.isenabled() and fresh == [1]
    first_imports.later_import("sipp_later_probe")  # already there: no second freeze
    assert fresh == [1]


def test_a_failed_later_import_still_turns_the_collector_back_on(fresh):
    with pytest.raises(ModuleNotFoundError):
        first_imports.later_import("sipp_no_such_module_here")
    assert gc.isenabled()
