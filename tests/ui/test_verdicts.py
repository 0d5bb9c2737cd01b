"""The Verdict sentences (ui.verdicts) say what the numbers beside them say, on cases built for the test."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from sipp_core.jobs.sweeps import ROW_FIELDS, prune_potential
from ui import verdicts as vd
from ui.charts.tradeoffs import aggregate


def numbers(text: str) -> list[float]:
    return [float(x.replace(",", "")) for x in re.findall(r"-?\d[\d,]*\.?\d*", text)]


def sweep_frame(acc: dict[str, list[float]], ratios=(0.5, 0.2, 0.1, 0.05), dense=0.98) -> pd.DataFrame:
    rows = []
    for method, accs in acc.items():
        for r, a in zip(ratios, accs):
            row = dict.fromkeys(ROW_FIELDS, float("nan"))
            row.update(method=method, seed=0, keep_ratio_requested=r, keep_ratio=r, kept=0, total=0,
                       accuracy_before=dense, accuracy_after=a, accuracy_drop=dense - a, agreement=a, error=None,
                       time_s=0.01)
            rows.append(row)
    return pd.DataFrame(rows, columns=list(ROW_FIELDS))


def test_a_method_that_wins_everywhere_is_named_with_the_range_of_its_margins():
    frame = sweep_frame({"sipp-hybrid": [0.975, 0.95, 0.80, 0.60], "wt": [0.979, 0.97, 0.88, 0.705],
                         "random": [0.90, 0.50, 0.20, 0.10]})
    agg = aggregate(frame)  # the "All points" table the verdict sits beside
    lines = vd.compare_methods(agg)
    assert lines[0].startswith("Best accuracy") and "**wt**" in lines[0]
    wt = agg[agg.method == "wt"].set_index("keep_ratio_requested")["acc_pct"]
    hy = agg[agg.method == "sipp-hybrid"].set_index("keep_ratio_requested")["acc_pct"]
    diff = wt - hy
    expect = f"wt beats sipp-hybrid at every tested keep ratio, by {diff.min():.1f} to {diff.max():.1f} points."
    assert expect in lines
    assert expect == "wt beats sipp-hybrid at every tested keep ratio, by 0.4 to 10.5 points."
    assert any(x.startswith("wt beats random at every tested keep ratio") for x in lines)


def test_a_split_result_says_where_each_method_is_ahead():
    agg = aggregate(sweep_frame({"a": [0.97, 0.95, 0.90, 0.80], "b": [0.96, 0.96, 0.85, 0.70]}))
    lines = vd.compare_methods(agg)
    assert "a beats b at 3 of 4 keep ratios; b is ahead at 0.2, by up to 1.0 points." in lines


def test_ties_and_a_single_method_say_so_or_nothing():
    assert vd.compare_methods(aggregate(sweep_frame({"a": [0.9, 0.8]}, ratios=(0.5, 0.1)))) == []
    lines = vd.compare_methods(aggregate(sweep_frame({"a": [0.9, 0.8], "b": [0.9, 0.8]}, ratios=(0.5, 0.1))))
    assert "tie within 0.05 points" in lines[1]


def test_prune_potential_verdict_names_the_method_that_prunes_most_within_the_drop():
    frame = sweep_frame({"sipp-hybrid": [0.975, 0.972, 0.95, 0.90], "wt": [0.979, 0.975, 0.971, 0.90],
                         "random": [0.90, 0.50, 0.20, 0.10]})
    pp = prune_potential(frame, 0.01)
    line = vd.potential_verdict(pp, 1.0)[0]
    best = pp.dropna(subset=["max_pruned_share"]).sort_values("max_pruned_share").iloc[-1]
    assert f"**{best['method']}** prunes the most: **{100 * best['max_pruned_share']:.1f}%**" in line
    assert best["method"] == "wt" and "90.0%" in line and "keep ratio 0.1" in line
    assert "random drops more than that at every keep ratio tried" in line
    pp.loc[pp.method == "sipp-hybrid", "max_pruned_share"] = 0.8997  # rounds to the same 90.0%: a tie
    assert "**sipp-hybrid** and **wt** prune the most: **90.0%**" in vd.potential_verdict(pp, 1.0)[0]


def rows_frame(bound, measured) -> pd.DataFrame:
    return pd.DataFrame(dict(bound=bound, measured=measured))


def test_bound_held_on_all_rows_and_its_looseness_is_the_median_ratio():
    rng = np.random.default_rng(0)
    m = rng.uniform(0.01, 0.1, 600)
    lines = vd.bound_rows_verdict(rows_frame(24 * m, m), "600 held-out points")
    assert lines == ["The bound **held on all 600 rows, measured on 600 held-out points**, and it is **loose by about "
                     "24×** (median of bound ÷ measured error over the 600 rows with an error)."]


def test_deterministic_rows_with_a_bound_of_1_or_more_are_said_to_say_nothing():
    """sipp-det at κ = 0.05 (the loose-bound lesson): 'held on all 820 rows' is true but trivial for rows whose bound
    is 1 or more, since a deterministic row's error is at most 1; the verdict counts them."""
    frame = pd.DataFrame(dict(bound=[8.8, 2.0, 0.5, 0.9, 3.0], measured=[0.9, 0.5, 0.2, 0.1, 0.4],
                              method=["deterministic"] * 4 + ["sampled"]))
    lines = vd.bound_rows_verdict(frame, "held-out points", delta=1e-16)
    assert lines[0].startswith("The bound **held on all 5 rows")
    assert lines[1] == ("**2 of the 5 rows** are deterministic or pruned entirely with a bound of 1 or more, which "
                        "says nothing: such a row's error is at most 1 anyway, so for them the bound held trivially.")
    assert "leaving out the rows below" in lines[0]  # the looseness is over the rows whose bound says something
    assert len(vd.bound_rows_verdict(frame.assign(bound=[0.95, 0.6, 0.5, 0.9, 3.0]), "S")) == 1  # sampled: not
    every = vd.bound_rows_verdict(frame.assign(method=["deterministic"] * 4 + ["pruned entirely"],
                                               bound=[8.8, 2.0, 1.0, 1.5, 1.0]), "S")
    assert every == ["The bound held on all 5 rows, measured on S, but **every one of these bounds is 1 or more**, "
                     "which says nothing for these rows: a deterministic or entirely pruned row's error is at most 1 "
                     "anyway."]


