"""Trade-offs, Retraining, Run history and Bring-your-own pages (AppTest), the speed panel and their helpers.

Background jobs (sweeps, retraining) run in a thread; a test clicks the button, waits for the job in
session_state, then reruns the script, as the page's polling fragment would. The run history and the
checkpoint cache live in temporary folders (SIPP_DATA_HOME, SIPP_CACHE_DIR).
"""
from __future__ import annotations

import io
import os
import pickle
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

APP = str(ROOT / "app.py")
NEW_PAGES = ["pages/tradeoffs.py", "pages/retrain.py", "pages/history.py", "pages/bring_your_own.py"]
TIMEOUT = 120
JOB_WAIT_S = 90


@pytest.fixture(scope="module", autouse=True)
def _folders(tmp_path_factory):
    old = {k: os.environ.get(k) for k in ("SIPP_CACHE_DIR", "SIPP_DATA_HOME")}
    os.environ["SIPP_CACHE_DIR"] = str(tmp_path_factory.mktemp("sipp-cache"))
    os.environ["SIPP_DATA_HOME"] = str(tmp_path_factory.mktemp("sipp-data"))
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _app():
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(APP, default_timeout=TIMEOUT)


def _ok(at, errors_allowed: bool = False) -> None:
    assert not at.exception, [e.value for e in at.exception]
    if not errors_allowed:
        assert not at.error, [e.value for e in at.error]


def _wait(at, key: str):
    job = at.session_state[key]
    assert job.join(JOB_WAIT_S), f"{key} did not finish in {JOB_WAIT_S} s: {job.message}"
    assert job.error is None, repr(job.error)
    at.run()  # what the polling fragment's full rerun does
    _ok(at)
    return job


def _frame_with(at, column: str):
    """The first st.dataframe that has this column (AppTest does not expose a dataframe's key)."""
    for d in at.dataframe:
        if column in d.value.columns:
            return d.value
    raise AssertionError(f"no dataframe with a {column!r} column")


def _metric(at, label: str) -> str:
    for m in at.metric:
        if m.label == label:
            return m.value
    raise AssertionError(f"no metric {label!r}; have {[m.label for m in at.metric]}")


@pytest.fixture(scope="module")
def app():
    at = _app().run()
    _ok(at)
    return at


def _lenet300_state_dict_bytes() -> bytes:
    import torch

    from sipp_core.io.checkpoints import ASSETS_DIR, checkpoint_name

    payload = torch.load(ASSETS_DIR / checkpoint_name("lenet300", "mnist5k", 30, 0), weights_only=True)
    buf = io.BytesIO()
    torch.save(payload["state_dict"], buf)
    return buf.getvalue()


class _Hostile:
    """Pickles to a call of os.system: it must be refused, never run."""

    def __reduce__(self):
        return (os.system, ("echo this-must-never-run",))


# ---- every page on the default ---------------------------------------------------------------------

@pytest.mark.parametrize("page,title,widgets", [
    ("pages/tradeoffs.py", "Trade-offs", [("multiselect", "to_methods"), ("select_slider", "to_range"),
                                          ("slider", "to_count"), ("number_input", "to_seeds"), ("button", "to_run")]),
    ("pages/retrain.py", "Retraining", [("selectbox", "rt_method"), ("text_input", "rt_schedule"),
                                        ("number_input", "rt_epochs"), ("button", "rt_run"), ("selectbox", "li_method"),
                                        ("select_slider", "li_keep"), ("number_input", "li_rewind"),
                                        ("radio", "li_at"), ("radio", "li_scope"), ("button", "li_run")]),
    ("pages/history.py", "Run history", []),
    ("pages/bring_your_own.py", "Bring your own", [("radio", "byo_kind"), ("radio", "byo_data_src"),
                                                   ("selectbox", "byo_arch")]),
])
def test_each_new_page_renders_on_the_default(app, page, title, widgets):
    at = app
    at.switch_page(page).run()
    _ok(at)
    assert at.title[0].value == title
    for kind, key in widgets:
        assert getattr(at, kind)(key=key) is not None, (kind, key)
    at.switch_page("pages/prune.py").run()


