"""What the page tests share: a fresh app (AppTest), checks, and waiting for a background job.

Background jobs (sweeps, retraining) run in a thread; a test clicks the button, waits for the job in
session_state, then reruns the script, as the page's polling fragment would. The run history and the
checkpoint cache live in temporary folders (SIPP_DATA_HOME, SIPP_CACHE_DIR), one pair per page test module.
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the app's `ui` package
APP = str(ROOT / "studio.py")
TIMEOUT = 120
JOB_WAIT_S = 90


@contextlib.contextmanager
def data_folders(tmp_path_factory):
    """SIPP_CACHE_DIR and SIPP_DATA_HOME in fresh temporary folders inside the block (a page module's fixture)."""
    old = {k: os.environ.get(k) for k in ("SIPP_CACHE_DIR", "SIPP_DATA_HOME")}
    os.environ["SIPP_CACHE_DIR"] = str(tmp_path_factory.mktemp("sipp-cache"))
    os.environ["SIPP_DATA_HOME"] = str(tmp_path_factory.mktemp("sipp-data"))
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module", autouse=True)
def page_folders(tmp_path_factory):
    """A page test module's own run history and checkpoint cache (import it into the module to use it)."""
    with data_folders(tmp_path_factory):
        yield


@pytest.fixture(scope="module")
def app():
    """The app on the default settings, shared by a page test module's tests."""
    return started_app()


def started_app():
    """An app on the default settings, run once, on the Prune page (a page module's shared fixture)."""
    at = new_app().run()
    ok(at)
    return at


def new_app():
    return AppTest.from_file(APP, default_timeout=TIMEOUT)


def ok(at, errors_allowed: bool = False) -> None:
    assert not at.exception, [e.value for e in at.exception]
    if not errors_allowed:
        assert not at.error, [e.value for e in at.error]


def wait(at, key: str):
    job = at.session_state[key]
    assert job.join(JOB_WAIT_S), f"{key} did not finish in {JOB_WAIT_S} s: {job.message}"
    assert job.error is None, repr(job.error)
    at.run()  # what the polling fragment's full rerun does
    ok(at)
    return job


def frame_with(at, column: str):
    """The first st.dataframe that has this column (AppTest does not expose a dataframe's key)."""
    for d in at.dataframe:
        if column in d.value.columns:
            return d.value
    raise AssertionError(f"no dataframe with a {column!r} column")


def metric(at, label: str) -> str:
    for m in at.metric:
        if m.label == label:
            return m.value
    raise AssertionError(f"no metric {label!r}; have {[m.label for m in at.metric]}")


def axis_titles(spec) -> dict:
    """Every x / y title anywhere in a chart spec (layers, facets)."""
    found = {"x": [], "y": []}

    def walk(d):
        if isinstance(d, dict):
            enc = d.get("encoding", {})
            for ch in ("x", "y"):
                if isinstance(enc.get(ch), dict) and enc[ch].get("title"):
                    found[ch].append(enc[ch]["title"])
            for v in d.values():
                walk(v)
        elif isinstance(d, list):
            for v in d:
                walk(v)

    walk(spec)
    return found


@pytest.fixture(scope="module")
def prepared():
    """A small LeNet-300 on mnist5k, 40 points of S and 120 held-out points: the chart tests' records (import it
    into a test module to use it)."""
    from sipp_core.pipeline import prepare

    return prepare("lenet300", "mnist5k", sample_size=40, heldout=120)
