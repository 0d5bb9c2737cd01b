"""The Filters page (AppTest): a smaller network on the default, its verdict matching its table, latency and
retraining on demand, the download; and the verdict sentences on a case built for the test."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
from pagetest import app, frame_with, metric, ok, page_folders  # noqa: F401 - the module's fixtures

from ui.filters_core import compare_verdict, filters_verdict


def test_filters_page_shrinks_the_default_network(app):
    at = app
    at.switch_page("pages/filters.py").run()
    ok(at)
    assert at.title[0].value == "Filters"
    assert at.caption[0].value.endswith("the method and budget of the sidebar are not used here")  # its own pfp, 0.30
    table = frame_with(at, "parameters")
    params = dict(zip(table["network"], table["parameters"]))
    assert params["smaller network"] < params["original"]
    kept = float(metric(at, "Parameters kept").rstrip("%"))
    assert abs(kept - 30.0) <= 0.2  # within 0.5% of 0.3 (0.15 points), shown to one decimal
    verdict = next(v.value for v in at.success if v.value.startswith("**Verdict**"))
    assert f"{params['original']:,} → {params['smaller network']:,} parameters" in verdict
    # layers are named by module and shape everywhere
    assert all("·" in o for o in at.selectbox(key="filters_layer").options)


def test_latency_and_retraining_on_demand(app):
    at = app
    at.switch_page("pages/filters.py").run()
    at.button(key="filters_lat_btn").click().run()
    ok(at)
    table = frame_with(at, "latency batch 64 (ms)")
    assert (table["latency batch 64 (ms)"] > 0).all()
    verdict = next(v.value for v in at.success if v.value.startswith("**Verdict**"))
    assert "At batch 64 on this CPU" in verdict
    at.button(key="filters_rt_btn").click().run()
    ok(at)
    verdict = next(v.value for v in at.success if v.value.startswith("**Verdict**"))
    assert "after retraining" in verdict


def test_other_method_and_flops_target(app):
    at = app
    at.switch_page("pages/filters.py").run()
    at.selectbox(key="filters_method").set_value("filter-l1")
    at.radio(key="filters_target").set_value("flops").run()
    ok(at)
    assert abs(float(metric(at, "FLOPs kept").rstrip("%")) - 30.0) < 1.0


def _report(original=1000, pruned=300, lat=None, acc=(0.95, 0.90), dead=0, shrunk=True):
    result = SimpleNamespace(settings={"method": "pfp"}, params={"original": original, "masked": 320, "pruned": pruned},
                             flops={"original": 2000, "masked": 900, "pruned": 800}, shrunk=shrunk, note="untraceable",
                             dead_on_s=dead)
    return SimpleNamespace(result=result, file_bytes={"original": 4096, "masked": 4096, "pruned": 1536},
                           latency_ms=lat, e2e=SimpleNamespace(accuracy_before=acc[0], accuracy_after=acc[1]))


def test_verdict_is_phrased_with_the_numbers():
    lines = filters_verdict(_report(lat={"original": {"batch_1": 1.0, "batch_64": 10.0},
                                         "masked": {"batch_1": 1.0, "batch_64": 9.8},
                                         "pruned": {"batch_1": 0.5, "batch_64": 4.0}}, dead=3), 0.94)
    assert lines[0].startswith("pfp kept 30.0% of the parameters and 40.0% of the FLOPs")
    assert "1,000 → 300 parameters, 4 → 2 KiB" in lines[0]
    assert "faster: 10.00 → 4.00 ms (2.50×)" in lines[1] and "measured 1.02×" in lines[1]
    assert "95.0% → 90.0% (-5.0 points) before retraining, 94.0% (-1.0 points) after retraining" in lines[2]
    assert lines[3].startswith("3 filter(s) went because they were silent")
    slow = filters_verdict(_report(lat={"original": {"batch_64": 4.0}, "masked": {"batch_64": 4.0},
                                        "pruned": {"batch_64": 5.0}}))
    assert "smaller network is slower" in slow[1]
    # the masked network does the original's work: 1.35× its speed is the machine's noise, and no verdict is given
    noisy = filters_verdict(_report(lat={"original": {"batch_64": 0.67}, "masked": {"batch_64": 0.496},
                                         "pruned": {"batch_64": 1.41}}))
    assert noisy[1].startswith("The latency at batch 64 was too noisy to tell: the masked network, which does exactly "
                               "the original's work, measured 1.35× the original's speed (the smaller one 0.48×)")
    assert "slower" not in noisy[1] and "faster" not in noisy[1]
    assert "could not be rebuilt smaller (untraceable)" in filters_verdict(_report(shrunk=False))[0]
    big = _report(original=266_610, pruned=79_681)
    big.file_bytes = {"original": 1_069_107, "masked": 1_069_107, "pruned": 325_018}
    assert "266,610 → 79,681 parameters, 1,044 → 317 KiB on disk" in filters_verdict(big)[0]  # separators, as above


def test_compare_verdict_on_a_built_case():
    frame = pd.DataFrame([
        dict(method="pfp", kind="channels", ratio=0.5, accuracy=0.90, speedup=1.8),
        dict(method="sipp-hybrid", kind="weights", ratio=0.5, accuracy=0.95, speedup=1.0),
        dict(method="pfp", kind="channels", ratio=0.1, accuracy=0.60, speedup=3.1),
        dict(method="sipp-hybrid", kind="weights", ratio=0.1, accuracy=0.80, speedup=0.98),
    ])
    lines = compare_verdict(frame)
    assert lines[0] == ("At the same parameter count, weight pruning is more accurate at every tested ratio, by "
                        "5.0 to 20.0 points (best method of each kind, before retraining).")
    assert "1.80× to 3.10×" in lines[1] and "0.98× to 1.00×" in lines[1]
    same = compare_verdict(frame.assign(speedup=[1.8, 1.0, 3.1, 1.001]))[1]
    assert "the weight-pruned ones 1.00× (their zeros" in same  # not "1.00x to 1.00x"


def test_comparison_runs_on_the_page(app):
    at = app
    at.switch_page("pages/filters.py").run()
    at.button(key="filters_cmp_btn").click().run()
    ok(at)
    table = frame_with(at, "speed-up")  # the page's column names, not the library's (params_share, ...)
    assert set(table["method"]) == {"pfp", "filter-l1", "sipp-hybrid", "wt"} and len(table) == 12
    assert not [c for c in table.columns if "_" in c]
    grid = next(d for d in at.dataframe if '"speed-up"' in d.proto.columns)  # 11 columns: the method stays in view
    assert json.loads(grid.proto.columns)["method"]["pinned"] is True
    # weights pruned to the parameter count PFP reached
    for ratio in (0.5, 0.3, 0.1):
        sub = table[table["keep ratio"] == ratio].set_index("method")["parameter share"]
        assert abs(sub["sipp-hybrid"] - sub["pfp"]) < 0.01
