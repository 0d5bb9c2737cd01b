"""explore(), explore_smoothness() and tradeoffs() driven from Python: a control moved in code changes the
result and the data of the charts drawn, as a slider moved by hand does."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

import sipp_core
from sipp_core.errors import BadInput
from sipp_core.io.data import load_dataset
from sipp_core.pipeline import evaluate_prune
from ui.notebook import explorer, vega
from ui.notebook.smoothness import explore_smoothness
from ui.notebook.tradeoffs import tradeoffs


def _data(spec: dict) -> list[dict]:
    """Every row of a drawn Vega-Lite spec (all its datasets)."""
    return [row for rows in spec["datasets"].values() for row in rows]


@pytest.fixture(scope="module")
def ex():
    return sipp_core.explore("lenet300", "mnist5k", keep_ratio=0.1)


def test_explore_is_a_lazy_public_name():
    proc = subprocess.run([sys.executable, "-c", "import sys, sipp_core; print('ui' in sys.modules, "
                                                 "'ipywidgets' in sys.modules)"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]  # import sipp_core stays light: the widgets load on first use
    assert sipp_core.explore is explorer.explore and sipp_core.explore_smoothness is explore_smoothness
    assert sipp_core.tradeoffs is tradeoffs


def test_a_moved_slider_changes_result_and_chart_data(ex):
    prepared = ex.prepared
    threads = torch.get_num_threads()
    ex.controls.keep_ratio.value = 0.1
    kept, density = ex.result.kept, _data(ex.specs["density"])
    assert abs(ex.result.keep_ratio - 0.1) < 0.01 and ex.error is None
    ex.controls.keep_ratio.value = 0.03
    assert ex.result.kept < kept and abs(ex.result.keep_ratio - 0.03) < 0.005
    after = _data(ex.specs["density"])
    assert after != density
    assert sum(r["kept"] for r in after if "kept" in r) == ex.result.kept  # the chart shows this very result
    assert ex.prepared is prepared  # only plan, masks and evaluation re-ran: the sensitivities are the cached ones
    assert "Updated in" in ex.status.value
    assert ex.specs["density"]["$schema"].endswith("/v5.json")
    assert torch.get_num_threads() == threads  # an update borrows the app's thread count and gives it back


def test_method_eps_delta_and_their_errors(ex):
    ex.set(method="sipp-det", epsilon=0.5)
    assert ex.result.settings["method"] == "sipp-det" and ex.result.settings["epsilon"] == 0.5
    bounds = [r["value"] for r in _data(ex.specs["bound"]) if r.get("series") == "largest row bound"]
    assert bounds and max(bounds) <= 0.5 * (1 + 1e-6)
    before = ex.result
    ex.controls.method.value = "wt"  # magnitude pruning has no bound: eps cannot drive it
    assert ex.result is before and "no error bound" in ex.error and "Fix:" in ex.error
    assert "Not updated" in ex.status.value
    ex.controls.mode.value = "keep ratio"
    assert ex.error is None and ex.result.settings["method"] == "wt"
    kept = ex.result  # a call that cannot update says so (a click only shows it above the charts)
    with pytest.raises(BadInput, match=r"ex.set\(epsilon=0.5\) did not update: .*no error bound.*still shows the last"
                                       ) as err:
        ex.set(epsilon=0.5)
    assert ex.result is kept and err.value.fix and "Fix" not in err.value.problem
    assert ex.settings().mode == "keep ratio" and ex.settings().method == "wt"  # the controls back on that result
    ex.set(method="sipp-hybrid", keep_ratio=0.1)
    with pytest.raises(BadInput, match="did not update"):
        ex.set(method="wt", epsilon=0.5)
    assert (ex.settings().method, ex.settings().mode) == ("sipp-hybrid", "keep ratio")
    ex.set(keep_ratio=0.2)  # starts from the last setting that worked, not from the refused one
    assert ex.result.settings["method"] == "sipp-hybrid" and abs(ex.result.keep_ratio - 0.2) < 0.01
    with pytest.raises(BadInput, match="epsilon = inf is out of range.*a finite number > 0"):
        ex.set(epsilon=float("inf"))
    ex.set(method="wt", keep_ratio=0.1)
    assert not [r for r in _data(ex.specs["bound"]) if "bound" in r.get("series", "")]
    ex.set(method="sipp-hybrid", keep_ratio=0.1, delta=1e-6)
    assert ex.result.settings["delta"] == 1e-6


def test_sample_size_seed_and_layer(ex):
    ex.set(sample_size=40, seed=2)
    assert ex.prepared.sample_size == 40 and ex.prepared.seed == 2 and ex.result.settings["seed"] == 2
    hist = _data(ex.specs["sensitivity"])
    ex.set(sample_size=None, seed=0)
    assert ex.prepared.sample_size == ex.prepared.sample_size_formula == 152
    assert _data(ex.specs["sensitivity"]) != hist  # a new S: the histogram was redrawn from its sensitivities
    last = ex.controls.layer.options[-1]
    ex.controls.layer.value = last
    assert len(_data(ex.specs["kept_per_unit"])) == 2 * ex.prepared.infos[last].out_units  # (unit, sign) rows
    assert ex.specs["kept_edges"] is not None  # the last layer (100 x 10) is small: an interactive heatmap
    ex.controls.layer.value = ex.controls.layer.options[0]
    assert ex.specs["kept_edges"] is None  # 784 x 300 is drawn as an image
    with pytest.raises(BadInput, match="S-pool"):
        ex.set(sample_size=10**6)
    with pytest.raises(BadInput, match="no layer 'fc9'.*choose one of fc1, fc2, fc3"):
        ex.set(layer="fc9")


def test_bad_settings_name_the_fix():
    with pytest.raises(BadInput, match="no setting 'kappa'.*Fix: use one of"):
        sipp_core.explore(kappa=0.1)
    with pytest.raises(BadInput, match="both keep_ratio and epsilon"):
        sipp_core.explore(keep_ratio=0.1, epsilon=1.0)
    with pytest.raises(BadInput, match="out of range"):
        sipp_core.explore(keep_ratio=1.5)
    with pytest.raises(BadInput, match="no error bound"):
        sipp_core.explore(method="random", epsilon=1.0)
    with pytest.raises(BadInput, match="DataRecord"):
        sipp_core.explore(nn.Linear(4, 2), "mnist5k")
    # numbers that are not: said, not rounded or clamped by a box; a number of numpy's or a 0-d tensor is one
    with pytest.raises(BadInput, match=r"seed = -1 is not a whole number from 0"):
        sipp_core.explore("mlp", "moons", seed=-1)
    with pytest.raises(BadInput, match=r"seed = 1.5 is not a whole number"):
        sipp_core.explore("mlp", "moons", seed=1.5)
    with pytest.raises(BadInput, match=r"sample_size = 0 is not a whole number of at least 1"):
        sipp_core.explore("mlp", "moons", sample_size=0)
    with pytest.raises(BadInput, match=r"keep_ratio = 'abc' is not a number"):
        sipp_core.explore("mlp", "moons", keep_ratio="abc")
    assert sipp_core.explore("mlp", "moons", keep_ratio=torch.tensor(0.2)).result.keep_ratio == pytest.approx(0.2, 1e-3)
    # one fix, the method check's own (not "... Fix: ... Fix: change the settings")
    with pytest.raises(BadInput) as info:
        sipp_core.explore("mlp", "moons", method="wt", epsilon=0.5)
    assert str(info.value).count("Fix:") == 1
    # a name it does not know: no |S| advice
    with pytest.raises(BadInput) as info:
        sipp_core.explore("lenet9000")
    assert "sample_size" not in str(info.value)
    # a network for 8x8 digits given the 28x28 ones: said before anything runs, not a matmul's error from deep inside
    with pytest.raises(BadInput, match=r"your Sequential cannot take this data set's inputs shaped \(1, 28, 28\)"):
        sipp_core.explore(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), load_dataset("mnist5k"))


def test_own_network_is_pruned_as_a_copy():
    data = load_dataset("digits")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).train()
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    own = sipp_core.explore(net, data, keep_ratio=0.3)
    assert own.result.kept < own.result.total and own.prepared.trained.name == "Sequential"
    assert net.training and all(torch.equal(weights[k], v) for k, v in net.state_dict().items())
    report = evaluate_prune(own.prepared, method="wt", keep_ratio=0.2)
    again = sipp_core.explore(report)  # a report's own settings become the controls' values
    assert again.controls.method.value == "wt" and again.result.keep_ratio == pytest.approx(report.result.keep_ratio)


def test_smoothness_widget_measures_both_networks_and_redraws_a_path(ex):
    ex.set(keep_ratio=0.05)
    ns = sipp_core.explore_smoothness(ex, paths=4, points=256)
    assert ns.report is ex.report and ns.comparison.pruned.paths.count == 4
    assert set(ns.frame["model"]) == {"original", "pruned"}
    logit = ns.specs["logit"]
    other = next(i for i in range(4) if i != ns.controls.path.value)
    ns.controls.path.value = other
    assert _data(ns.specs["logit"]) != _data(logit)
    with pytest.raises(BadInput, match="choose one of"):
        sipp_core.explore_smoothness(ex, points=300)


def test_tradeoffs_frame_and_chart(ex):
    t = sipp_core.tradeoffs(ex, methods=["sipp-hybrid", "wt"], ratios=[0.3, 0.05], cache=False)
    assert len(t.frame) == 4 and set(t.frame["method"]) == {"sipp-hybrid", "wt"}
    acc = {(r["method"], r["keep_ratio_requested"]): r["acc_pct"] for r in _data(vega.chart_spec(t.chart)) if "acc_pct" in r}
    for _, row in t.frame.iterrows():
        assert acc[(row["method"], row["keep_ratio_requested"])] == pytest.approx(100 * row["accuracy_after"])
    assert set(t.charts()) == {"accuracy", "error", "potential", "bound"}
    with pytest.raises(BadInput, match="Fix:"):
        sipp_core.tradeoffs(ex, methods=["nope"])
