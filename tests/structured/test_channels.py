"""Channel sensitivities against a slow loop over points, filters, patches and taps written from the
definition (PFP: per-tap max, sign split of inputs and weights, same-sign denominators without bias,
the float32 zero guard)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sipp_core
from sipp_core.structured.channels import channel_sensitivities

EPS32 = 1.1920929e-07


def _layer_inputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each Linear / Conv2d's actual input in the unpruned network, for every point of x."""
    seen, hooks = {}, []

    def keep(name):
        def hook(module, args, output):
            seen[name] = args[0].detach()  # returns None: the output is left as it is
        return hook

    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            hooks.append(m.register_forward_hook(keep(name)))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


def _patches(m: nn.Module, a: torch.Tensor) -> torch.Tensor:
    """U[j, k, p] of one point: Linear (J,) -> (J, 1, 1); Conv2d -> (C, kh*kw, P) with the layer's own geometry."""
    if isinstance(m, nn.Linear):
        return a.reshape(-1, 1, 1)
    cols = F.unfold(a.unsqueeze(0), m.kernel_size, dilation=m.dilation, padding=m.padding, stride=m.stride)[0]
    return cols.reshape(m.in_channels, -1, cols.shape[-1])


def oracle(model: nn.Module, S: torch.Tensor) -> dict[str, list[float]]:
    """s_j = max over x, pseudo-input, filter i, patch p, tap k of max(W+ U / z+, W- U / z-)."""
    inputs = _layer_inputs(model, S)
    out = {}
    for name, m in model.named_modules():
        if name not in inputs:
            continue
        w = m.weight.detach().double().reshape(m.weight.shape[0], m.weight.shape[1], -1)  # (f, c, taps)
        wp, wm = w.clamp(min=0), w.clamp(max=0)
        s = [0.0] * w.shape[1]
        for a in inputs[name].double():
            pseudo = [a] if bool((a >= 0).all()) else [a.clamp(min=0), (-a).clamp(min=0)]
            for ab in pseudo:
                u = _patches(m, ab)  # (c, taps, P)
                for i in range(w.shape[0]):
                    for p in range(u.shape[2]):
                        zp = float((wp[i] * u[:, :, p]).sum())
                        zm = float((wm[i] * u[:, :, p]).sum())
                        zp = math.inf if abs(zp) <= EPS32 else zp
                        zm = math.inf if abs(zm) <= EPS32 else zm
                        for j in range(w.shape[1]):
                            for k in range(w.shape[2]):
                                g = max(float(wp[i, j, k] * u[j, k, p]) / zp, float(wm[i, j, k] * u[j, k, p]) / zm)
                                s[j] = max(s[j], g)
        out[name] = s
    return out


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.conv = nn.Conv2d(4, 4, 3, padding=1, stride=1)
        self.down = nn.Conv2d(4, 5, 3, stride=2)
        self.fc = nn.Linear(5 * 2 * 2, 3)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        h = torch.relu(h + self.conv(h))
        return self.fc(torch.relu(self.down(h)).flatten(1))


CASES = {
    "linear, negative inputs": (lambda: nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)), (12, 6)),
    "conv, padding and stride, negative inputs": (
        lambda: nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 3 * 3, 2)),
        (6, 2, 6, 6)),
    "residual block": (Residual, (5, 3, 6, 6)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_channel_sensitivities_match_the_definition(case):
    make, shape = CASES[case]
    torch.manual_seed(3)
    model = make().eval()
    S = torch.randn(*shape)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    got = channel_sensitivities(model, S)
    want = oracle(model, S)
    assert set(got) == set(want)
    for name, values in want.items():
        assert got[name].shape == (len(values),)
        torch.testing.assert_close(got[name].double(), torch.tensor(values, dtype=torch.float64), rtol=1e-5, atol=1e-7)
        assert bool(((got[name] >= 0) & (got[name] <= 1 + 1e-6)).all())  # in [0, 1] up to float32 rounding
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the model is not changed


def test_a_channel_with_zero_weights_scores_zero_and_the_public_name_works():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
    with torch.no_grad():
        model[0].bias.fill_(1.0)  # every hidden unit carries signal
        model[2].weight[:, 1] = 0
    s = sipp_core.channel_sensitivities(model, torch.rand(10, 4))
    assert s["2"][1] == 0 and s["2"][0] > 0 and s["2"][2] > 0


def test_the_memory_budget_does_not_change_the_result():
    torch.manual_seed(1)
    model = Residual().eval()
    S = torch.randn(20, 3, 6, 6)
    big = channel_sensitivities(model, S)
    small = channel_sensitivities(model, S, chunk_bytes=2_000)
    for k in big:  # the same engine as SiPP: chunking moves at most float32 round-off
        torch.testing.assert_close(small[k], big[k], rtol=2e-6, atol=0)
