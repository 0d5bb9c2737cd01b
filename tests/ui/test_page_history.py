"""The Run history page (AppTest): list, reopen and delete a prune run; a damaged history; reopening settings."""
from __future__ import annotations

import os

import pytest
from pagetest import app, metric, new_app, ok, page_folders  # noqa: F401 - the module's fixtures

from sipp_core.jobs.history import RunHistory
from ui.views.history import settings_from_run


def test_page_renders_on_the_default(app):
    at = app
    at.switch_page("pages/history.py").run()
    ok(at)
    assert at.title[0].value == "Run history"
    at.switch_page("pages/prune.py").run()


def test_history_lists_reopens_and_deletes_a_prune_run():
    at = new_app().run()
    at.slider(key="keep").set_value(0.045).run()  # a prune run with a distinct setting
    ok(at)
    at.slider(key="keep").set_value(0.2).run()
    at.switch_page("pages/history.py").run()
    ok(at)
    hist = RunHistory()
    runs = [r for r in hist.list(kind="prune") if abs(r.settings.get("keep_ratio", 0) - 0.045) < 1e-9]
    assert runs, [r.settings for r in hist.list()]
    run_id = runs[0].id
    assert run_id in list(at.dataframe[0].value["id"])
    at.multiselect(key="hist_pick").set_value([run_id]).run()
    ok(at)
    assert metric(at, "Weights kept").startswith("4.")
    at.button(key="hist_reopen").click().run()  # settings back in the sidebar, Prune page opens
    ok(at)
    assert at.title[0].value == "Prune"
    assert at.slider(key="keep").value == pytest.approx(0.045)
    at.switch_page("pages/history.py").run()
    at.multiselect(key="hist_pick").set_value([run_id]).run()
    at.button(key="hist_delete").click().run()
    at.button(key="hist_confirm_delete").click().run()
    ok(at)
    with pytest.raises(KeyError):
        hist.get(run_id)
    assert run_id not in list(at.dataframe[0].value["id"])


def test_a_damaged_history_is_reported_and_set_aside(tmp_path):
    (tmp_path / "runs.sqlite").write_bytes(b"this is not a database" * 100)
    old = os.environ["SIPP_DATA_HOME"]
    os.environ["SIPP_DATA_HOME"] = str(tmp_path)
    try:
        with pytest.warns(RuntimeWarning, match="not deleted"):  # the Prune page opens the history first
            at = new_app().run()
            at.switch_page("pages/history.py").run()
        ok(at)
        assert any("damaged" in w.value and "not deleted" in w.value.lower() for w in at.warning)
        assert list(tmp_path.glob("runs.sqlite.corrupt-*"))
    finally:
        os.environ["SIPP_DATA_HOME"] = old


def test_history_settings_map_back_to_sidebar_widgets():
    values, notes = settings_from_run(dict(model="lenet300", dataset="mnist5k", method="sipp-det", mode="eps and delta",
                                           epsilon=0.5000001, delta=1e-16, seed=3, auto_sample=True, c_prime=3.0))
    assert values["eps"] == 0.5 and values["mode"] == "eps and delta" and values["seed"] == 3 and not notes
    _, notes = settings_from_run(dict(model="no-such-net"))
    assert notes


def test_reopening_an_uploaded_run_asks_for_the_same_file():
    from rawdigits import raw_digits_files

    data, weights, _ = raw_digits_files()
    at = new_app().run()
    at.switch_page("pages/bring_your_own.py").run()
    at.radio(key="byo_data_src").set_value("npz").run()
    at.file_uploader(key="byo_npz_file").set_value(("digits-raw.npz", data, "application/octet-stream")).run()
    at.selectbox(key="byo_arch").set_value("mlp")
    at.file_uploader(key="byo_model_file").set_value(("w.pt", weights, "application/octet-stream")).run()
    ok(at)
    run = next(r for r in RunHistory().list(kind="prune") if r.settings.get("source") == "upload")
    fresh = new_app().run()
    fresh.switch_page("pages/history.py").run()
    fresh.multiselect(key="hist_pick").set_value([run.id]).run()
    fresh.button(key="hist_reopen").click().run()
    ok(fresh)
    assert fresh.title[0].value == "Bring your own"  # never the sidebar's zoo model on the Prune page
    sha = run.settings["model"].rsplit("-", 1)[-1]
    assert any(f"Reopened run #{run.id}" in i.value and sha in i.value for i in fresh.info)
    fresh.switch_page("pages/bring_your_own.py").run()  # AppTest stays on the page it ran; the app moved on
    fresh.radio(key="byo_data_src").set_value("npz").run()
    fresh.file_uploader(key="byo_npz_file").set_value(("digits-raw.npz", data, "application/octet-stream")).run()
    fresh.selectbox(key="byo_arch").set_value("mlp")
    fresh.file_uploader(key="byo_model_file").set_value(("w.pt", weights, "application/octet-stream")).run()
    ok(fresh)
    assert any(f"This is the file of run #{run.id}" in m.value for m in fresh.success)
