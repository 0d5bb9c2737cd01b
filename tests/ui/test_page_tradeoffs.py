"""The Trade-offs page (AppTest): a sweep in the background, its cancel, and its chart builders."""
from __future__ import annotations

import json
import math

import pandas as pd
from pagetest import app, axis_titles, frame_with, new_app, ok, page_folders, wait  # noqa: F401 - the module's fixtures

from sipp_core.jobs.sweeps import prune_potential
from ui.charts import tradeoffs as ct
from ui.views.tradeoffs import _observed


def test_page_renders_on_the_default(app):
    at = app
    at.switch_page("pages/tradeoffs.py").run()
    ok(at)
    assert at.title[0].value == "Trade-offs"
    for kind, key in [("multiselect", "to_methods"), ("text_input", "to_ratios"),
                      ("number_input", "to_seeds"), ("button", "to_run")]:
        assert getattr(at, kind)(key=key) is not None, (kind, key)
    at.switch_page("pages/prune.py").run()


def test_tiny_sweep_completes_and_shows_the_potential_table(app):
    at = app
    at.switch_page("pages/tradeoffs.py").run()
    at.multiselect(key="to_methods").set_value(["sipp-det", "wt"])
    at.text_input(key="to_ratios").set_value("0.2, 0.05").run()
    ok(at)
    caption = next(c.value for c in at.caption if "4 points" in c.value)
    assert "Keep ratios: 0.2, 0.05" in caption and "from timed points of each method" in caption  # calibrated
    assert {("lenet300", "mnist5k", m) for m in ("sipp-det", "wt")} <= set(_observed())
    at.button(key="to_run").click().run()
    ok(at)
    job = wait(at, "_job_sweep")
    assert not job.result.cancelled and len(job.result.rows) == 4
    assert [r["keep_ratio_requested"] for r in job.result.rows[:2]] == [0.2, 0.05]  # exactly the typed ratios
    assert len(at.get("vega_lite_chart")) >= 3
    potential = frame_with(at, "largest pruned share")
    assert list(potential["method"]) == ["sipp-det", "wt"]
    # sipp-det loses more than 2 points already at 0.2: its cells stay empty and a sentence under the table says why
    assert list(potential[potential["largest pruned share"].isna()]["method"]) == ["sipp-det"]
    assert "note" not in potential.columns
    assert any(m.value.startswith("**sipp-det**: no grid point within the drop") for m in at.markdown)
    verdict = next(v.value for v in at.success if v.value.startswith("**Verdict**"))
    assert "Best accuracy on average over the 2 keep ratios every method ran (0.2, 0.05)" in verdict
    assert len(at.get("download_button")) >= 2
    # the same settings again: shown from the process-wide cache, the button is off
    assert at.button(key="to_run").disabled
    # the prune potential follows the drop without recomputing
    at.number_input(key="to_drop").set_value(50.0).run()
    ok(at)
    assert frame_with(at, "largest pruned share")["largest pruned share"].notna().all()
    at.switch_page("pages/prune.py").run()


def test_sweep_cancel_keeps_the_finished_points():
    at = new_app().run()
    at.switch_page("pages/tradeoffs.py").run()
    at.multiselect(key="to_methods").set_value(["sipp-det", "wt", "random"])
    at.text_input(key="to_ratios").set_value("0.5:0.01:16")
    at.number_input(key="to_seeds").set_value(3).run()
    at.button(key="to_run").click().run()
    ok(at)
    assert at.button(key="_job_sweep_cancel") is not None  # drawn by the polling fragment
    at.button(key="_job_sweep_cancel").click().run()
    job = wait(at, "_job_sweep")
    assert job.result.cancelled
    assert len(job.result.rows) < 3 * 16 * 3
    assert any("Cancelled" in w.value for w in at.warning) or not job.result.rows


def test_a_bad_keep_ratio_list_is_an_error_with_the_fix(app):
    at = app
    at.switch_page("pages/tradeoffs.py").run()
    at.text_input(key="to_ratios").set_value("0.5, 2").run()
    assert at.error and at.error[0].value.startswith("Keep ratios must lie in (0, 1]; got 2. Fix")  # said once
    at.text_input(key="to_ratios").set_value("0.5:0.5:3").run()  # the refusal's own fix, not a generic one
    assert at.error[0].value == ("Keep-ratio range ends are equal (0.5). Fix: give two different ends, e.g. "
                                 "0.5:0.01:8, or that one ratio alone: 0.5.")
    at.text_input(key="to_ratios").set_value("0.5, 0.1").run()
    ok(at)
    at.switch_page("pages/prune.py").run()


def test_the_keep_ratio_axis_has_a_tick_at_every_ratio_run():
    rows = [dict(method="wt", seed=0, keep_ratio_requested=k, keep_ratio=k, accuracy_before=0.97, accuracy_after=0.9,
                 accuracy_drop=0.07, agreement=0.9, logits_rel_error=0.1, bound_max=math.nan, time_s=0.01, error=None)
            for k in (0.7, 0.3, 0.05)]
    spec = ct.accuracy_chart(pd.DataFrame(rows)).to_dict()
    assert '"values": [5.0, 30.0, 70.0]' in json.dumps(spec)


def test_chart_builders_handle_nan_bounds_and_single_seed():
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
        titles = axis_titles(spec)
        assert titles["x"] and titles["y"], titles
    assert ct.bound_chart(df[df["method"] == "wt"]) is None
    assert ct.aggregate(df)["seeds"].max() == 2


def test_channel_methods_sweep_beside_sipp_against_cost(app):
    """PFP and SiPP on one chart: x-axis parameters, FLOPs or measured latency."""
    at = app
    at.switch_page("pages/tradeoffs.py").run()
    at.multiselect(key="to_methods").set_value(["sipp-hybrid", "pfp"])
    at.text_input(key="to_ratios").set_value("0.3")
    at.checkbox(key="to_latency").check().run()
    ok(at)
    at.button(key="to_run").click().run()
    ok(at)
    job = wait(at, "_job_sweep")
    rows = {r["method"]: r for r in job.result.rows}
    assert rows["pfp"]["params_share"] < 0.31 and rows["pfp"]["flops_share"] < 1.0
    assert rows["pfp"]["latency_ms"] > 0 and rows["sipp-hybrid"]["dense_latency_ms"] > 0
    assert at.radio(key="to_x").options == ["keep ratio", "parameters kept", "FLOPs kept", "measured latency"]
    at.radio(key="to_x").set_value("latency").run()
    ok(at)
    specs = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    titles = [t for s in specs for t in axis_titles(s)["x"]]
    assert any("CPU latency at batch 64" in str(t) for t in titles)
    at.switch_page("pages/prune.py").run()


def test_cost_axes_of_the_accuracy_chart():
    frame = pd.DataFrame([dict(method=m, seed=0, keep_ratio_requested=0.3, keep_ratio=0.3, accuracy_before=0.9,
                               accuracy_after=a, accuracy_drop=0.9 - a, agreement=0.9, logits_rel_error=0.1,
                               bound_max=float("nan"), time_s=0.1, error=None, params_share=0.3, flops_share=f,
                               latency_ms=float("nan"))
                          for m, a, f in (("pfp", 0.8, 0.5), ("wt", 0.85, 0.3))])
    spec = ct.accuracy_chart(frame, x_axis="flops").to_dict()
    assert any("FLOPs kept" in str(t) for t in axis_titles(spec)["x"])
    empty = ct.accuracy_chart(frame, x_axis="latency").to_dict()
    assert "Time each network" in empty["usermeta"]["sipp_empty"]
