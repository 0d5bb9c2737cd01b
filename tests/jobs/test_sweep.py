"""Sweeps: grids, prune potential, records, cache, cancel, CLI (tiny network on moons)."""
import argparse
import json
import math

import pandas as pd
import pytest
import torch

from sipp_core.errors import BadInput
from sipp_core.io.data import load_dataset
from sipp_core.jobs.sweeps import (
    ROW_FIELDS,
    SEEDS_FIX,
    SweepResult,
    _check_seeds,
    add_sweep_parser,
    geometric_ratios,
    parse_ratios,
    prune_potential,
    seeds_arg,
    sweep,
)
from sipp_core.zoo.models import build_model


@pytest.fixture(autouse=True)
def _env(tiny_moons_env):
    yield


def _needs_engine():
    pytest.importorskip("sipp_core.sensitivity.api")
    pytest.importorskip("sipp_core.plan.bounds")


def test_geometric_grid():
    g = geometric_ratios(0.5, 0.01, 8)
    assert len(g) == 8 and g[0] == 0.5 and g[-1] == 0.01
    assert all(a > b for a, b in zip(g, g[1:]))
    steps = [a / b for a, b in zip(g, g[1:])]
    assert max(steps) / min(steps) < 1.0001  # evenly spaced in log
    assert geometric_ratios(0.01, 0.5, 8) == g  # ends in either order
    assert geometric_ratios(0.3, 0.1, 1) == (0.3,)
    for bad in [(0, 0.1, 3), (0.5, 1.5, 3), (0.5, 0.1, 0), (0.2, 0.2, 3)]:
        with pytest.raises(ValueError):
            geometric_ratios(*bad)


def test_parse_ratios():
    assert parse_ratios("0.5:0.01:8") == geometric_ratios(0.5, 0.01, 8)
    assert parse_ratios("0.1, 0.5,0.02") == (0.5, 0.1, 0.02)
    for bad, match in [("0.5:0.1", "K1:K2:N"), ("abc", "'abc' in the keep ratios is not a number"),
                       ("0.5,10%", "'10%' in the keep ratios is not a number"), ("0.5,2", r"\(0, 1\]"),
                       ("0.5:0:4", "range"), ("0,5", r"got 0 \(a decimal comma\?\)"),
                       ("0.5:0.01:1", "N = 1 is the single keep ratio 0.5, and 0.01 would be left out"),
                       ("0.5:0.01:500", "at most 100 keep ratios"),
                       (",".join(f"{i / 1000:g}" for i in range(1, 102)), "at most 100 keep ratios")]:
        with pytest.raises(BadInput, match=match) as err:
            parse_ratios(bad)
        assert err.value.fix and "Fix" not in err.value.problem  # the command line prints them on two lines
    assert parse_ratios("0.5:0.5:1") == (0.5,)


def test_every_example_a_ratio_fix_gives_is_accepted():
    """A fix names values that work: following it never meets another refusal."""
    import re

    for bad in ["0.5:0.01:0", "0.5:0.5:3", "0.5:0.01:1", "abc", "0,5", "", "0.5:0.01:500", "0.5:0:4", "2"]:
        with pytest.raises(BadInput) as err:
            parse_ratios(bad)
        examples = re.findall(r"(?:e\.g\.|alone:) ([0-9.:,]+[0-9])", err.value.fix)
        assert examples, (bad, err.value.fix)
        for example in examples:
            assert parse_ratios(example), example


def test_the_command_line_takes_a_count_or_a_list_of_seeds():
    assert seeds_arg("3") == 3 and seeds_arg("0, 1,7") == (0, 1, 7)
    for bad in ("x", "1.5", "2,", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="neither a count nor a comma list of seeds"):
            seeds_arg(bad)


def test_seed_refusals_say_how_to_give_seeds():
    for bad in (0, True, "x", "12", [1, 1], [-2], [1.5], [True]):
        with pytest.raises(BadInput, match="seeds must") as err:
            _check_seeds(bad)
        assert err.value.fix == SEEDS_FIX