def test_rows_above_their_bound_are_counted_and_bound_free_rows_left_out():
    m = np.full(600, 0.1)
    b = np.full(600, 0.4)
    b[:2] = 0.05  # two rows fail
    frame = pd.concat([rows_frame(b, m), rows_frame([np.nan] * 5, [0.3] * 5), rows_frame([0.0] * 3, [0.0] * 3)])
    line = vd.bound_rows_verdict(frame, "S", delta=0.1)[0]
    assert "held on 601 of 603 rows, measured on S" in line  # 598 + 3 kept-whole rows (bound 0, error 0)
    assert "2 rows exceeded it" in line and "δ = 0.1" in line
    assert "loose by about 4.0×" in line and "598 rows with an error" in line
    assert vd.bound_rows_verdict(rows_frame([np.nan], [0.2]))[0].startswith("No row carries a bound")


def test_smp_falls_because_the_logits_shrank_while_relative_smp_rises():
    before = dict(smp=4.7, logit_variation=9.4, relative_smp=0.5, region_transitions=72.0, paths=32)
    after = dict(smp=1.6, logit_variation=2.0, relative_smp=0.8, region_transitions=101.0, paths=32)
    lines = vd.smp_verdict(before, after, 0.1)
    assert lines[0] == ("Pruning to 10.0% lowered output SMP from **4.7 to 1.6**, mostly because the logits shrank "
                        "(their variation along the path fell from 9.4 to 2): relative to their size (each path's SMP "
                        "over its variation, averaged over the 32 paths), SMP went from **0.5 to 0.8** (more kinked).")
    assert lines[1] == ("So the pruned network is smaller in scale but relatively more kinked; a path also crosses "
                        "more linear regions in it (72.0 → 101.0 region transitions, mean).")
    fewer = vd.smp_verdict(before, {**after, "region_transitions": 60.0}, 0.1)[1]
    assert "although a path crosses fewer linear regions in it (72.0 → 60.0" in fewer  # never claims a rise it did not see


