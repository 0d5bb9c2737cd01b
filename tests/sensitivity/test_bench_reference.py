"""The benchmark's slow reference loops compute the same sensitivities as the engine.

The speed ratios in BENCHMARKS.md compare equal outputs only if these loops are right.
"""
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from sens_reference import authors_loop, lean_loop  # noqa: E402

from sipp_core.sensitivity.api import compute_sensitivities  # noqa: E402


def _nets():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.ReLU(), nn.Linear(7, 3))
    cnn = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, stride=2, bias=True), nn.ReLU(),
        nn.Conv2d(4, 3, 2, dilation=2, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 3 * 3, 2),
    )
    return [(mlp, torch.randn(6, 1, 3, 4)), (cnn, torch.randn(5, 2, 9, 9))]


@pytest.mark.parametrize("loop", [authors_loop, lean_loop])
@pytest.mark.parametrize("reduction", ["max", "mean"])
def test_reference_loops_agree_with_engine(loop, reduction):
    for net, x in _nets():
        want = compute_sensitivities(net, x, patch_reduction=reduction)
        got = loop(net.eval(), x, reduction)
        assert set(got) == set(want)
        for name in want:
            torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-7)


def test_authors_loop_leaves_the_model_unchanged():
    net, x = _nets()[1]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    authors_loop(net.eval(), x)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
