"""Baselines (docs/sipp.md §6) and implied_bounds."""
import copy
import math

import pytest
import torch
from torch import nn

from sipp_core.plan import baselines as bl
from sipp_core.plan.planner import implied_bounds, make_plan, realised_keep_ratio
from sipp_core.zoo.layers import LayerInfo, layer_infos, prunable_layers


def net_weights(shapes=((300, 784), (100, 300), (10, 100)), seed=0):
    g = torch.Generator().manual_seed(seed)
    weights, infos = {}, {}
    for i, (f, j) in enumerate(shapes):
        name = f"fc{i + 1}"
        weights[name] = torch.randn(f, j, generator=g) * 0.05
        infos[name] = LayerInfo(name, "linear", (f, j), f, j, 1, 1)
    return weights, infos


@pytest.fixture(scope="module")
def lenet():
    return net_weights()


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 * 6 * 6, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


@pytest.mark.parametrize("kappa", [0.5, 0.1, 0.02])
def test_wt_keeps_exactly_the_global_top_b_magnitudes(lenet, kappa):
    weights, infos = lenet
    total = sum(w.numel() for w in weights.values())
    plans = make_plan("wt", weights, infos, keep_ratio=kappa)
    assert sum(p.kept for p in plans.values()) == round(kappa * total)
    kept = torch.cat([weights[n][p.mask].abs() for n, p in plans.items()])
    pruned = torch.cat([weights[n][~p.mask].abs() for n, p in plans.items()])
    assert float(kept.min()) >= float(pruned.max())
    for n, p in plans.items():
        assert torch.equal(p.values[p.mask], weights[n][p.mask]) and not bool(p.values[~p.mask].any())
        assert bool(torch.isnan(p.row_bound).all()) and math.isnan(p.bound_max)


def test_layerwise_keeps_kappa_of_each_layer(lenet):
    weights, infos = lenet
    kappa = 0.07
    plans = make_plan("layerwise", weights, infos, keep_ratio=kappa)
    total = sum(w.numel() for w in weights.values())
    assert sum(p.kept for p in plans.values()) == round(kappa * total)
    for n, p in plans.items():
        assert abs(p.kept - kappa * p.total) <= 1.0
        kept, pruned = weights[n][p.mask].abs(), weights[n][~p.mask].abs()
        assert float(kept.min()) >= float(pruned.max())


def test_random_mask_has_exactly_b_and_is_seeded(lenet):
    weights, infos = lenet
    total = sum(w.numel() for w in weights.values())
    a = make_plan("random", weights, infos, keep_ratio=0.1, seed=1)
    b = make_plan("random", weights, infos, keep_ratio=0.1, seed=1)
    c = make_plan("random", weights, infos, keep_ratio=0.1, seed=2)
    assert sum(p.kept for p in a.values()) == round(0.1 * total)
    assert all(torch.equal(a[n].mask, b[n].mask) for n in a)
    assert not all(torch.equal(a[n].mask, c[n].mask) for n in a)
    # roughly the same density in every layer (uniform over all weights)
    for p in a.values():
        assert abs(p.kept / p.total - 0.1) < 0.06


@pytest.mark.parametrize("kappa", [0.5, 0.1, 0.05, 0.02])
def test_uniform_sampling_hits_ratio_and_reweights(lenet, kappa):
    weights, infos = lenet
    plans = make_plan("uniform", weights, infos, keep_ratio=kappa, seed=0)
    assert abs(realised_keep_ratio(plans) - kappa) <= 0.005 * kappa
    for n, p in plans.items():
        w = weights[n]
        assert bool((p.mask.sum(1) >= 1).all())  # every unit keeps at least one weight
        # values = W count J / m': per unit, sum_j v_j / W_j = J * (sum counts) / m' = J
        ratio = torch.where(p.mask, p.values.double() / w.double(), torch.zeros((), dtype=torch.float64)).sum(1)
        full = p.mask.all(1)
        assert torch.allclose(ratio[~full], torch.full_like(ratio[~full], float(w.shape[1])), rtol=1e-5)
        assert bool((torch.sign(p.values[p.mask]) == torch.sign(w[p.mask])).all())


def test_uniform_sampling_is_unbiased_and_seeded():
    j, units = 30, 4000
    g = torch.Generator().manual_seed(0)
    row = torch.randn(j, generator=g)
    a = torch.rand(j, generator=g)
    weights = {"fc": row.repeat(units, 1)}
    res, realised, nominal = bl.uniform_plan(weights, 0.2, seed=5)
    values = res["fc"][1].double()
    zhat = values @ a.double()
    z = float(row.double() @ a.double())
    se = float(zhat.std()) / math.sqrt(units)
    assert abs(float(zhat.mean()) - z) < 4.5 * se
    assert abs(realised - 0.2) <= 0.001
    again, _, _ = bl.uniform_plan(weights, 0.2, seed=5)
    other, _, _ = bl.uniform_plan(weights, 0.2, seed=6)
    assert torch.equal(again["fc"][1], res["fc"][1]) and not torch.equal(other["fc"][1], res["fc"][1])


