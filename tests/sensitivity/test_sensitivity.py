"""Empirical sensitivities (sipp_core.sensitivity.api) against the slow definition loops of
sipp_core.sensitivity.reference (docs/sipp.md §2), the oracle.

The oracle loops over points, output units, patches and edges in plain Python and
reads every conv input by explicit index arithmetic (no unfold, no batching), in
float64. The fast engines must agree to float32 round-off.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from sipp_core.plan.bounds import eps_det
from sipp_core.sensitivity import api as sens_mod
from sipp_core.sensitivity.api import EPS, compute_sensitivities, layer_sensitivity, left_dense
from sipp_core.sensitivity.precision import bf16_accumulates_in_float32
from sipp_core.sensitivity.reference import sensitivity_by_definition as oracle
from sipp_core.zoo.layers import capture_inputs, prunable_layers

RTOL = 1e-5


# --------------------------------------------------------------------------- the oracle (reference.py)


def assert_matches(got: torch.Tensor, want: np.ndarray, rtol: float = RTOL) -> None:
    got = got.detach().double().reshape(want.shape).numpy()
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-12)


# --------------------------------------------------------------------------- cases


def _linear(seed, f_units=5, fan_in=7, dead_unit=True):
    torch.manual_seed(seed)
    layer = nn.Linear(fan_in, f_units)
    with torch.no_grad():
        if dead_unit:
            layer.weight[1] = 0.0  # a unit without weights: all s = 0
        layer.weight[2, :3] = layer.weight[2, :3].abs()  # a row that is all positive
        layer.weight[2, 3:] = layer.weight[2, 3:].abs()
    return layer


def _conv(seed, **kw):
    torch.manual_seed(seed)
    layer = nn.Conv2d(kw.pop("cin", 2), kw.pop("cout", 3), kw.pop("k", 3), **kw)
    with torch.no_grad():
        layer.weight[0] = 0.0  # a filter without weights
    return layer


LINEAR_CASES = {
    "negative inputs": lambda: (_linear(0), torch.randn(6, 7)),
    "relu inputs": lambda: (_linear(1), torch.randn(6, 7).relu()),
    "zero column (no signal)": lambda: (_linear(2), torch.cat([torch.zeros(6, 1), torch.randn(6, 6)], 1)),
    "all-zero inputs": lambda: (_linear(3), torch.zeros(4, 7)),
}

CONV_CASES = {
    "padding, negative inputs": lambda: (_conv(0, padding=1), torch.randn(3, 2, 5, 5)),
    "stride 2, relu inputs": lambda: (_conv(1, padding=1, stride=2), torch.randn(3, 2, 7, 6).relu()),
    "dilation 2, padding 2": lambda: (_conv(2, padding=2, dilation=2), torch.randn(2, 2, 6, 6)),
    "rectangular kernel and stride": lambda: (
        _conv(3, k=(3, 2), stride=(1, 2), padding=(1, 0)), torch.randn(2, 2, 5, 6)),
    "same padding, reflect": lambda: (_conv(4, padding="same", padding_mode="reflect"), torch.randn(2, 2, 5, 5)),
    "zero channel (no signal)": lambda: (
        _conv(5, padding=1), torch.cat([torch.zeros(3, 1, 4, 4), torch.randn(3, 1, 4, 4)], 1)),
}


@pytest.mark.parametrize("reduction", ["max", "mean"])
@pytest.mark.parametrize("case", sorted(LINEAR_CASES))
def test_linear_matches_oracle(case, reduction):
    layer, x = LINEAR_CASES[case]()
    want = oracle(layer, x, reduction)
    assert_matches(layer_sensitivity(layer, x, patch_reduction=reduction), want)
    assert_matches(layer_sensitivity(layer, x, patch_reduction=reduction, chunk_bytes=64), want)  # forced chunking


@pytest.mark.parametrize("reduction", ["max", "mean"])
@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_conv_matches_oracle(case, reduction):
    layer, x = CONV_CASES[case]()
    want = oracle(layer, x, reduction)
    for engine in ("direct", "screened"):
        for chunk in (sens_mod.DEFAULT_CHUNK_BYTES, 512):
            got = layer_sensitivity(layer, x, patch_reduction=reduction, engine=engine, chunk_bytes=chunk)
            assert_matches(got, want)


def test_rows_without_signal_are_zero():
    layer, x = LINEAR_CASES["zero column (no signal)"]()
    s = layer_sensitivity(layer, x)
    assert torch.all(s[1] == 0)  # the unit without weights
    assert torch.all(s[:, 0] == 0)  # the input that is always 0
    layer, x = CONV_CASES["zero channel (no signal)"]()
    s = layer_sensitivity(layer, x)
    assert torch.all(s[0] == 0) and torch.all(s[:, 0] == 0)


def test_pseudo_points_decided_per_layer():
    """Non-negative inputs use the points themselves; a single negative entry splits them."""
    layer = _linear(7)
    x = torch.rand(5, 7)
    base = layer_sensitivity(layer, x)
    np.testing.assert_allclose(base.double().numpy(), oracle(layer, x, "max"), rtol=RTOL)
    x2 = x.clone()
    x2[0, 0] = -1e-3
    assert_matches(layer_sensitivity(layer, x2), oracle(layer, x2, "max"))


# --------------------------------------------------------------------------- the screened engine


@pytest.mark.parametrize(
    "shape, conv, scale",
    [
        ((24, 3, 12, 12), dict(cin=3, cout=4, k=3, padding=1), "normal"),  # blocks inside a point
        ((30, 3, 6, 6), dict(cin=3, cout=4, k=3, padding=1), "relu"),  # groups of whole points
        ((9, 2, 71, 3), dict(cin=2, cout=3, k=3), "relu"),  # P = 69: padded blocks
        ((12, 3, 10, 10), dict(cin=3, cout=3, k=3, padding=1), "heavy"),  # values over many decades
    ],
)
@pytest.mark.parametrize("bounds", ["float32", "bfloat16"])
def test_screened_equals_direct(shape, conv, scale, bounds, monkeypatch):
    # the bounds' product runs in bfloat16 by default only on CPUs that multiply it natively; both
    # paths run here on every CPU (bfloat16 emulated where it is not native)
    assert bf16_accumulates_in_float32(), "the bfloat16 path's margins need float32 accumulation"
    monkeypatch.setattr(sens_mod, "_BF16_CPU", bounds == "bfloat16")
    torch.manual_seed(11)
    layer = _conv(11, **conv)
    x = torch.randn(*shape)
    if scale == "relu":
        x = x.relu()
    elif scale == "heavy":
        x = torch.sign(x) * torch.exp(4 * torch.randn_like(x))
    direct = layer_sensitivity(layer, x, engine="direct")
    for chunk in (sens_mod.DEFAULT_CHUNK_BYTES, 20_000, 1_000):
        got = layer_sensitivity(layer, x, engine="screened", chunk_bytes=chunk)
        torch.testing.assert_close(got, direct, rtol=2e-6, atol=0)


def test_screened_engine_is_used_and_exact_on_a_larger_layer(monkeypatch):
    torch.manual_seed(5)
    layer = nn.Conv2d(16, 16, 3, padding=1)
    x = torch.randn(40, 16, 16, 16).relu()
    calls = []
    real = sens_mod._conv_max_screened
    monkeypatch.setattr(sens_mod, "_conv_max_screened", lambda *a, **k: calls.append(1) or real(*a, **k))
    got = layer_sensitivity(layer, x)
    assert calls  # "auto" chose the screened engine for this size
    torch.testing.assert_close(got, layer_sensitivity(layer, x, engine="direct"), rtol=2e-6, atol=0)


# --------------------------------------------------------------------------- whole models


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(3, 4, 3, stride=2)
        self.fc = nn.Linear(4 * 2 * 2, 3)

    def forward(self, x):
        x = self.relu(self.bn(self.conv1(x)))
        x = self.relu(self.conv2(x))
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("reduction", ["max", "mean"])
def test_model_matches_oracle_per_layer(reduction):
    torch.manual_seed(0)
    net = _Net()
    x = torch.randn(4, 2, 5, 5)
    sens = compute_sensitivities(net, x, patch_reduction=reduction)
    assert list(sens) == ["conv1", "conv2", "fc"]
    net.eval()
    with torch.no_grad(), capture_inputs(net, list(sens)) as inputs:
        net(x)
    for name, module in prunable_layers(net).items():
        assert sens[name].shape == module.weight.shape
        assert sens[name].dtype == torch.float32 and sens[name].device.type == "cpu"
        assert_matches(sens[name], oracle(module, inputs[name], reduction))


def test_model_is_left_unchanged():
    torch.manual_seed(0)
    net = _Net()
    net.train()
    net.bn.eval()  # mixed modes must come back as they were
    before = {k: v.clone() for k, v in net.state_dict().items()}
    compute_sensitivities(net, torch.randn(3, 2, 5, 5))
    assert net.training and not net.bn.training and net.conv1.training
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k  # batch-norm statistics untouched (eval mode)
    for m in net.modules():
        assert not m._forward_pre_hooks and not m._forward_hooks


def test_progress_reports_every_layer():
    calls = []
    torch.manual_seed(0)
    compute_sensitivities(_Net(), torch.randn(3, 2, 5, 5), progress=lambda f, msg: calls.append((f, msg)))
    fractions = [f for f, _ in calls]
    assert fractions[0] == 0.0 and fractions[-1] == pytest.approx(1.0)
    assert fractions == sorted(fractions) and all(0.0 <= f <= 1.0 for f in fractions)
    assert sum("conv2" in msg for _, msg in calls) == 1


def test_shared_layer_takes_the_max_over_its_calls():
    torch.manual_seed(0)
    shared = nn.Linear(4, 4)
    net = nn.Sequential(shared, nn.ReLU(), shared)
    x = torch.randn(5, 4)
    got = compute_sensitivities(net, x)["0"]
    with torch.no_grad():
        h = torch.relu(shared(x))
    want = np.maximum(oracle(shared, x, "max"), oracle(shared, h, "max"))
    assert_matches(got, want)


def test_values_lie_in_unit_interval_and_cover_weight_shape():
    torch.manual_seed(3)
    net = _Net()
    for s in compute_sensitivities(net, torch.randn(6, 2, 5, 5)).values():
        assert float(s.min()) >= 0.0 and float(s.max()) <= 1.0 + 1e-6


def test_left_dense_reports_unpruned_modules():
    names = [n for n, _ in left_dense(_Net())]
    assert names == ["bn"]
    grouped = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(), nn.Linear(4, 2))
    assert [n for n, _ in left_dense(grouped)] == ["0"]
    assert list(compute_sensitivities(grouped, torch.randn(2, 4, 3, 3))) == ["2"]


# --------------------------------------------------------------------------- guarantees on S


def _rows_and_shares(layer: nn.Module, x: torch.Tensor):
    """Per (row, point, patch): the ratios g over the row's edges, float64 (F, 2, N, P, J)."""
    w = layer.weight.detach().double().reshape(layer.weight.shape[0], -1)
    x = x.double()
    if (x < 0).any():
        x = torch.cat([x.clamp(min=0), (-x).clamp(min=0)])
    if isinstance(layer, nn.Linear):
        a = x.reshape(x.shape[0], -1, 1)
    else:
        a = nn.functional.unfold(x, layer.kernel_size, dilation=layer.dilation, padding=layer.padding,
                                 stride=layer.stride)
    signs = torch.stack([w > 0, w < 0], dim=1).double()  # (F, 2, J)
    terms = w.abs()[:, None, None, None, :] * signs[:, :, None, None, :] * a.transpose(1, 2)[None, None]
    z = terms.sum(-1, keepdim=True)  # (F, 2, N, P, 1)
    g = torch.where(z > EPS, terms / z, torch.zeros((), dtype=torch.float64))
    return g, z.squeeze(-1)