def test_smp_moved_by_the_kinks_when_the_scale_stayed():
    lines = vd.smp_verdict(dict(smp=2.0, logit_variation=4.0, relative_smp=0.5),
                           dict(smp=3.0, logit_variation=4.2, relative_smp=0.71), 0.3)
    assert "raised output SMP from **2 to 3**, mostly because the kinks changed" in lines[0]
    assert len(lines) == 1


def test_propagation_verdict_states_the_upper_bound_and_the_output_layer_factor():
    rows = [dict(layer="fc1", kind="linear", smp=0.0, smp_predicted=0.0),
            dict(layer="relu1", kind="relu", smp=2.0, smp_predicted=2.1),
            dict(layer="fc2", kind="linear", smp=8.0, smp_predicted=10.0),
            dict(layer="fc3", kind="linear", smp=1.0, smp_predicted=3.0)]
    line = vd.propagation_verdict(rows)[0]
    assert ("**upper bound**; in the original network, measured SMP is between 33% and 80% of it, lowest at `fc3` "
            "(the output layer). At the output layer `fc3` the prediction is about 3.0× the measurement.") in line
    rows[2]["smp"] = 2.0  # fc2 now the lowest, fc3 still below its prediction
    line = vd.propagation_verdict(rows)[0]
    assert "between 20% and 33% of it, lowest at `fc2`. At the output layer `fc3` the prediction" in line
    assert "the measurement is above it" not in line
    rows[2]["smp"] = 10.5  # fc2 measured above its prediction: said, with the reason, never left unremarked
    line = vd.propagation_verdict(rows)[0]
    assert "between 33% and 105% of it" in line and "At `fc2` (105%) the measurement is above it" in line


def test_prune_verdict_uses_the_headline_numbers():
    h = dict(keep_ratio=0.1, method="sipp-hybrid", accuracy_before=0.979, accuracy_after=0.965, agreement=0.982,
             test_points=10000, has_bound=True, bound_max=3.2, measured_max_heldout=0.128)
    lines = vd.prune_verdict(h)
    assert "Keeping **10.00%** of the weights, sipp-hybrid lost **1.4 points** of accuracy (97.9% → 96.5%)" in lines[0]
    assert "98.2% of 10,000 test points" in lines[0]
    assert lines[1] == ("The largest measured error on held-out points (0.128) stays below the largest bound (3.2), "
                        "but a bound of 1 or more allows an error as large as the row's whole signal: the Guarantees "
                        "page counts the rows whose bound says something.")
    assert vd.prune_verdict({**h, "bound_max": 0.64})[1] == (
        "The largest measured error on held-out points (0.128) stays below the largest bound (0.64): the largest bound "
        "is about 5.0× the largest error.")
    # a layer pruned to nothing: the output is a constant, and no bound is reported as meaningful
    empty = vd.prune_verdict({**h, "empty_layers": ["fc2 · Linear 300→100", "fc3 · Linear 100→10"], "layers": 3})
    assert empty[1] == ("**2 of 3 layers keep no weight** (fc2 · Linear 300→100, fc3 · Linear 100→10): the network "
                        "outputs the same for every input, so its bounds describe nothing useful.") and len(empty) == 2
    assert "is above the largest bound" in vd.prune_verdict({**h, "bound_max": 0.1})[1]
    # keep ratio 1: every weight S sees is kept; 0 is not "below" 0
    assert vd.prune_verdict({**h, "bound_max": 0.0, "measured_max_heldout": 0.0})[1] == (
        "The measured error on held-out points is 0, and so is the largest bound: every row kept all of its weights "
        "that S shows any signal through.")
    # the largest error below the largest bound says nothing when some row exceeded its own (LeNet-5 at 20% kept)
    failed = vd.prune_verdict({**h, "failed_pairs_heldout": 140, "pairs_heldout": 236_000,
                               "failed_layers_heldout": ["fc3 · Linear 84→10"]})
    assert failed[1] == ("On held-out points **140 of 236,000** (row, point) pairs exceeded their row's bound (in "
                         "fc3 · Linear 84→10): the Guarantees page shows which rows and why.")


