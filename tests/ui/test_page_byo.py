"""The Bring-your-own page (AppTest) and its upload helpers: a good state_dict is pruned and saved to the run
history, hostile and wrong files are refused with the fix, a .npz data set with an uploaded model."""
from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest
import torch
from pagetest import app, metric, new_app, ok, page_folders  # noqa: F401 - the module's fixtures

from sipp_core.io.checkpoints import ASSETS_DIR, checkpoint_name
from sipp_core.io.data import load_dataset
from sipp_core.jobs.history import RunHistory
from ui.views.bring_your_own import load_data_upload, load_model_upload, refusal
from ui.views.history import settings_from_run


def _lenet300_state_dict_bytes() -> bytes:
    payload = torch.load(ASSETS_DIR / checkpoint_name("lenet300", "mnist5k", 30, 0), weights_only=True)
    buf = io.BytesIO()
    torch.save(payload["state_dict"], buf)
    return buf.getvalue()


class _Hostile:
    """Pickles to a call of os.system: it must be refused, never run."""

    def __reduce__(self):
        return (os.system, ("echo this-must-never-run",))


def test_page_renders_on_the_default(app):
    at = app
    at.switch_page("pages/bring_your_own.py").run()
    ok(at)
    assert at.title[0].value == "Bring your own"
    for kind, key in [("radio", "byo_kind"), ("radio", "byo_data_src"), ("selectbox", "byo_arch")]:
        assert getattr(at, kind)(key=key) is not None, (kind, key)
    at.switch_page("pages/prune.py").run()


def test_byo_good_state_dict_is_pruned_and_bad_uploads_are_refused():
    at = new_app().run()
    at.switch_page("pages/bring_your_own.py").run()
    ok(at)
    at.file_uploader(key="byo_model_file").set_value(("w.pt", _lenet300_state_dict_bytes(),
                                                      "application/octet-stream")).run()
    ok(at)
    assert at.selectbox(key="byo_arch").value == "auto"  # the architecture is found, and named
    assert at.success and "266,200 prunable weights" in at.success[0].value and "**lenet300-" in at.success[0].value
    assert "fit the zoo's **lenet300** architecture" in at.success[0].value
    assert metric(at, "Weights kept").startswith("10.")
    assert len(at.dataframe) >= 2
    runs = [r for r in RunHistory().list(kind="prune") if r.settings.get("source") == "upload"]
    assert runs and runs[0].settings["model"].startswith("lenet300")  # the upload's prune is in the history
    values, notes = settings_from_run(runs[0].settings)
    assert "model" not in values and any("Bring your own" in n for n in notes)
    # hostile pickle: refused with the fix, the sidebar and its values are kept
    at.slider(key="keep").set_value(0.05).run()
    at.file_uploader(key="byo_model_file").set_value(("evil.pt", pickle.dumps({"w": _Hostile()}),
                                                      "application/octet-stream")).run()
    ok(at, errors_allowed=True)
    assert at.error and "refused" in at.error[0].value and "torch.save" in at.error[0].value
    assert at.slider(key="keep").value == pytest.approx(0.05)
    # wrong architecture for these weights: the shapes are named and the right architecture suggested
    at.selectbox(key="byo_arch").set_value("lenet5")
    at.file_uploader(key="byo_model_file").set_value(("w.pt", _lenet300_state_dict_bytes(),
                                                      "application/octet-stream")).run()
    ok(at, errors_allowed=True)
    assert at.error and "lenet300" in at.error[0].value and "shape" in at.error[0].value
    at.switch_page("pages/prune.py").run()
    ok(at)
    assert metric(at, "Weights kept")


def test_byo_helpers_refuse_hostile_and_wrong_files():
    rec = load_dataset("mnist5k")
    with pytest.raises(ValueError, match="refused"):
        load_model_upload("state_dict", pickle.dumps({"w": _Hostile()}), rec, "lenet300")
    with pytest.raises(ValueError, match="not an exported program|not a .pt2"):
        load_model_upload("export", _lenet300_state_dict_bytes(), rec)
    with pytest.raises(ValueError, match="PyTorch file"):
        load_data_upload(_lenet300_state_dict_bytes())


def test_byo_refusals_always_name_a_fix():
    buf = io.BytesIO()
    np.savez(buf, x_train=np.zeros((10, 4)), y_train=np.full(10, -1), x_test=np.zeros((5, 4)),
             y_test=np.zeros(5, dtype=int))
    with pytest.raises(ValueError) as info:
        load_data_upload(buf.getvalue())
    text = refusal("The data set", info.value, "data")
    assert "label -1" in text and "Fix: save the data with np.savez" in text
    assert "Fix" not in refusal("x", ValueError("too big; upload a smaller file"), "model")


def test_byo_npz_upload_with_an_uploaded_state_dict(tmp_path):
    rec = load_dataset("mnist5k")
    buf = io.BytesIO()
    np.savez(buf, x_train=rec.x_train.numpy()[:400], y_train=rec.y_train.numpy()[:400],
             x_test=rec.x_test.numpy()[:200], y_test=rec.y_test.numpy()[:200])
    at = new_app().run()
    at.switch_page("pages/bring_your_own.py").run()
    at.radio(key="byo_data_src").set_value("npz").run()
    at.file_uploader(key="byo_npz_file").set_value(("mine.npz", buf.getvalue(), "application/octet-stream")).run()
    ok(at)
    at.file_uploader(key="byo_model_file").set_value(("w.pt", _lenet300_state_dict_bytes(),
                                                      "application/octet-stream")).run()
    ok(at)
    assert "mine" in at.success[0].value and metric(at, "Accuracy after")


def test_raw_input_model_on_its_own_data_shows_plain_pytorch_accuracy():
    from rawdigits import raw_digits_files

    data, weights, plain = raw_digits_files()
    at = new_app().run()
    at.switch_page("pages/bring_your_own.py").run()
    at.radio(key="byo_data_src").set_value("npz").run()
    assert at.selectbox(key="byo_preprocessing").value == "as-given"  # the default for an uploaded model
    at.file_uploader(key="byo_npz_file").set_value(("digits-raw.npz", data, "application/octet-stream")).run()
    at.selectbox(key="byo_arch").set_value("mlp")
    at.file_uploader(key="byo_model_file").set_value(("w.pt", weights, "application/octet-stream")).run()
    ok(at)
    assert any("preprocessing: as given" in c.value for c in at.caption)
    report = next(iter(at.session_state["_byo"]["reports"].values()))
    assert report.end_to_end.accuracy_before == pytest.approx(plain, abs=1e-6)
    assert any(f"before: {100 * plain:.1f}%" in c.value for c in at.caption)
    runs = [r for r in RunHistory().list(kind="prune") if r.settings.get("source") == "upload"]
    assert runs[0].settings["preprocessing"] == "as-given"
