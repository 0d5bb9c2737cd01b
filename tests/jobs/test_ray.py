"""The Ray executor: the same rows as in-process, the network and data shared once, a killed worker's
point retried, cancel then resume losing nothing, cascades step for step. One local Ray (2 CPUs, loopback
only, its files under pytest's tmp) for the whole module."""
import math
import os
import signal
import socket
import threading
import time

import psutil
import pytest
import torch
from conftest import env_var

from sipp_core.errors import BadInput, SippError
from sipp_core.jobs.executors import CascadeSpec, InProcessExecutor, get_executor
from sipp_core.jobs.retrain import masks_hold
from sipp_core.jobs.sweep_points import RESULT_FIELDS
from sipp_core.jobs.sweeps import sweep

ray = pytest.importorskip("ray", reason="Ray is an optional extra; the test extra installs it")

from sipp_core.jobs.ray_executor import RayExecutor, _check_reachable  # noqa: E402 - needs ray, checked above

GRID = dict(methods=["sipp-hybrid", "wt"], ratios=[0.5, 0.2], seeds=2, sample_size=30)


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    # A short temp path: Ray's socket paths must stay under the OS limit of 107 bytes.
    tmp = tmp_path_factory.mktemp("ray")
    short = f"/tmp/sipp-ray-{os.getpid()}"
    os.symlink(tmp, short)
    with env_var("RAY_AUTH_MODE", "disabled"):  # a local test cluster: no token file in the home folder
        for attempt in (1, 2):  # Ray gives its node 30 s to start; a very busy machine can miss that once
            try:
                ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                         _temp_dir=short, log_to_driver=False, configure_logging=False)
                break
            except Exception:  # noqa: BLE001 - Ray's start-up timeout is a plain Exception
                ray.shutdown()
                if attempt == 2:
                    raise
        yield ray
        ray.shutdown()
    os.unlink(short)


@pytest.fixture
def env(local_ray, tiny_moons_env):
    yield tiny_moons_env


def _result(rows):
    return [tuple((k, r[k]) for k in RESULT_FIELDS) for r in rows]