def test_sensitivity_verdict_counts_the_overlap_of_the_top_edges():
    w = np.arange(1, 101, dtype=float)
    same = vd.sensitivity_verdict("fc1", w, w / 1000, w > 50, "wt")
    assert "**10 of 10 (100%)** are also among the 10 most sensitive" in same[0]
    assert "The 50 edges wt kept (50.0% of the layer) carry **74.8%**" in same[1]  # 3775 / 5050: sum 51..100 over sum 1..100
    rev = vd.sensitivity_verdict("fc1", w, 1 / w, None, "wt")
    assert "only **0 of 10 (0%)** are also among" in rev[0] and len(rev) == 1


def test_retraining_verdicts():
    steps = [dict(keep_ratio=0.05, accuracy_pruned=0.40, accuracy_finetuned=0.975)]
    line = vd.cascade_verdict(steps, 0.98)[0]
    # accuracies with one decimal, as the metrics beside them write them (the verdict said 97.50%, the metric 97.5%)
    assert "**97.5%**, 0.5 points below the dense network (98.0%)" in line and "recovered **57.5 points**" in line
    iso = vd.isolation_verdict(dict(keep_ratio=0.1, accuracy=0.97), dict(accuracy=0.955), 0.98)[0]
    assert "**1.5 points above** a random mask" in iso and "1.0 points below the dense network" in iso


@pytest.mark.parametrize("v,text", [(24.4, "24×"), (2.44, "2.4×")])
def test_factor_format(v, text):
    assert vd.times(v) == text


def test_kept_units_verdict_counts_units_left_without_edges():
    line = vd.kept_units_verdict("fc1", np.array([0, 3, 5, 0, 12]), 20)[0]
    assert "units keep between 0 and 12 of their 20 inputs (median 3, 20.0% of the layer)" in line
    assert "**2 of 5 units kept no edge**" in line
    assert "every unit kept at least one edge" in vd.kept_units_verdict("fc1", np.array([1, 2]), 4)[0]
    same = vd.kept_units_verdict("conv1", np.array([25] * 6), 25)[0]  # LeNet-5's conv1, kept whole
    assert "every unit keeps 25 of its 25 inputs (100.0% of the layer)" in same and "between" not in same


def test_rows_above_their_bound_say_why_by_how_they_were_pruned():
    frame = pd.DataFrame(dict(bound=[0.1, 0.1, 0.5, 0.5, 0.0, 0.0], measured=[0.2, 0.05, 0.6, 0.1, 0.01, 0.0],
                              method=["deterministic", "deterministic", "sampled", "sampled", "kept all with s > 0",
                                      "kept all with s > 0"]))
    line = vd.bound_rows_verdict(frame, "held-out points", delta=1e-16)[0]
    assert "held on 3 of 6 rows" in line
    assert ("(1 kept every weight that carried signal on S: the weights they dropped read inputs that were zero on "
            "every point of S, so the bound could not see them; 1 deterministic: their bound is guaranteed on the "
            "points of S only; 1 sampled: more than δ = 1e-16 allows;") in line
    # where δ allows a failure among the rows checked, a failing sampled row is put down to it
    plausible = vd.bound_rows_verdict(frame, "S", delta=0.01)[0]
    assert "1 sampled: each may, with probability up to δ = 0.01" in plausible