@pytest.mark.parametrize("case", ["linear", "conv"])
def test_ratios_of_a_row_sum_to_one(case):
    layer, x = (LINEAR_CASES["negative inputs"] if case == "linear" else CONV_CASES["padding, negative inputs"])()
    g, z = _rows_and_shares(layer, x)
    sums = g.sum(-1)
    signal = z > EPS
    assert bool(signal.any())
    torch.testing.assert_close(sums[signal], torch.ones_like(sums[signal]), rtol=1e-12, atol=1e-12)
    assert torch.all(sums[~signal] == 0)


@pytest.mark.parametrize("case", ["linear", "conv stride 2", "conv negative"])
def test_deterministic_bound_holds_on_every_point_of_s(case):
    """Keeping a row's top m by s, the pruned share of z^sigma is <= eps_det(m) everywhere on S."""
    make = {"linear": LINEAR_CASES["negative inputs"], "conv stride 2": CONV_CASES["stride 2, relu inputs"],
            "conv negative": CONV_CASES["padding, negative inputs"]}[case]
    layer, x = make()
    s = layer_sensitivity(layer, x)  # max reduction
    g, _ = _rows_and_shares(layer, x)  # (F, 2, N, P, J)
    w = layer.weight.detach().reshape(layer.weight.shape[0], -1)
    s2 = s.reshape(w.shape).double()
    f_units, fan_in = w.shape
    for m in range(0, fan_in + 1):
        bound = eps_det(s, layer.weight.detach(), m)  # (F, 2)
        for f in range(f_units):
            for c, member in enumerate((w[f] > 0, w[f] < 0)):
                idx = torch.nonzero(member).squeeze(1)
                order = idx[torch.argsort(-s2[f, idx], stable=True)]
                pruned = order[m:]
                share = g[f, c][..., pruned].sum(-1)  # (N, P)
                worst = float(share.max()) if share.numel() else 0.0
                assert worst <= float(bound[f, c]) * (1 + 1e-6) + 1e-12