def _frame(rows):
    full = []
    for r in rows:
        d = {k: None for k in ROW_FIELDS}
        d.update(r)
        full.append(d)
    return pd.DataFrame(full, columns=list(ROW_FIELDS))


def test_prune_potential_rule():
    def row(m, s, k, drop, err=None):
        return dict(method=m, seed=s, keep_ratio_requested=k, keep_ratio=k * 0.99, accuracy_before=0.9,
                    accuracy_after=0.9 - drop, accuracy_drop=drop, error=err)

    df = _frame([
        # method a: mean drops 0.0, 0.005, 0.02 (seed 1 pulls 0.1 over), then a lucky 0.0 that must not count
        row("a", 0, 0.5, 0.0), row("a", 1, 0.5, 0.0),
        row("a", 0, 0.2, 0.0), row("a", 1, 0.2, 0.01),
        row("a", 0, 0.1, 0.0), row("a", 1, 0.1, 0.04),
        row("a", 0, 0.05, 0.0), row("a", 1, 0.05, 0.0),
        # method b: too much drop already at the top
        row("b", 0, 0.5, 0.2), row("b", 0, 0.2, 0.0),
        # method c: an error stops the walk
        row("c", 0, 0.5, 0.0), row("c", 0, 0.2, float("nan"), err="boom"), row("c", 0, 0.1, 0.0),
    ])
    pp = prune_potential(df, 0.01).set_index("method")
    assert pp.loc["a", "keep_ratio_requested"] == 0.2
    assert pp.loc["a", "max_pruned_share"] == pytest.approx(1 - 0.2 * 0.99)
    assert pp.loc["a", "accuracy_drop"] == pytest.approx(0.005) and pp.loc["a", "seeds"] == 2
    assert math.isnan(pp.loc["b", "max_pruned_share"]) and "no grid point" in pp.loc["b", "note"]
    assert pp.loc["c", "keep_ratio_requested"] == 0.5
    assert prune_potential(df, 1.0).set_index("method").loc["a", "keep_ratio_requested"] == 0.05
    with pytest.raises(ValueError, match="max_accuracy_drop"):
        prune_potential(df, -0.1)


def test_result_json_round_trip():
    rows = ({k: None for k in ROW_FIELDS} | dict(method="wt", seed=0, keep_ratio_requested=0.5, keep_ratio=0.5,
                                                 accuracy_after=0.8, bound_max=float("nan"), time_s=0.1),)
    res = SweepResult(rows=rows, settings=dict(methods=["wt"], seeds=[0]), timings_s=dict(total=1.0))
    text = res.to_json()
    json.loads(text)  # strict JSON: NaN written as null
    back = SweepResult.from_json(text)
    assert back.rows[0]["accuracy_after"] == 0.8 and math.isnan(back.rows[0]["bound_max"])
    assert back.to_frame().columns.tolist() == list(ROW_FIELDS)
    assert res.history_entry()["kind"] == "sweep"


def test_validation_before_work():
    with pytest.raises(ValueError, match="unknown method 'magic'"):
        sweep("mlp", "moons", methods=["wt", "magic"])
    with pytest.raises(ValueError, match="seeds"):
        sweep("mlp", "moons", methods=["wt"], seeds=0)
    with pytest.raises(ValueError, match="keep ratios"):
        sweep("mlp", "moons", methods=["wt"], ratios=[0.5, 0])