def test_retraining_page_shows_settings_and_a_time_estimate(app):
    at = app
    at.switch_page("pages/retrain.py").run()
    _ok(at)
    text = " ".join(c.value for c in at.caption)
    assert "restarted at each step" in text and "lr 0.001" in text
    assert "estimated" in text
    assert any("same kept count in every layer" in o for o in at.radio(key="li_scope").options)
    assert at.text_input(key="rt_schedule").value == "0.5, 0.2, 0.1, 0.05, 0.02"
    assert at.number_input(key="rt_epochs").value == 2
    at.switch_page("pages/prune.py").run()


# ---- trade-offs ------------------------------------------------------------------------------------

def test_tiny_sweep_completes_and_shows_the_potential_table(app):
    at = app
    at.switch_page("pages/tradeoffs.py").run()
    at.multiselect(key="to_methods").set_value(["sipp-det", "wt"])
    at.select_slider(key="to_range").set_value((0.05, 0.2))
    at.slider(key="to_count").set_value(2).run()
    _ok(at)
    assert any("4 points" in c.value for c in at.caption)
    at.button(key="to_run").click().run()
    _ok(at)
    job = _wait(at, "_job_sweep")
    assert not job.result.cancelled and len(job.result.rows) == 4
    assert len(at.get("vega_lite_chart")) >= 3
    potential = _frame_with(at, "largest pruned share")
    assert list(potential["method"]) == ["sipp-det", "wt"]
    assert len(at.get("download_button")) >= 2
    # the same settings again: shown from the process-wide cache, the button is off
    assert at.button(key="to_run").disabled
    # the prune potential follows the drop without recomputing
    at.number_input(key="to_drop").set_value(50.0).run()
    _ok(at)
    assert _frame_with(at, "largest pruned share")["largest pruned share"].notna().all()
    at.switch_page("pages/prune.py").run()


def test_sweep_cancel_keeps_the_finished_points():
    at = _app().run()
    at.switch_page("pages/tradeoffs.py").run()
    at.multiselect(key="to_methods").set_value(["sipp-det", "wt", "random"])
    at.slider(key="to_count").set_value(16)
    at.number_input(key="to_seeds").set_value(3).run()
    at.button(key="to_run").click().run()
    _ok(at)
    assert at.button(key="_job_sweep_cancel") is not None  # drawn by the polling fragment
    at.button(key="_job_sweep_cancel").click().run()
    job = _wait(at, "_job_sweep")
    assert job.result.cancelled
    assert len(job.result.rows) < 3 * 16 * 3
    assert any("Cancelled" in w.value for w in at.warning) or not job.result.rows


# ---- retraining -----------------------------------------------------------------------------------

def test_one_step_cascade_runs_and_checks_the_mask(app):
    at = app
    at.switch_page("pages/retrain.py").run()
    at.text_input(key="rt_schedule").set_value("0.3")
    at.number_input(key="rt_epochs").set_value(1).run()
    _ok(at)
    at.button(key="rt_run").click().run()
    job = _wait(at, "_job_cascade")
    assert len(job.result.steps) == 1 and job.result.steps[0]["pruned_weights_zero"]
    assert float(_metric(at, "Accuracy after fine-tuning").rstrip("%")) > 50
    assert any("stayed exactly zero" in c.value for c in at.caption)
    at.switch_page("pages/prune.py").run()


def test_bad_schedule_is_an_error_with_the_fix(app):
    at = app
    at.switch_page("pages/retrain.py").run()
    at.text_input(key="rt_schedule").set_value("0.1, 0.5").run()
    _ok(at, errors_allowed=True)
    assert at.error and "decrease" in at.error[0].value and "Fix" in at.error[0].value
    at.text_input(key="rt_schedule").set_value("0.5, 0.2, 0.1, 0.05, 0.02").run()
    at.switch_page("pages/prune.py").run()