# --------------------------------------------------------------------------- validation


def test_bad_patch_reduction():
    with pytest.raises(ValueError, match="patch_reduction"):
        compute_sensitivities(_Net(), torch.randn(2, 2, 5, 5), patch_reduction="median")
    with pytest.raises(ValueError, match="patch_reduction"):
        layer_sensitivity(nn.Linear(3, 2), torch.randn(2, 3), patch_reduction=None)


def test_batch_that_does_not_fit():
    with pytest.raises(ValueError, match=r"do not fit the model"):
        compute_sensitivities(_Net(), torch.randn(2, 3, 5, 5))
    with pytest.raises(ValueError, match="non-empty"):
        compute_sensitivities(_Net(), torch.randn(0, 2, 5, 5))
    with pytest.raises(ValueError, match="floating"):
        compute_sensitivities(_Net(), torch.ones(2, 2, 5, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match="nan or inf"):
        compute_sensitivities(_Net(), torch.full((2, 2, 5, 5), math.nan))
    with pytest.raises(ValueError, match="chunk_bytes"):
        compute_sensitivities(_Net(), torch.randn(2, 2, 5, 5), chunk_bytes=0)


def test_model_without_prunable_layers():
    assert compute_sensitivities(nn.Sequential(nn.ReLU()), torch.randn(2, 3)) == {}
