"""prune(): argument validation, the original is never mutated, reproducibility, export, CLI."""
import json
import math

import pytest
import torch

from sipp_core.__main__ import main as cli
from sipp_core.plan.measure import measure_layer_errors
from sipp_core.plan.pruning import prune
from sipp_core.zoo.models import build_model


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    model = build_model("lenet5", (1, 16, 16), 4, seed=0).eval()
    x = torch.randn(24, 1, 16, 16)  # negative inputs: the first layer uses pseudo-points
    y = torch.randint(0, 4, (24,))
    return model, x, y


ALL = ["sipp-hybrid", "sipp-det", "sipp-rand", "wt", "layerwise", "snip", "uniform", "random"]


@pytest.mark.parametrize("method", ALL)
def test_original_unchanged_and_masks_shaped(net, method):
    model, x, y = net
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = prune(model, x, method=method, keep_ratio=0.2, labels=y, seed=1)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{method} mutated {k}"
    mods = dict(r.model.named_modules())
    for name, mask in r.masks.items():
        w = mods[name].weight
        assert mask.shape == w.shape and mask.dtype == torch.bool
        assert torch.all(w[~mask] == 0)  # pruned weights are exactly zero in the copy
    assert r.kept == sum(int(m.sum()) for m in r.masks.values())
    assert 0 < r.keep_ratio <= 1
    assert r.params_total == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("method", ["sipp-hybrid", "sipp-rand", "uniform", "random"])
def test_same_seed_same_result(net, method):
    model, x, y = net
    a = prune(model, x, method=method, keep_ratio=0.1, seed=5)
    b = prune(model, x, method=method, keep_ratio=0.1, seed=5)
    for k in a.masks:
        assert torch.equal(a.masks[k], b.masks[k])
        assert torch.equal(a.plans[k].values, b.plans[k].values)


def test_epsilon_mode_deterministic_bound_holds_on_s(net):
    model, x, _ = net
    r = prune(model, x, method="sipp-det", epsilon=0.3, delta=1e-6)
    errs = measure_layer_errors(model, r.plans, x)
    for name, e in errs.items():
        assert e.failure_rate == 0.0, name  # eps_det holds exactly on every point of S
        assert r.plans[name].row_bound.max() <= 0.3 + 1e-9


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(epsilon=0.0), "eps"),
        (dict(epsilon=-1.0), "eps"),
        (dict(keep_ratio=0.1, delta=2.0), "delta"),
        (dict(keep_ratio=0.1, delta=0.0), "delta"),
        (dict(keep_ratio=0.0), "keep_ratio"),
        (dict(keep_ratio=1.5), "keep_ratio"),
        (dict(), "exactly one"),
        (dict(keep_ratio=0.1, epsilon=0.1), "exactly one"),
        (dict(keep_ratio=0.1, method="magic"), "method"),
        (dict(epsilon=0.1, method="wt"), "epsilon mode"),
        (dict(keep_ratio=0.1, method="snip"), "labels"),
        (dict(keep_ratio=0.1, patch_reduction="median"), "patch_reduction"),
    ],
)
def test_invalid_arguments_name_the_problem(net, kwargs, match):
    model, x, _ = net
    with pytest.raises(ValueError, match=match):
        prune(model, x, **kwargs)


def test_unsupported_layers_are_listed_and_left_dense():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(4, 4, 3, groups=2), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 3)
    ).eval()
    x = torch.randn(8, 4, 6, 6)
    r = prune(model, x, keep_ratio=0.5)
    assert list(r.masks) == ["3"]
    assert r.dense and r.dense[0][0] == "0" and "grouped" in r.dense[0][1]
    assert torch.equal(r.model[0].weight, model[0].weight)


def test_a_models_own_parameters_are_listed_by_name():
    """x @ self.w in a forward: `w` is left dense and named (it used to be listed under an empty name, which read as
    if the whole model were left out)."""
    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(2, 8)
            self.w = torch.nn.Parameter(torch.randn(8, 2))

        def forward(self, x):
            return torch.relu(self.fc(x)) @ self.w

    r = prune(Head(), torch.randn(30, 2), keep_ratio=0.5)
    assert list(r.masks) == ["fc"]
    assert r.dense == [("w", "parameters of Head itself, used by its forward, not a supported layer (Linear, Conv2d "
                             "groups=1); left dense")]