def test_training_in_isolation_can_be_cancelled():
    at = _app().run()
    at.switch_page("pages/retrain.py").run()
    at.number_input(key="li_epochs").set_value(30).run()  # the shipped checkpoint: no dense training
    at.button(key="li_run").click().run()
    _ok(at)
    at.button(key="_job_isolation_cancel").click().run()
    job = _wait(at, "_job_isolation")
    assert job.result.cancelled
    assert job.result.ticket.get("epochs", 0) < 30


# ---- run history ----------------------------------------------------------------------------------

def test_history_lists_reopens_and_deletes_a_prune_run():
    from sipp_core.jobs.history import RunHistory

    at = _app().run()
    at.slider(key="keep").set_value(0.045).run()  # a prune run with a distinct setting
    _ok(at)
    at.slider(key="keep").set_value(0.2).run()
    at.switch_page("pages/history.py").run()
    _ok(at)
    hist = RunHistory()
    runs = [r for r in hist.list(kind="prune") if abs(r.settings.get("keep_ratio", 0) - 0.045) < 1e-9]
    assert runs, [r.settings for r in hist.list()]
    run_id = runs[0].id
    assert run_id in list(at.dataframe[0].value["id"])
    at.multiselect(key="hist_pick").set_value([run_id]).run()
    _ok(at)
    assert _metric(at, "Weights kept").startswith("4.")
    at.button(key="hist_reopen").click().run()  # settings back in the sidebar, Prune page opens
    _ok(at)
    assert at.title[0].value == "Prune"
    assert at.slider(key="keep").value == pytest.approx(0.045)
    at.switch_page("pages/history.py").run()
    at.multiselect(key="hist_pick").set_value([run_id]).run()
    at.button(key="hist_delete").click().run()
    at.button(key="hist_confirm_delete").click().run()
    _ok(at)
    with pytest.raises(KeyError):
        hist.get(run_id)
    assert run_id not in list(at.dataframe[0].value["id"])


def test_a_damaged_history_is_reported_and_set_aside(tmp_path):
    (tmp_path / "runs.sqlite").write_bytes(b"this is not a database" * 100)
    old = os.environ["SIPP_DATA_HOME"]
    os.environ["SIPP_DATA_HOME"] = str(tmp_path)
    try:
        with pytest.warns(RuntimeWarning, match="not deleted"):  # the Prune page opens the history first
            at = _app().run()
            at.switch_page("pages/history.py").run()
        _ok(at)
        assert any("damaged" in w.value and "not deleted" in w.value.lower() for w in at.warning)
        assert list(tmp_path.glob("runs.sqlite.corrupt-*"))
    finally:
        os.environ["SIPP_DATA_HOME"] = old


# ---- bring your own -------------------------------------------------------------------------------

def test_byo_good_state_dict_is_pruned_and_bad_uploads_are_refused():
    at = _app().run()
    at.switch_page("pages/bring_your_own.py").run()
    _ok(at)
    at.file_uploader(key="byo_model_file").set_value(("w.pt", _lenet300_state_dict_bytes(),
                                                      "application/octet-stream")).run()
    _ok(at)
    assert at.success and "266,200 prunable weights" in at.success[0].value
    assert _metric(at, "Weights kept").startswith("10.")
    assert len(at.dataframe) >= 2
    from sipp_core.jobs.history import RunHistory
    from ui.view_history import settings_from_run

    runs = [r for r in RunHistory().list(kind="prune") if r.settings.get("source") == "upload"]
    assert runs and runs[0].settings["model"].startswith("lenet300")  # the upload's prune is in the history
    values, notes = settings_from_run(runs[0].settings)
    assert "model" not in values and any("Bring your own" in n for n in notes)
    # hostile pickle: refused with the fix, the sidebar and its values are kept
    at.slider(key="keep").set_value(0.05).run()
    at.file_uploader(key="byo_model_file").set_value(("evil.pt", pickle.dumps({"w": _Hostile()}),
                                                      "application/octet-stream")).run()
    _ok(at, errors_allowed=True)
    assert at.error and "refused" in at.error[0].value and "torch.save" in at.error[0].value
    assert at.slider(key="keep").value == pytest.approx(0.05)
    # wrong architecture for these weights: the shapes are named and the right architecture suggested
    at.selectbox(key="byo_arch").set_value("lenet5")
    at.file_uploader(key="byo_model_file").set_value(("w.pt", _lenet300_state_dict_bytes(),
                                                      "application/octet-stream")).run()
    _ok(at, errors_allowed=True)
    assert at.error and "lenet300" in at.error[0].value and "shape" in at.error[0].value
    at.switch_page("pages/prune.py").run()
    _ok(at)
    assert _metric(at, "Weights kept")


