"""Retraining: mask-fixed training keeps pruned weights exactly zero; cascades and lottery-ticket runs on tiny nets."""
import copy
import math

import pytest
import torch

from sipp_core.io.data import load_dataset
from sipp_core.jobs.retrain import (
    CascadeResult,
    apply_masks,
    masks_hold,
    prune_retrain,
    random_masks,
    train_isolated,
    train_masked,
)
from sipp_core.zoo.models import build_model
from sipp_core.zoo.train import train_model


@pytest.fixture(autouse=True)
def _env(tiny_moons_env):
    yield


@pytest.fixture(scope="module")
def moons():
    return load_dataset("moons")


def _net(seed=0):
    return build_model("mlp", (2,), 2, widths=(16, 16), seed=seed)


def _half_masks(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {n: torch.rand(m.weight.shape, generator=gen) < 0.3
            for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}



def test_dense_train_masked_reproduces_train_model(moons):
    a, b = _net(), _net()
    train_model(a, moons, epochs=2, seed=3, device="cpu")
    log = train_masked(b, None, moons, epochs=2, seed=3, device="cpu")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert log.epochs_done == 2 and len(log.test_accuracy) == 2 and log.pruned_weights_zero is None


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_pruned_weights_stay_exactly_zero(moons, weight_decay):
    net = _net()
    # Adam with momentum from dense training first: without both guards the moments would revive pruned weights.
    opt_warm = train_masked(net, None, moons, epochs=1, device="cpu")
    assert opt_warm.epochs_done == 1
    masks = _half_masks(net)
    before = copy.deepcopy(net)
    apply_masks(before, masks)
    log = train_masked(net, masks, moons, epochs=2, lr=1e-2, weight_decay=weight_decay, device="cpu")
    assert log.pruned_weights_zero is True and masks_hold(net, masks)
    mods = dict(net.named_modules())
    for n, m in masks.items():
        w = mods[n].weight
        assert torch.all(w[~m] == 0)  # exactly zero, not merely small
        assert not torch.equal(w[m], dict(before.named_modules())[n].weight[m])  # kept weights did train
    # gradient hooks were removed: the model trains densely again afterwards
    train_masked(net, None, moons, epochs=1, device="cpu")
    assert not masks_hold(net, masks)


def test_snapshots_and_schedule(moons):
    net = _net()
    log = train_masked(net, None, moons, epochs=2, schedule_epochs=5, snapshot_epochs=(0, 1), device="cpu",
                       track_accuracy=False)
    assert set(log.snapshots) == {0, 1} and log.test_accuracy == []
    ref = _net()
    assert all(torch.equal(log.snapshots[0][k], v) for k, v in ref.state_dict().items())
    with pytest.raises(ValueError, match="schedule_epochs"):
        train_masked(net, None, moons, epochs=3, schedule_epochs=2)


def test_cancel_returns_partial(moons):
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 15  # moons: 10 batches per epoch -> stops in epoch 2

    log = train_masked(_net(), None, moons, epochs=5, device="cpu", should_stop=stop)
    assert log.cancelled and log.epochs_done == 1


def test_random_masks_match_counts():
    ref = {"a": torch.rand(10, 20) < 0.2, "b": torch.rand(5, 7) < 0.9}
    lw = random_masks(ref, scope="layerwise", seed=1)
    assert {n: int(m.sum()) for n, m in lw.items()} == {n: int(m.sum()) for n, m in ref.items()}
    gl = random_masks(ref, scope="global", seed=1)
    assert sum(int(m.sum()) for m in gl.values()) == sum(int(m.sum()) for m in ref.values())
    assert all(gl[n].shape == ref[n].shape for n in ref)
    assert torch.equal(random_masks(ref, seed=4)["a"], random_masks(ref, seed=4)["a"])
    with pytest.raises(ValueError, match="random_scope"):
        random_masks(ref, scope="per-unit")


def test_argument_checks():
    with pytest.raises(ValueError, match="strictly decreasing"):
        prune_retrain("mlp", "moons", method="wt", schedule=(0.2, 0.5))
    with pytest.raises(ValueError, match="keep ratios"):
        prune_retrain("mlp", "moons", method="wt", schedule=(1.5,))
    with pytest.raises(ValueError, match="method"):
        prune_retrain("mlp", "moons", method="magic")
    with pytest.raises(ValueError, match="rewind_epoch"):
        train_isolated("mlp", "moons", epochs=3, rewind_epoch=3)
    with pytest.raises(ValueError, match="rewind_epoch must be 0"):
        train_isolated("mlp", "moons", epochs=3, rewind_epoch=1, prune_at="init")
    with pytest.raises(ValueError, match="prune_at"):
        train_isolated("mlp", "moons", epochs=3, prune_at="later")


@pytest.mark.parametrize("method", ["wt", "random", "sipp-hybrid"])
def test_cascade_on_tiny_net(method, moons):
    seen = []
    res = prune_retrain("mlp", "moons", method=method, schedule=(0.5, 0.2), epochs=2, device="cpu",
                        progress=lambda f, m: seen.append((f, m)))
    assert isinstance(res, CascadeResult) and not res.cancelled and len(res.steps) == 2
    df = res.to_frame()
    assert list(df["keep_ratio_requested"]) == [0.5, 0.2]
    assert all(df["pruned_weights_zero"])
    assert df["keep_ratio"].iloc[1] <= df["keep_ratio"].iloc[0]
    for s in res.steps:
        assert 0 <= s["accuracy_pruned"] <= 1 and 0 <= s["accuracy_finetuned"] <= 1
        assert len(s["accuracy_curve"]) == 2
    # masks nest: a weight pruned at step 1 stays pruned at step 2
    assert masks_hold(res.model, res.masks)
    assert seen[-1][0] == 1.0 and all(0 <= f <= 1 for f, _ in seen)
    assert any("left" in m for _, m in seen)  # time estimates
    e = res.history_entry()
    assert e["kind"] == "retrain" and e["results"]["accuracy_after"] == res.steps[-1]["accuracy_finetuned"]
    assert '"steps"' in res.to_json()


def test_cascade_cancel(moons):
    res = prune_retrain("mlp", "moons", method="wt", schedule=(0.5, 0.2, 0.1), epochs=1, device="cpu",
                        should_stop=lambda: True)
    assert res.cancelled and res.steps == () and res.model is None


@pytest.mark.parametrize("kw", [dict(rewind_epoch=1), dict(prune_at="init", method="snip"),
                                dict(random_scope="global")])
def test_train_isolated_tiny(kw, moons):
    args = dict(method="wt", keep_ratio=0.3, epochs=3, device="cpu")
    args.update(kw)
    res = train_isolated("mlp", "moons", **args)
    assert not res.cancelled
    t, r = res.ticket, res.random
    assert t["pruned_weights_zero"] and r["pruned_weights_zero"]
    assert len(t["accuracy_curve"]) == 3 and len(r["accuracy_curve"]) == 3
    assert abs(t["keep_ratio"] - r["keep_ratio"]) < 1e-12  # same overall ratio
    if args.get("random_scope", "layerwise") == "layerwise":
        assert t["layer_density"] == r["layer_density"]
    if args.get("prune_at", "trained") == "trained":
        assert 0 < res.dense_accuracy <= 1
    df = res.to_frame()
    assert set(df["run"]) == {"ticket", "random"} and df["epoch"].max() == 3
    assert res.history_entry()["results"]["ticket_accuracy"] == t["accuracy"]
    assert masks_hold(res.ticket_model, res.ticket_masks)


def test_cascade_takes_a_prepared_model(tiny_moons_env):
    from sipp_core.pipeline import prepare

    prepared = prepare("mlp", "moons", sample_size=20, seed=0)
    before = {k: v.clone() for k, v in prepared.model.state_dict().items()}
    kw = dict(method="wt", schedule=(0.5,), epochs=1, sample_size=20, device="cpu")
    by_name = prune_retrain("mlp", "moons", **kw)
    in_hand = prune_retrain(prepared, **kw)
    assert [s["accuracy_finetuned"] for s in in_hand.steps] == [s["accuracy_finetuned"] for s in by_name.steps]
    assert all(torch.equal(v, prepared.model.state_dict()[k]) for k, v in before.items())  # never mutated
