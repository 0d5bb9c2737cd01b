"""The scale-free SMP (docs/nonsmoothness.md §2.1): SMP divided by the logits' variation along the path."""
from __future__ import annotations

import math

import torch
from torch import nn

from sipp_core.smoothness.core import nonsmoothness, segment_paths


def relu_then(scale: float) -> nn.Module:
    """x -> scale * (relu(x0), -relu(x0)): one kink at x0 = 0, slope jump `scale` in each of two logits."""
    lin = nn.Linear(2, 1)
    out = nn.Linear(1, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.0]]))
        lin.bias.zero_()
        out.weight.copy_(torch.tensor([[scale], [-scale]]))
        out.bias.zero_()
    return nn.Sequential(lin, nn.ReLU(), out)


def test_relative_smp_is_scale_free_and_has_its_closed_form():
    # path x0 from -1 to 1 (length 2): each logit is 0, then rises by `scale` with slope jump `scale` per unit
    # distance. SMP = 2 * scale; variation = 2 * scale / 2; relative = 2 whatever the scale.
    paths = segment_paths(torch.tensor([[-1.0, 0.3]]), torch.tensor([[1.0, 0.3]]), points=257)
    got = {}
    for scale in (1.0, 10.0):
        rec = nonsmoothness(relu_then(scale), paths, jacobian_points=0, threads=1)
        got[scale] = rec
        assert math.isclose(float(rec.logit_variation[0]), scale, rel_tol=1e-5)
        assert math.isclose(float(rec.smp[0]), 2 * scale, rel_tol=1e-3)
        assert math.isclose(float(rec.relative_smp[0]), 2.0, rel_tol=1e-3)
        assert math.isclose(rec.summary()["relative_smp"], float(rec.relative_smp[0]))
        assert rec.path_rows()[0]["relative_smp"] == float(rec.relative_smp[0])
    assert math.isclose(float(got[10.0].smp[0]) / float(got[1.0].smp[0]), 10.0, rel_tol=1e-4)


def test_relative_smp_is_nan_where_the_logits_do_not_vary():
    paths = segment_paths(torch.tensor([[-1.0, 0.3]]), torch.tensor([[-0.5, 0.3]]), points=65)  # relu off throughout
    rec = nonsmoothness(relu_then(1.0), paths, jacobian_points=0, threads=1)
    assert float(rec.logit_variation[0]) == 0.0 and math.isnan(float(rec.relative_smp[0]))