def test_byo_helpers_refuse_hostile_and_wrong_files():
    from sipp_core.io.data import load_dataset
    from ui.view_byo import load_data_upload, load_model_upload

    rec = load_dataset("mnist5k")
    with pytest.raises(ValueError, match="refused"):
        load_model_upload("state_dict", pickle.dumps({"w": _Hostile()}), rec, "lenet300")
    with pytest.raises(ValueError, match="not an exported program|not a .pt2"):
        load_model_upload("export", _lenet300_state_dict_bytes(), rec)
    with pytest.raises(ValueError, match="PyTorch file"):
        load_data_upload(_lenet300_state_dict_bytes())


def test_byo_refusals_always_name_a_fix():
    import numpy as np

    from ui.view_byo import load_data_upload, refusal

    buf = io.BytesIO()
    np.savez(buf, x_train=np.zeros((10, 4)), y_train=np.full(10, -1), x_test=np.zeros((5, 4)),
             y_test=np.zeros(5, dtype=int))
    with pytest.raises(ValueError) as info:
        load_data_upload(buf.getvalue())
    text = refusal("The data set", info.value, "data")
    assert "label -1" in text and "Fix: save the data with np.savez" in text
    assert "Fix" not in refusal("x", ValueError("too big; upload a smaller file"), "model")


def test_byo_npz_upload_with_an_uploaded_state_dict(tmp_path):
    import numpy as np

    from sipp_core.io.data import load_dataset

    rec = load_dataset("mnist5k")
    buf = io.BytesIO()
    np.savez(buf, x_train=rec.x_train.numpy()[:400], y_train=rec.y_train.numpy()[:400],
             x_test=rec.x_test.numpy()[:200], y_test=rec.y_test.numpy()[:200])
    at = _app().run()
    at.switch_page("pages/bring_your_own.py").run()
    at.radio(key="byo_data_src").set_value("npz").run()
    at.file_uploader(key="byo_npz_file").set_value(("mine.npz", buf.getvalue(), "application/octet-stream")).run()
    _ok(at)
    at.file_uploader(key="byo_model_file").set_value(("w.pt", _lenet300_state_dict_bytes(),
                                                      "application/octet-stream")).run()
    _ok(at)
    assert "mine" in at.success[0].value and _metric(at, "Accuracy after")


# ---- speed panel, charts --------------------------------------------------------------------------

def test_speed_panel_helper_returns_its_tables_on_pruned_lenet300():
    from sipp_core.pipeline import evaluate_prune, prepare
    from ui.view_speed import speed_report, speed_tables

    report = evaluate_prune(prepare("lenet300", "mnist5k"), keep_ratio=0.05)
    t = speed_tables(speed_report(report.result, repeats=5))
    assert sorted(t["totals"]["batch size"]) == [1, 256]
    assert len(t["layers"]) == 6 and len(t["files"]) == 4
    assert any("File size" in line for line in t["verdict"]) and "structured" in t["explanation"]


def test_speed_panel_on_the_prune_page(app):
    at = app
    at.button(key="speed_run").click().run()
    _ok(at)
    assert any("batch 256" in m.value for m in at.markdown)