def test_snip_scores_do_not_mutate_the_model_and_match_the_definition():
    torch.manual_seed(0)
    model = Tiny()
    model.train()
    x = torch.randn(10, 1, 6, 6)
    y = torch.randint(0, 4, (10,))
    before = copy.deepcopy(model.state_dict())
    scores = bl.snip_scores(model, x, y, batch_size=4)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN running stats untouched
    assert all(p.grad is None for p in model.parameters())
    assert model.training
    assert set(scores) == {"conv", "fc"}
    # the definition: |mean over batches of (dL/dW * W)|, cross-entropy, eval mode
    ref = copy.deepcopy(model).eval()
    acc = {n: torch.zeros_like(m.weight) for n, m in prunable_layers(ref).items()}
    for i in range(0, 10, 4):
        ref.zero_grad()
        nn.functional.cross_entropy(ref(x[i : i + 4]), y[i : i + 4]).backward()
        for n, m in prunable_layers(ref).items():
            acc[n] += m.weight.grad * m.weight.detach()
    for n in acc:
        assert torch.allclose(scores[n], (acc[n] / 3).abs(), rtol=1e-5, atol=1e-8)
        assert scores[n].shape == prunable_layers(model)[n].weight.shape


def test_snip_plan_is_global_top_b_of_scores():
    torch.manual_seed(1)
    model = Tiny()
    x, y = torch.randn(8, 1, 6, 6), torch.randint(0, 4, (8,))
    infos = layer_infos(model, (1, 6, 6))
    weights = {n: m.weight.detach() for n, m in prunable_layers(model).items()}
    scores = bl.snip_scores(model, x, y)
    plans = make_plan("snip", weights, infos, keep_ratio=0.3, snip_scores=scores)
    total = sum(w.numel() for w in weights.values())
    assert sum(p.kept for p in plans.values()) == round(0.3 * total)
    kept = torch.cat([scores[n][p.mask] for n, p in plans.items()])
    pruned = torch.cat([scores[n][~p.mask] for n, p in plans.items()])
    assert float(kept.min()) >= float(pruned.max())
    assert plans["conv"].mask.shape == (3, 1, 3, 3) and plans["conv"].row_kept.shape == (3, 2)


def test_snip_scores_validate_arguments():
    model = Tiny()
    x = torch.randn(4, 1, 6, 6)
    with pytest.raises(ValueError, match="labels"):
        bl.snip_scores(model, x, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="batch_size"):
        bl.snip_scores(model, x, torch.zeros(4, dtype=torch.long), batch_size=0)
    weights = {n: m.weight.detach() for n, m in prunable_layers(model).items()}
    infos = layer_infos(model, (1, 6, 6))
    with pytest.raises(ValueError, match="snip_scores"):
        make_plan("snip", weights, infos, keep_ratio=0.3, snip_scores={"conv": torch.rand(3, 1, 3, 3)})


def test_baseline_row_records(lenet):
    weights, infos = lenet
    for method in ("wt", "layerwise", "random", "uniform"):
        plans = make_plan(method, weights, infos, keep_ratio=0.05)
        for n, p in plans.items():
            w = weights[n]
            assert p.row_kept.shape == (w.shape[0], 2) and p.row_kept.dtype == torch.int64
            assert int(p.row_kept.sum()) == p.kept == int(p.mask.sum())
            assert torch.equal(p.row_kept[:, 0], (p.mask & (w > 0)).sum(1))
            assert p.row_method.dtype == torch.int8
            assert bool((p.row_kept[p.row_method == 3] == 0).all())


def test_implied_bounds_measure_any_mask(lenet):
    weights, infos = lenet
    g = torch.Generator().manual_seed(3)
    sens = {n: torch.rand(w.shape, generator=g) * (w != 0) for n, w in weights.items()}
    wt = make_plan("wt", weights, infos, keep_ratio=0.1)
    got = implied_bounds(wt, weights, sens)
    for n, p in wt.items():
        w, s = weights[n], sens[n].double()
        pruned = ~p.mask
        want = torch.stack([(s * (pruned & (w > 0))).sum(1), (s * (pruned & (w < 0))).sum(1)], 1)
        assert torch.allclose(got[n], want, rtol=1e-12)
    det = make_plan("sipp-det", weights, infos, keep_ratio=0.1, sensitivities=sens)
    got = implied_bounds(det, weights, sens)
    for n, p in det.items():
        assert torch.allclose(got[n], p.row_bound, rtol=1e-9, atol=1e-9)