def _norm(rows):
    """The result fields of each row, NaN as a string so that NaN equals NaN."""
    return [tuple((k, "nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in r) for r in _result(rows)]


def _same(a, b):
    """Bit for bit, in the same order."""
    return _norm(a) == _norm(b)


def test_rows_identical_to_in_process_and_shared_once(env):
    local = sweep("mlp", "moons", cache=False, **GRID)
    seen = []
    res = sweep("mlp", "moons", cache=False, executor="ray", progress=lambda f, m: seen.append((f, m)), **GRID)
    assert len(res.rows) == 8 and not res.cancelled
    assert _same(res.rows, local.rows)
    assert res.settings["sample_size_used"] == local.settings["sample_size_used"]
    assert res.run["executor"] == "ray" and res.run["workers"] == 2 and res.run["tasks"] == 8
    # network + data (2 objects) and a seed's parts reach each worker process once, not once per task
    assert res.run["shared_fetches"] <= res.run["worker_processes"] * (2 + 2)
    assert res.run["shared_fetches"] < 3 * res.run["tasks"]
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("points, 2 workers" in m for _, m in seen)  # streamed per task, with the worker count
    # the caller's own prepare (as the app does) runs here and is shared the same way
    from sipp_core.pipeline import prepare

    own = sweep("mlp", "moons", executor="ray", prepare_fn=lambda s, p=None: prepare("mlp", "moons", sample_size=30,
                                                                                       seed=s), **GRID)
    assert _same(own.rows, local.rows)


def _kill_a_busy_worker(stop: threading.Event, killed: list, task: str = "_point_task"):
    """SIGSTOP a worker process, and kill it if it was frozen inside `task`; else let it go on."""
    while not stop.is_set():
        for proc in psutil.process_iter(["pid", "cmdline"]):
            cmd = " ".join(proc.info["cmdline"] or [])
            if not cmd.startswith(f"ray::{task}"):
                continue
            try:
                proc.send_signal(signal.SIGSTOP)
                if " ".join(proc.cmdline()).startswith(f"ray::{task}"):
                    proc.send_signal(signal.SIGKILL)
                    killed.append(proc.pid)
                    return
                proc.send_signal(signal.SIGCONT)
            except psutil.Error:
                continue
        time.sleep(0.001)


def test_killed_worker_is_retried(env):
    local = sweep("mlp", "moons", cache=False, measure_errors=True, **GRID)
    stop, killed = threading.Event(), []
    watcher = threading.Thread(target=_kill_a_busy_worker, args=(stop, killed))
    watcher.start()
    try:
        res = sweep("mlp", "moons", cache=False, measure_errors=True, executor="ray", **GRID)
    finally:
        stop.set()
        watcher.join()
    assert killed, "no worker was caught running a point"
    assert not psutil.pid_exists(killed[0]) or psutil.Process(killed[0]).status() == psutil.STATUS_ZOMBIE
    assert res.run["retries"] >= 1 and not res.cancelled
    assert _same(res.rows, local.rows)


def test_cancel_then_resume_loses_nothing(env):
    full = sweep("mlp", "moons", cache=False, **GRID)
    rows_seen = []

    def stop():
        return len(rows_seen) >= 3

    part = sweep("mlp", "moons", executor="ray", progress=lambda f, m: rows_seen.append(m) if "points," in m else None,
                 should_stop=stop, **GRID)
    assert part.cancelled and 3 <= len(part.rows) < 8
    again = sweep("mlp", "moons", executor="ray", **GRID)
    assert not again.cancelled and again.run["resumed"] == len(part.rows)
    assert again.run["tasks"] == 8 - len(part.rows)  # only the missing points ran
    assert _same(again.rows, full.rows)
    assert set(_norm(part.rows)) <= set(_norm(again.rows))  # the cancelled run's rows, kept as they were
    # in-process resumes from the same rows too, and the whole result is cached afterwards
    cached = sweep("mlp", "moons", **GRID)
    assert cached.from_cache and _same(cached.rows, full.rows)


def test_cascades_step_for_step(env):
    specs = [CascadeSpec("mlp", "moons", m, (0.5, 0.2), epochs=1, seed=s, sample_size=30)
             for m in ("sipp-det", "random") for s in (0, 1)]
    local, _ = InProcessExecutor().run_cascades(specs)
    streamed = []
    stop, killed = threading.Event(), []  # one step's worker is killed mid-step: the step runs again
    watcher = threading.Thread(target=_kill_a_busy_worker, args=(stop, killed, "_cascade_task"))
    watcher.start()
    try:
        remote, facts = RayExecutor().run_cascades(specs, on_step=lambda i, st: streamed.append(i), keep_models=True)
    finally:
        stop.set()
        watcher.join()
    assert killed and facts["retries"] >= 1
    assert facts["tasks"] == 8 and sorted(streamed) == [0, 0, 1, 1, 2, 2, 3, 3]
    keys = ("keep_ratio", "kept", "accuracy_pruned", "accuracy_finetuned", "agreement_pruned", "accuracy_curve",
            "loss_curve", "pruned_weights_zero", "layer_density")
    for a, b in zip(local, remote):
        assert a.dense_accuracy == b.dense_accuracy and a.settings == b.settings
        assert [{k: s[k] for k in keys} for s in a.steps] == [{k: s[k] for k in keys} for s in b.steps]
    last = remote[0]  # the chain's network comes back on request, pruned as its masks say
    assert masks_hold(last.model, last.masks)
    assert sum(int(m.sum()) for m in last.masks.values()) == last.steps[-1]["kept"]


def test_bad_executor_and_missing_ray(env, monkeypatch):
    with pytest.raises(BadInput, match="unknown executor"):
        sweep("mlp", "moons", methods=["wt"], ratios=[0.5], executor="spark")
    with pytest.raises(BadInput, match="Ray address"):
        get_executor("in-process", ray_address="10.0.0.1:6379")
    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    t0 = time.perf_counter()
    with pytest.raises(SippError, match="nothing answers") as err:
        _check_reachable(f"127.0.0.1:{port}")
    assert "ray start --head" in err.value.fix and time.perf_counter() - t0 < 5
    import builtins

    real = builtins.__import__

    def no_ray(name, *a, **k):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(BadInput, match=r"sipp-studio\[ray\]"):
        get_executor("ray")


def test_study_same_rows_on_either_executor(env):
    from sipp_core.jobs.study import config_from_dict, run_study

    c = config_from_dict(dict(name="t", methods=["sipp-det", "random"], ratios=[0.5, 0.2], seeds=2, sample_size=30,
                              networks=[dict(model="mlp", dataset="moons")], retrain=dict(epochs=1)))
    local, remote = run_study(c, cache=False), run_study(c, executor="ray", cache=False)
    assert remote.run["executor"] == "ray" and len(local.rows) == 8
    assert local.rows.equals(remote.rows) and local.summary.equals(remote.summary)


def test_one_cascade_and_isolation_on_ray_match_in_process(env):
    from sipp_core.jobs.retrain import prune_retrain, train_isolated

    kw = dict(method="sipp-det", schedule=(0.5, 0.2), epochs=1, seed=1, sample_size=30, device="cpu")
    a, b = prune_retrain("mlp", "moons", **kw), prune_retrain("mlp", "moons", executor="ray", **kw)
    assert [s["accuracy_finetuned"] for s in a.steps] == [s["accuracy_finetuned"] for s in b.steps]
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    kw = dict(method="wt", keep_ratio=0.3, epochs=2, seed=0, device="cpu")
    seen = []
    x = train_isolated("mlp", "moons", **kw)
    y = train_isolated("mlp", "moons", executor="ray", progress=lambda f, m: seen.append(m), **kw)
    for run in ("ticket", "random"):
        assert x.__dict__[run]["accuracy_curve"] == y.__dict__[run]["accuracy_curve"]
        assert x.__dict__[run]["loss_curve"] == y.__dict__[run]["loss_curve"]
    assert x.dense_accuracy == y.dense_accuracy and not y.cancelled
    assert any("side by side" in m for m in seen)


def test_app_pages_follow_sipp_ray_address(env, monkeypatch):
    """Trade-offs and Retraining hand their jobs to Ray when SIPP_RAY_ADDRESS is set, else run in-process."""
    from sipp_core.pipeline import prepare
    from ui import ray_status
    from ui.views import tradeoffs

    monkeypatch.delenv("SIPP_RAY_ADDRESS", raising=False)
    assert ray_status.executor() is None and ray_status.note() == ""
    req = dict(model="mlp", dataset="moons", methods=["wt", "sipp-det"], ratios=[0.5, 0.2], seeds=[0],
               sample_size=30, delta=1e-16, allocation="global")

    def prep(seed, progress=None):
        return prepare("mlp", "moons", sample_size=30, seed=seed)

    here = tradeoffs.run_sweep(req, prep)
    assert here.run["executor"] == "in-process"
    # The module's Ray is already started in this process, so the executor uses it whatever the address.
    monkeypatch.setenv("SIPP_RAY_ADDRESS", "127.0.0.1:6379")
    assert isinstance(ray_status.executor(), RayExecutor) and "127.0.0.1:6379" in ray_status.note()
    seen = []
    there = tradeoffs.run_sweep(req, prep, progress=lambda f, m: seen.append(m))
    assert there.run["executor"] == "ray" and _same(there.rows, here.rows)
    assert any("points, 2 workers" in m for m in seen)  # what the page's progress line shows