def test_chart_builders_handle_nan_bounds_and_single_seed():
    import math

    import pandas as pd

    from sipp_core.jobs.sweeps import prune_potential
    from ui import charts_tradeoffs as ct

    rows = []
    for seed in (0, 1):
        for m in ("sipp-det", "wt"):
            for k, acc in ((0.5, 0.97), (0.1, 0.95), (0.02, 0.6)):
                rows.append(dict(method=m, seed=seed, keep_ratio_requested=k, keep_ratio=k, kept=1, total=10,
                                 accuracy_before=0.97, accuracy_after=acc - 0.01 * seed, accuracy_drop=0.97 - acc,
                                 agreement=0.9, logits_rel_error=0.0 if k == 0.5 else 0.1 / k,
                                 bound_max=(1 / k) if m == "sipp-det" else math.nan, measured_max_heldout=math.nan,
                                 failure_rate_heldout=math.nan, time_s=0.01, error=None))
    df = pd.DataFrame(rows)
    for chart in (ct.accuracy_chart(df, 1.0), ct.error_chart(df), ct.bound_chart(df),
                  ct.potential_chart(prune_potential(df, 0.01), 1.0)):
        spec = chart.to_dict()
        assert spec["title"]["text"]
        titles = _axis_titles(spec)
        assert titles["x"] and titles["y"], titles
    assert ct.bound_chart(df[df["method"] == "wt"]) is None
    assert ct.aggregate(df)["seeds"].max() == 2


def test_history_settings_map_back_to_sidebar_widgets():
    from ui.view_history import settings_from_run

    values, notes = settings_from_run(dict(model="lenet300", dataset="mnist5k", method="sipp-det", mode="eps and delta",
                                           epsilon=0.5000001, delta=1e-16, seed=3, auto_sample=True, c_prime=3.0))
    assert values["eps"] == 0.5 and values["mode"] == "eps and delta" and values["seed"] == 3 and not notes
    _, notes = settings_from_run(dict(model="no-such-net"))
    assert notes


def _axis_titles(spec) -> dict:
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


def test_trade_off_charts_are_titled_with_axis_units_and_never_import_streamlit():
    import subprocess

    import pandas as pd

    from ui import charts_tradeoffs as ct

    steps = [dict(step=1, keep_ratio_requested=0.5, keep_ratio=0.5, accuracy_pruned=0.9, accuracy_finetuned=0.95),
             dict(step=2, keep_ratio_requested=0.1, keep_ratio=0.1, accuracy_pruned=0.7, accuracy_finetuned=0.93)]
    ticket = dict(accuracy_init=0.1, accuracy_curve=[0.8, 0.9], keep_ratio=0.05, accuracy=0.9)
    random = dict(accuracy_init=0.1, accuracy_curve=[0.7, 0.8], keep_ratio=0.05, accuracy=0.8)
    layers = pd.DataFrame([dict(name="1", kind="linear", batch_size=b, dense_ms=1.0, csr_ms=c, density=0.1)
                           for b, c in ((1, 2.0), (256, 0.5))])
    charts = [ct.cascade_chart(steps, 0.96), ct.isolation_chart(ticket, random, 0.96),
              ct.speedup_chart(layers, [dict(batch_size=1, dense_ms=1.0, csr_ms=2.0, layers=1)]),
              ct.file_size_chart(dict(dense=1000, dense_zip=200, csr_torch=500, csr_npz=150))]
    for c in charts:
        spec = c.to_dict()
        assert spec["title"]["text"]
        titles = _axis_titles(spec)
        assert titles["x"] and titles["y"], titles
        assert spec["usermeta"]["sipp_height"] > 100
    code = ("import sys; sys.path.insert(0, %r); import ui.charts_tradeoffs; "
            "assert 'streamlit' not in sys.modules, 'streamlit imported'" % str(ROOT))
    subprocess.run([sys.executable, "-c", code], check=True)
