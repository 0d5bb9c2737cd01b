"""The conv output built from the engines' partial pre-activations (sipp_core.sensitivity.conv_output)
and its use in compute_sensitivities' forward pass."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from sipp_core.sensitivity import api as sens_mod
from sipp_core.sensitivity.api import compute_sensitivities, layer_sensitivity
from sipp_core.zoo.layers import capture_inputs


def _scale(layer: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """sum |W| |a| per output: what float32 rounding of a convolution is relative to."""
    absolute = copy.deepcopy(layer)
    with torch.no_grad():
        absolute.weight.abs_()
        absolute.bias = None
        return absolute(x.abs())


CASES = {
    "relu inputs, screened": (dict(cin=16, cout=16, padding=1), (40, 16, 16, 16), "relu", "screened"),
    "negative inputs, screened": (dict(cin=3, cout=8, padding=1, bias=True), (30, 3, 16, 16), "normal", "screened"),
    "stride, dilation, direct": (dict(cin=3, cout=4, stride=2, dilation=2, padding=2), (9, 3, 11, 9), "normal",
                                 "direct"),
    "reflect padding, direct": (dict(cin=2, cout=3, padding=1, padding_mode="reflect"), (5, 2, 6, 7), "normal",
                                "direct"),
    "same padding, even kernel": (dict(cin=3, cout=5, k=4, padding="same", bias=True), (7, 3, 9, 10), "normal",
                                  "screened"),
    "circular padding": (dict(cin=3, cout=5, padding=2, padding_mode="circular"), (7, 3, 9, 10), "relu", "screened"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("reduction", ["max", "mean"])
@pytest.mark.parametrize("chunk_bytes", [sens_mod.DEFAULT_CHUNK_BYTES, 20_000])
def test_assembled_output_is_the_convolution(case, reduction, chunk_bytes):
    conv, shape, kind, engine = CASES[case]
    conv = dict(conv)
    torch.manual_seed(3)
    layer = nn.Conv2d(conv.pop("cin"), conv.pop("cout"), conv.pop("k", 3), **{"bias": False, **conv})
    x = torch.randn(*shape)
    if kind == "relu":
        x = x.relu()
    holder: dict = {}
    layer_sensitivity(layer, x, patch_reduction=reduction, engine=engine, chunk_bytes=chunk_bytes, _output=holder)
    with torch.no_grad():
        want = layer(x)
        tol = 1e-6 * _scale(layer, x) + 1e-6 * (layer.bias.abs().view(1, -1, 1, 1) if layer.bias is not None else 0)
    got = holder["y"]
    assert got.shape == want.shape and got.dtype == want.dtype
    assert bool(((got - want).abs() <= tol).all())


def test_sensitivities_use_it_and_agree_with_the_models_own_forward(monkeypatch):
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.ReLU(),
        nn.Conv2d(16, 8, 3, stride=2), nn.Flatten(), nn.Linear(8 * 7 * 7, 5),
    )
    x = torch.randn(40, 3, 16, 16)
    built = []
    real = sens_mod.as_module_output
    monkeypatch.setattr(sens_mod, "as_module_output", lambda *a: built.append(a[1]) or real(*a))
    fused = compute_sensitivities(net, x)
    assert built == [net[0], net[2], net[4]]  # every conv layer's output came from its z
    monkeypatch.setattr(sens_mod, "fusable", lambda *a, **k: False)
    plain = compute_sensitivities(net, x)
    for name in plain:
        torch.testing.assert_close(fused[name], plain[name], rtol=1e-5, atol=1e-7)


def test_not_fused_where_someone_else_watches_the_layer(monkeypatch):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Conv2d(4, 3, 3))
    x = torch.randn(6, 2, 8, 8)
    seen = []
    handle = net[2].register_forward_hook(lambda m, args, out: seen.append((args[0].shape[0], out.shape[0])))
    built = []
    real = sens_mod.as_module_output
    monkeypatch.setattr(sens_mod, "as_module_output", lambda *a: built.append(a[1]) or real(*a))
    try:
        compute_sensitivities(net, x)
    finally:
        handle.remove()
    assert seen == [(2, 2), (6, 6)]  # the dry run on two points, then all of S: the true input and output
    assert built == [net[0]]  # the unwatched layer only


def test_not_fused_for_a_conv_subclass():
    class Scaled(nn.Conv2d):
        def forward(self, x):
            return 2 * super().forward(x)

    torch.manual_seed(0)
    net = nn.Sequential(Scaled(2, 3, 3), nn.ReLU(), nn.Conv2d(3, 2, 3))
    x = torch.randn(5, 2, 7, 7)
    got = compute_sensitivities(net, x)
    with torch.no_grad(), capture_inputs(net, ["2"]) as inputs:
        net(x)
    torch.testing.assert_close(got["2"], layer_sensitivity(net[2], inputs["2"]), rtol=1e-6, atol=0)


def test_output_parts_arrive_once_and_in_order():
    from sipp_core.sensitivity.conv_output import ConvOutput

    z = torch.rand(6, 4, 5)  # 3 points and their negative parts, F = 2, P = 5
    out = ConvOutput(3, 2, 5, negative=True, device="cpu")
    with pytest.raises(RuntimeError, match="a- part"):
        out.add(4, z[4:])  # a- of point 1 before its a+
    out.add(0, z[:2])
    out.add(2, z[2:4])  # a+ of point 2, a- of point 0
    out.add(2, z[2:4])  # again (a reloaded chunk): skipped
    assert not out.complete()
    out.add(4, z[4:])
    assert out.complete()
    d = z[:, :2] - z[:, 2:]
    torch.testing.assert_close(out.y, d[:3] - d[3:])
