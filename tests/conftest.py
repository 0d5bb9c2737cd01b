"""Keep every test away from the user's real folders: run history, checkpoint cache, data."""
import contextlib
import os
import shutil
import tempfile

import pytest

# The fault suite's rows: (case, surface, outcome, result), filled as marked tests finish.
_FAULT_ROWS: list[tuple[str, str, str, str]] = []

# Set at import time (before any test module imports the app or the engine) so that
# subprocesses started by tests, such as the browser test's `streamlit run`, inherit them.
_ROOT = tempfile.mkdtemp(prefix="sipp-tests-")
for var, sub in (("SIPP_DATA_HOME", "data-home"), ("SIPP_CACHE_DIR", "cache")):
    os.environ.setdefault(var, os.path.join(_ROOT, sub))
# The app computes the reports one slider step away in the background (ui/prefetch.py): every AppTest run
# would pay for two more reports. Off here; tests/ui/test_prefetch.py turns it on.
os.environ.setdefault("SIPP_PREFETCH", "0")


@contextlib.contextmanager
def env_var(name: str, value: str):
    """os.environ[name] = value inside the block; the old value (or its absence) afterwards.
    For module-scoped fixtures, where pytest's monkeypatch (function-scoped) is not available."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


@pytest.fixture(scope="session")
def test_root():
    return _ROOT


@pytest.fixture(scope="session")
def moons_mlp_cache(tmp_path_factory):
    """A checkpoint cache holding mlp/moons, trained briefly (3 epochs) but filed under the default
    60-epoch name, so load_trained finds it instead of training 60 epochs in every test."""
    import torch

    from sipp_core.io.checkpoints import checkpoint_name, save_checkpoint
    from sipp_core.io.data import load_dataset
    from sipp_core.zoo.models import build_model
    from sipp_core.zoo.train import DEFAULT_EPOCHS, train_model

    root = tmp_path_factory.mktemp("cache")
    rec = load_dataset("moons")
    epochs = DEFAULT_EPOCHS["mlp"]
    with torch.random.fork_rng(devices=[]):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        net, acc = train_model(build_model("mlp", rec.input_shape, rec.num_classes, seed=0), rec, epochs=3,
                               device="cpu")
        torch.set_num_threads(threads)
    save_checkpoint(root / "checkpoints" / checkpoint_name("mlp", "moons", epochs, 0), net, name="mlp",
                    dataset="moons", epochs=epochs, seed=0, input_shape=rec.input_shape,
                    num_classes=rec.num_classes, test_accuracy=acc)
    return root


@pytest.fixture
def tiny_moons_env(moons_mlp_cache, monkeypatch):
    """The mlp/moons cache as SIPP_CACHE_DIR and one torch thread (tiny nets: much faster on a busy 2-core box)."""
    import torch

    monkeypatch.setenv("SIPP_CACHE_DIR", str(moons_mlp_cache))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield moons_mlp_cache
    torch.set_num_threads(threads)


def pytest_configure(config):
    config.addinivalue_line("markers", "fault(case, surface, outcome): a case of the fault and bad-input suite")


def pytest_unconfigure(config):
    """The run's folders go with it (every run used to leave one in the temp folder)."""
    shutil.rmtree(_ROOT, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    mark = item.get_closest_marker("fault")
    if mark is None:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        result = "ok" if report.passed else ("skipped" if report.skipped else "FAILED")
        _FAULT_ROWS.append((mark.kwargs["case"], mark.kwargs["surface"], mark.kwargs["outcome"], result))


def pytest_terminal_summary(terminalreporter):
    """The fault suite's table: one row per case, with the promised outcome and whether it held."""
    if not _FAULT_ROWS:
        return
    tr = terminalreporter
    w = max(len(r[0]) for r in _FAULT_ROWS)
    tr.write_sep("=", f"fault and bad-input suite: {len(_FAULT_ROWS)} cases")
    tr.write_line(f"| {'case':<{w}} | {'surface':<12} | {'outcome':<11} | result |")
    tr.write_line(f"|{'-' * (w + 2)}|{'-' * 14}|{'-' * 13}|--------|")
    for case, surface, outcome, result in sorted(_FAULT_ROWS, key=lambda r: (r[1], r[0])):
        tr.write_line(f"| {case:<{w}} | {surface:<12} | {outcome:<11} | {result:<6} |")
    bad = sum(r[3] == "FAILED" for r in _FAULT_ROWS)
    tr.write_line(f"{len(_FAULT_ROWS) - bad} of {len(_FAULT_ROWS)} cases ended as promised")