def test_cli_prune_json_and_exit_codes(tmp_path, capsys):
    out = tmp_path / "r.json"
    code = cli(["prune", "--model", "lenet300", "--dataset", "mnist5k", "--keep-ratio", "0.1", "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "keep ratio" in text and "accuracy" in text
    d = json.loads(out.read_text())
    for key in ["method", "keep_ratio", "sample_size", "accuracy_before", "accuracy_after", "agreement", "layers", "timings_s"]:
        assert key in d
    assert d["sample_size"] == 152
    assert abs(d["keep_ratio"] - 0.1) <= 0.005 * 0.1
    for layer in d["layers"]:
        for key in ["name", "kept", "total", "bound", "measured_max_s", "measured_max_heldout", "failure_rate"]:
            assert key in layer
    assert set(d["timings_s"]) >= {"sensitivity", "prune", "evaluate"}
    assert d["accuracy_before"] > 0.9


@pytest.mark.parametrize(
    "args,match",
    [
        (["--epsilon", "0"], "eps"),
        (["--keep-ratio", "0.1", "--delta", "2"], "delta"),
        (["--keep-ratio", "0.1", "--sample-size", "100000"], "--sample-size"),
        (["--keep-ratio", "0.1", "--method", "nope"], "method"),
    ],
)
def test_cli_invalid_exits_2(args, match, capsys):
    code = cli(["prune", "--model", "lenet300", "--dataset", "mnist5k", *args])
    assert code == 2
    assert match in capsys.readouterr().err


def test_inputs_that_do_not_fit_the_model_are_said_so():
    """Points with 63 features for a network with 64 inputs: prune() and sample_size() name the shapes and the fix
    (a BadInput), not torch's matmul error from eleven frames down."""
    from sipp_core import sample_size
    from sipp_core.errors import BadInput

    mlp = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    with pytest.raises(BadInput, match=r"inputs of shape \(batch, 63\) do not fit the model: RuntimeError") as info:
        prune(mlp, torch.randn(20, 63), method="sipp-det", keep_ratio=0.5)
    assert "give the model inputs of the shape it was trained on" in info.value.fix
    with pytest.raises(BadInput, match=r"inputs of shape \(batch, 63\) do not fit the model"):
        sample_size(mlp, (63,), 1e-16)


def test_numbers_of_numpy_and_0d_tensors_are_numbers_and_every_refusal_is_a_bad_input(net):
    """keep_ratio=np.float32(0.2) or torch.tensor(0.2) prunes as 0.2 does (it was 'must be in (0, 1]; got
    np.float32(0.2)'); a zoo name or a state_dict instead of a network, and epsilon=0, are BadInput (a SippError)."""
    import numpy as np

    from sipp_core.errors import BadInput

    model, x, _ = net
    plain = prune(model, x, method="sipp-det", keep_ratio=0.2)
    for v in (np.float32(0.2), torch.tensor(0.2), np.array(0.2)):
        r = prune(model, x, method="sipp-det", keep_ratio=v)
        assert r.kept == plain.kept and json.dumps(r.settings)  # the settings stay JSON
    for bad in ("lenet300", model.state_dict()):
        with pytest.raises(BadInput, match="model must be a torch nn.Module"):
            prune(bad, x, keep_ratio=0.2)
    with pytest.raises(BadInput, match="epsilon must be a finite number > 0"):
        prune(model, x, epsilon=0)


def test_a_layer_pruned_to_nothing_is_said():
    """A global budget at a small keep ratio can leave a layer no weight (a small CNN's head at 5% with sipp-det):
    the network then predicts one class, and a warning says so with the fix."""
    from types import SimpleNamespace

    from sipp_core.plan import pruning

    plans = {"conv": SimpleNamespace(kept=150, bound_max=0.5), "head": SimpleNamespace(kept=0, bound_max=2.0),
             "silent": SimpleNamespace(kept=0, bound_max=float("nan"))}  # no signal: its own warning says so
    with pytest.warns(RuntimeWarning, match=r"layer\(s\) head keep none of their weights.*allocation='bound-optimal'"):
        pruning._warn_empty_layers(plans, "sipp-det", "global")
    with pytest.warns(RuntimeWarning) as seen:
        pruning._warn_empty_layers(plans, "wt", "global")
    assert "bound-optimal" not in str(seen[0].message)


def test_a_small_s_is_said_and_a_channel_target_refused_for_weight_methods(net):
    """S of 3 points for sipp-hybrid: a warning names the |S| the formula asks for (sample_size of the same model);
    target='flops' with a weight method was silently ignored and is now refused."""
    from sipp_core import sample_size
    from sipp_core.errors import BadInput

    model, x, _ = net
    need = sample_size(model, tuple(x.shape[1:]), 1e-16)
    with pytest.warns(RuntimeWarning, match=f"S holds 3 point\\(s\\), fewer than the {need} the guarantee's formula"):
        prune(model, x[:3], method="sipp-hybrid", keep_ratio=0.5)
    with pytest.raises(BadInput, match="target='flops' is for the channel methods"):
        prune(model, x, method="sipp-det", keep_ratio=0.5, target="flops")