def test_layers_left_dense_are_listed_once_per_reason():
    from sipp_core.zoo.layers import left_dense

    pairs = [("bn1", "normalisation parameters are not pruned"), ("emb", "an embedding"),
             ("layers.0.bn1", "normalisation parameters are not pruned")]
    assert left_dense(pairs) == ("Left dense (normalisation parameters are not pruned): bn1, layers.0.bn1; "
                                 "(an embedding): emb.")


def test_eps_sweep_verdict_counts_rows_that_broke_their_bound_not_maxima():
    # LeNet-5, sipp-rand: at ε <= 1 every bound is 0 and fc3's held-out rows show errors; from ε = 2 the largest
    # error sits far below the largest bound, yet the counts come from each row against its own bound
    df = pd.DataFrame(dict(eps=[0.1, 1.0, 2.0, 10.0], keep_ratio=[0.9455, 0.9455, 0.9448, 0.2553],
                           bound_max=[0.0, 0.0, 1.998, 9.999], measured_max_heldout=[0.0082, 0.0082, 0.0468, 0.6747],
                           failed_pairs_heldout=[140, 140, 0, 112], pairs_heldout=[236_000] * 4))
    lines = vd.eps_sweep_verdict(df)
    assert lines[0] == ("From ε = 0.1 to ε = 10 the kept share falls from 94.55% to 25.53% and the largest bound "
                        "grows from 0 to 10.")
    assert lines[1] == ("At 3 of 4 values of ε (ε = 0.1, 1, 10) some held-out (row, point) pairs exceeded their row's "
                        "bound: at most 140 of 236,000 (at ε = 0.1); set ε to one of these values in the sidebar and "
                        "the Verdict at the top of the page says which rows and why.")
    same = vd.eps_sweep_verdict(pd.DataFrame(dict(eps=[0.1, 0.2], keep_ratio=[0.9919] * 2, bound_max=[0.0] * 2,
                                                  failed_pairs_heldout=[0] * 2, pairs_heldout=[10] * 2)))
    assert same[0] == "From ε = 0.1 to ε = 0.2 the kept share stays at 99.19% and the largest bound stays at 0."
    assert vd.eps_sweep_verdict(df.iloc[:1]) == [
        "One value of ε: give two or more to see how the kept share and the bound move with it."]
    fine = vd.eps_sweep_verdict(df.assign(failed_pairs_heldout=0))[1]
    assert fine == "At every ε, every held-out (row, point) pair stayed within its row's bound (4 of 4 values)."


def test_a_long_list_of_keep_ratios_is_short_and_rounded():
    """A cancelled 28-ratio sweep named 'the 28 keep ratios every method ran (0.9, 0.801925, 0.714537, ...)'."""
    ratios = [float(f"{v:.6g}") for v in np.geomspace(0.9, 0.01, 28)]
    rows = [dict(method=m, keep_ratio_requested=r, acc_pct=90 - i - (m == "b")) for i, r in enumerate(ratios)
            for m in ("a", "b")]
    line = vd.compare_methods(pd.DataFrame(rows))[0]
    assert "over the 28 keep ratios every method ran (0.9, 0.762, 0.645, 0.546, …, 0.0165, 0.014, 0.0118, 0.01)" \
        in line
    assert vd.short_list(["1", "2", "3"]) == "1, 2, 3"


def test_a_cancelled_sweep_says_what_never_ran():
    from ui.sweep_results import cancelled_note

    frame = pd.DataFrame(dict(method=["wt", "wt", "sipp-hybrid"], seed=[0, 0, 0]))
    note = cancelled_note(frame, dict(methods=["wt", "sipp-hybrid", "random"], seeds=[0, 1], ratios=[0.5, 0.1]))
    assert note == "Cancelled: showing the 3 of 12 points that finished. Never ran: random. Seed 1 never ran."


def test_a_small_failure_rate_is_never_rounded_to_zero():
    assert vd.rate_pct(8 / 300_000) == "0.0027%" and vd.rate_pct(0.014) == "1.40%" and vd.rate_pct(0) == "0.00%"
    assert vd.rate_pct(0.0012) == "0.12%"