def test_sweep_tiny_cached_and_cancelled():
    _needs_engine()
    seen = []
    kw = dict(methods=["sipp-hybrid", "wt", "random"], ratio_range=(0.5, 0.1), count=3, seeds=2, sample_size=30)
    res = sweep("mlp", "moons", progress=lambda f, m: seen.append(f), **kw)
    df = res.to_frame()
    assert len(df) == 3 * 3 * 2 and not res.cancelled and not res.from_cache
    assert df["error"].isna().all()
    assert (df["keep_ratio"] <= df["keep_ratio_requested"] * 1.01 + 1e-9).all()
    assert df.loc[df.method == "wt", "bound_max"].isna().all()
    assert df.loc[df.method == "sipp-hybrid", "bound_max"].notna().all()
    assert ((df["accuracy_after"] >= 0) & (df["accuracy_after"] <= 1)).all()
    assert set(res.timings_s["sensitivity"]) == {"0", "1"}
    assert seen[-1] == 1.0 and seen == sorted(seen)
    s = res.summary_frame()
    assert len(s) == 9 and (s["seeds"] == 2).all()
    again = sweep("mlp", "moons", **kw)
    assert again.from_cache and again.to_frame().equals(df)
    # cancel after three points: partial rows, flagged, not cached
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 4

    part = sweep("mlp", "moons", cache=False, should_stop=stop, **kw)
    assert part.cancelled and 0 < len(part.rows) < 18


def test_sweep_measure_errors_and_prepare_fn():
    _needs_engine()
    from sipp_core.pipeline import prepare

    calls = []

    def prep(seed, progress=None):
        calls.append(seed)
        return prepare("mlp", "moons", sample_size=20, seed=seed, progress=progress)

    res = sweep("mlp", "moons", methods=["sipp-rand"], ratios=[0.4], seeds=[3], measure_errors=True,
                prepare_fn=prep)
    r = res.rows[0]
    assert calls == [3] and r["seed"] == 3 and not math.isnan(r["measured_max_heldout"])
    assert 0 <= r["failure_rate_heldout"] <= 1


def test_sweep_takes_a_prepared_model(tiny_moons_env):
    from sipp_core.pipeline import prepare

    prepared = prepare("mlp", "moons", sample_size=20, seed=0)
    by_name = sweep("mlp", "moons", methods=["wt", "sipp-det"], ratios=[0.5, 0.2], seeds=[0, 1], sample_size=20,
                    cache=False)
    in_hand = sweep(prepared, methods=["wt", "sipp-det"], ratios=[0.5, 0.2], seeds=[0, 1], cache=False)
    assert [r["accuracy_after"] for r in in_hand.rows] == [r["accuracy_after"] for r in by_name.rows]
    assert [r["keep_ratio"] for r in in_hand.rows] == [r["keep_ratio"] for r in by_name.rows]
    with pytest.raises(ValueError, match="name the data set"):
        sweep("mlp", methods=["wt"], ratios=[0.5])


def _cli(argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    add_sweep_parser(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:  # as sipp_core/__main__.py does
        print(f"error: {exc}")
        return 2


def test_cli_errors(capsys):
    assert _cli(["sweep", "--model", "mlp", "--dataset", "moons", "--methods", "wt,nope"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().out
    assert _cli(["sweep", "--model", "mlp", "--dataset", "moons", "--ratios", "0.5-0.1"]) == 2
    out = capsys.readouterr().out
    assert "'0.5-0.1' in the keep ratios is not a number. Fix: write a comma list" in out


def test_cli_runs(tmp_path, capsys):
    _needs_engine()
    out = tmp_path / "s.json"
    rc = _cli(["sweep", "--model", "mlp", "--dataset", "moons", "--methods", "wt,random", "--ratios", "0.5:0.1:3",
               "--sample-size", "20", "--max-drop", "0.05", "--quiet", "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and "keep req" in text and "prune potential" in text
    assert len(json.loads(out.read_text())["rows"]) == 6


def test_cli_wired_into_main(capsys):
    from sipp_core.__main__ import build_parser, main

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    if "sweep" not in sub.choices:
        pytest.skip("add_sweep_parser is not wired into sipp_core/__main__.py yet")
    assert main(["sweep", "--model", "mlp", "--dataset", "moons", "--methods", "nope"]) == 2
    assert "unknown method" in capsys.readouterr().err
