"""The Run history page (AppTest): list, reopen and delete a prune run; a damaged history; reopening settings."""
from __future__ import annotations

import os

import pandas as pd
import pytest
from pagetest import app, metric, new_app, ok, page_folders  # noqa: F401 - the module's fixtures

from sipp_core.jobs.history import RunHistory
from ui import warmup
from ui.views.history import overlay_frame, settings_from_run, smp_overlay_frame


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


def test_the_servers_warm_up_run_is_not_saved_but_the_same_run_by_a_user_is(monkeypatch):
    def saved():
        return [r for r in RunHistory().list(kind="prune") if abs(r.settings.get("keep_ratio", 0) - 0.055) < 1e-9]

    monkeypatch.setattr(warmup, "_SESSIONS", {"test session id"})  # AppTest's session, taken for the warm-up's
    at = new_app().run()
    at.slider(key="keep").set_value(0.055).run()
    ok(at)
    assert not saved()
    warmup._SESSIONS.clear()  # the same session, now a user's
    at.run()
    ok(at)
    assert len(saved()) == 1


def test_a_later_server_does_not_save_the_same_run_again():
    """Each server starts with an empty memory of what it saved: the history itself tells it that the same
    settings, with the same results, are saved already (the default run is not added at every start)."""
    from ui import run_store

    def saved():
        return [r.id for r in RunHistory().list(kind="prune") if abs(r.settings.get("keep_ratio", 0) - 0.065) < 1e-9]

    at = new_app().run()
    at.slider(key="keep").set_value(0.065).run()
    ok(at)
    assert len(saved()) == 1
    run_store._saved.clear()  # what a new server process starts with
    at.run()
    ok(at)
    assert len(saved()) == 1
    RunHistory().delete(saved())  # deleted: the same run is saved again when it is next computed
    run_store._saved.clear()
    at.run()
    ok(at)
    assert len(saved()) == 1


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


def _sweep_rows(method_acc: dict, ratios=(0.5, 0.1, 0.05)) -> list[dict]:
    return [dict(method=m, seed=0, keep_ratio_requested=r, keep_ratio=r, accuracy_before=0.98, accuracy_after=a,
                 accuracy_drop=0.98 - a, error=None) for m, accs in method_acc.items() for r, a in zip(ratios, accs)]


def test_comparing_runs_overlays_them_on_one_chart():
    import json

    hist = RunHistory()
    common = dict(model="lenet5", dataset="mnist5k")
    a = hist.add("sweep", dict(common, methods=["wt", "sipp-hybrid"], ratios=[0.5, 0.1, 0.05], seeds=[0]),
                 dict(rows=_sweep_rows({"wt": [0.98, 0.97, 0.95], "sipp-hybrid": [0.975, 0.96, 0.90]})))
    b = hist.add("retrain", dict(common, method="sipp-hybrid", schedule=[0.5, 0.1]),
                 dict(steps=[dict(keep_ratio=0.5, keep_ratio_requested=0.5, accuracy_finetuned=0.985),
                             dict(keep_ratio=0.1, keep_ratio_requested=0.1, accuracy_finetuned=0.98)],
                      dense_accuracy=0.98))
    n = hist.add("nonsmoothness", dict(common, method="sipp-hybrid", paths=dict(count=4, points=256, kind="mixed")),
                 dict(keep_ratio=0.1, original=dict(smp=4.7, relative_smp=0.5, logit_variation=9.4),
                      pruned=dict(smp=1.6, relative_smp=0.8, logit_variation=2.0)))
    at = new_app().run()
    at.switch_page("pages/history.py").run()
    ok(at)
    at.multiselect(key="hist_pick").set_value([a, b, n]).run()
    at.button(key="hist_compare").click().run()
    ok(at)
    at.run()  # any rerun (presentation mode turned on): the comparison stays while the selection does
    ok(at)
    specs = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    acc = next(s for s in specs if "Accuracy vs weights kept" in json.dumps(s.get("title")))
    assert '"values": [5.0, 10.0, 50.0]' in json.dumps(acc)  # ticks at the kept shares that were run
    assert any("Relative SMP" in json.dumps(s.get("title")) for s in specs)
    records = [hist.get(i) for i in (a, b, n)]
    frame = overlay_frame(records)  # what the chart draws
    assert set(frame["run"]) == {f"#{a} wt (sweep)", f"#{a} sipp-hybrid (sweep)", f"#{b} sipp-hybrid (fine-tuned)"}
    assert frame.set_index("run").loc[f"#{b} sipp-hybrid (fine-tuned)", "acc_pct"].tolist() == [98.5, 98.0]
    assert sorted(smp_overlay_frame(records)["relative_smp"]) == [0.5, 0.8]
    verdict = next(v.value for v in at.success if v.value.startswith("**Verdict**"))
    # at the keep ratios every series ran (0.5 and 0.1), the fine-tuned cascade is best
    assert f"over the 2 keep ratios every method ran (0.5, 0.1): **#{b} sipp-hybrid (fine-tuned)** (98.2%)" in verdict
    assert f"#{b} sipp-hybrid (fine-tuned) beats #{a} wt (sweep) at every tested keep ratio, by 0.5 to 1.0 points" \
        in verdict
    assert f"beats #{a} sipp-hybrid (sweep) at every tested keep ratio, by 1.0 to 2.0 points" in verdict
    # the table: the settings that differ first, in words, a sweep's methods and keep ratios among them
    table = at.dataframe[1].value
    assert table.index[0] == "setting: methods" and table.loc["setting: methods", f"#{a} sweep"] == "wt, sipp-hybrid"
    assert table.loc["setting: ratios", f"#{a} sweep"] == "0.5, 0.1, 0.05" and table.loc["setting: ratios", "differs"]
    assert not any(i.startswith(("settings.", "results.")) for i in table.index)
    listing = at.dataframe[0].value.set_index("id")
    assert listing.loc[b, "accuracy after"] == "98.00%" and listing.loc[b, "kept share"] == "10.00%"  # last step
    assert listing.loc[a, "accuracy after"] == "" and listing.loc[n, "accuracy after"] == ""  # no single figure: empty
    # one nonsmoothness run on its own: its table and verdict
    at.multiselect(key="hist_pick").set_value([n]).run()
    ok(at)
    assert any("lowered output SMP from **4.7 to 1.6**" in v.value for v in at.success)


def _positional_rows() -> list[dict]:
    """LeNet-300-100's layer rows as runs saved them before the built-in networks named their layers."""
    return [dict(label=f"{i} · {shape}", name=str(i), kind="linear", kept=kept, total=total)
            for i, shape, kept, total in ((1, "Linear 784→300", 2352, 235200), (3, "Linear 300→100", 300, 30000),
                                          (5, "Linear 100→10", 10, 1000))]


def test_a_run_saved_before_layers_had_names_is_shown_with_todays_names():
    from ui.settings import Settings

    settings = {**Settings().as_dict(), "keep_ratio": 0.0123}  # lenet300 on mnist5k
    results = dict(keep_ratio=0.0123, accuracy_after=0.5, has_bound=False, measured_max_heldout=0.1,
                   layers=_positional_rows())
    run_id = RunHistory().add("prune", settings, results)
    at = new_app().run()
    at.switch_page("pages/history.py").run()
    at.multiselect(key="hist_pick").set_value([run_id]).run()
    ok(at)
    table = next(d for d in at.dataframe if "module name" in d.value.columns)  # the run's layers
    assert list(table.value["layer"]) == ["fc1 · Linear 784→300", "fc2 · Linear 300→100", "fc3 · Linear 100→10"]
    assert list(table.value["module name"]) == ["fc1", "fc2", "fc3"]
    assert list(table.value["weights"]) == [235200, 30000, 1000]  # the Prune page's headers and formats
    assert any("saved before the layers had names" in c.value for c in at.caption)
    RunHistory().delete([run_id])


def test_only_a_built_in_network_of_the_same_layers_gets_todays_names():
    from ui.run_store import named_layer_rows

    rows = _positional_rows()
    base = {"model": "lenet300", "dataset": "mnist5k"}
    assert named_layer_rows(rows, {**base, "source": "upload"}) == (rows, False)  # its own file's names
    assert named_layer_rows(rows[:2], base) == (rows[:2], False)  # another number of layers
    assert named_layer_rows([{**r, "kind": "conv"} for r in rows], base)[1] is False  # other kinds
    assert named_layer_rows(rows, {"model": "resnet9000", "dataset": "mnist5k"}) == (rows, False)  # unknown
    named = [{**r, "label": "fc1 · Linear 784→300"} for r in rows[:1]] + rows[1:]
    assert named_layer_rows(named, base) == (named, False)  # not all positional: as saved
    renamed, done = named_layer_rows(rows, base)
    assert done and [r["label"] for r in renamed][0] == "fc1 · Linear 784→300" and renamed[0]["kept"] == 2352


def test_a_saved_runs_layers_are_a_static_table_while_presenting():
    """Presentation mode draws a saved run's layer table as the Prune page's: the main columns the run saved, in a
    static table (larger type), a missing value as an empty cell."""
    from ui.settings import Settings

    rows = [dict(r, density=r["kept"] / r["total"]) for r in _positional_rows()]
    rows[1]["density"] = float("nan")
    settings = {**Settings().as_dict(), "keep_ratio": 0.0124}
    run_id = RunHistory().add("prune", settings, dict(keep_ratio=0.0124, accuracy_after=0.5, has_bound=False,
                                                      measured_max_heldout=0.1, layers=rows))
    at = new_app()
    at.query_params["present"] = "1"
    at.run()
    at.switch_page("pages/history.py").run()
    at.multiselect(key="hist_pick").set_value([run_id]).run()
    ok(at)
    table = at.table[-1].value
    assert list(table.columns) == ["layer", "kept", "weights", "kept share"]
    assert list(table["weights"]) == ["235,200", "30,000", "1,000"]
    assert list(table["kept share"]) == ["1%", "", "1%"]
    assert any("Presentation mode shows 4 of the table's" in c.value for c in at.caption)
    RunHistory().delete([run_id])


def test_runs_that_share_no_keep_ratio_get_a_sentence_not_a_silent_chart():
    from ui.views.history import overlay_verdict

    df = pd.DataFrame(dict(run=["#3 sipp-det (prune)", "#6 wt (sweep)", "#6 wt (sweep)"], kind="x",
                           keep_pct=[20.0, 30.0, 10.0], acc_pct=[90.0, 95.0, 80.0], ratio=[0.2, 0.3, 0.1]))
    assert overlay_verdict(df) == ["These runs share no keep ratio, so no verdict compares them point by point: read "
                                   "them on the chart, or add a run at a keep ratio the others ran."]
