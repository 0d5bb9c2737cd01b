"""Sparsifiers (docs/sipp.md §4) against slow, obviously correct row loops."""
import math

import numpy as np
import pytest
import torch

from sipp_core.plan import sparsify as sp
from sipp_core.plan.bounds import eps_rand_rows


def rand_layer(f=12, j=20, seed=0, zero_w=0.1, zero_s=0.15, ties=True):
    """Random weight and sensitivity: s >= 0, s = 0 on zero weights, each row's s sums to >= 1."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(f, j, generator=g)
    w[torch.rand(f, j, generator=g) < zero_w] = 0.0
    s = torch.rand(f, j, generator=g)
    if ties:
        s = torch.round(s * 8) / 8  # many exact ties
    s[torch.rand(f, j, generator=g) < zero_s] = 0.0
    s[w == 0] = 0.0
    for sign in (w > 0, w < 0):
        tot = (s * sign).sum(1, keepdim=True)
        s = torch.where(sign & (tot > 0), s / tot.clamp_min(1e-12) * (1 + torch.rand(f, 1, generator=g)), s)
    return w, s


def slow_rows(w, s):
    """[(f, c, [(j, s_j)] sorted by s desc then j asc over weights with s > 0)]."""
    out = []
    for f in range(w.shape[0]):
        for c, sign in enumerate((1, -1)):
            items = [(j, float(s[f, j])) for j in range(w.shape[1]) if (w[f, j] * sign > 0) and s[f, j] > 0]
            items.sort(key=lambda t: (-t[1], t[0]))
            out.append((f, c, items))
    return out


def test_rows_totals_and_order_match_definition():
    w, s = rand_layer()
    rows = sp.build_rows(w, s)
    for f, c, items in slow_rows(w, s):
        r = 2 * f + c
        assert int(rows.nnz[r]) == len(items)
        assert float(rows.total[r]) == pytest.approx(sum(v for _, v in items), rel=1e-12, abs=1e-12)
        assert rows.col[r, : len(items)].tolist() == [j for j, _ in items]


def test_rows_agree_with_bounds_row_totals_and_eps_det():
    from sipp_core.plan import bounds

    w, s = rand_layer(seed=3)
    rows = sp.build_rows(w, s)
    t, nnz = bounds.row_totals(s, w)
    assert torch.allclose(t.reshape(-1), rows.total, rtol=1e-12, atol=1e-12)
    assert torch.equal(nnz.reshape(-1).to(torch.int64), rows.nnz)
    m = torch.randint(0, 15, (w.shape[0], 2), generator=torch.Generator().manual_seed(1))
    assert torch.equal(sp.eps_det_rows(rows, m.reshape(-1)), bounds.eps_det(s, w, m).reshape(-1))
    for eps in (0.01, 0.4, 2.0):
        assert torch.equal(sp.det_m_for_eps(rows, eps), bounds.det_m_for_eps(s, w, eps).reshape(-1))


@pytest.mark.parametrize("mval", [0, 1, 3, 7, 100])
def test_deterministic_keeps_top_m_ties_by_index_values_unchanged(mval):
    w, s = rand_layer(seed=1)
    m = torch.full((w.shape[0], 2), mval)
    mask, values = sp.sparsify_deterministic(w, s, m)
    expect = torch.zeros_like(mask)
    for f, c, items in slow_rows(w, s):
        for j, _ in items[:mval]:
            expect[f, j] = True
    assert torch.equal(mask, expect)
    assert torch.equal(values[mask], w[mask])
    assert bool((values[~mask] == 0).all())


def test_deterministic_ties_explicit():
    w = torch.tensor([[1.0, 2.0, 3.0, 4.0, -1.0]])
    s = torch.tensor([[0.5, 0.5, 0.2, 0.5, 1.0]])
    mask, _ = sp.sparsify_deterministic(w, s, torch.tensor([[2, 0]]))
    assert mask.tolist() == [[True, True, False, False, False]]  # ties at 0.5: lower index first


def test_m_at_least_nnz_keeps_exactly_the_positive_sensitivity_weights():
    w, s = rand_layer(seed=2)
    m = torch.full((w.shape[0], 2), 10_000)
    for fn in (lambda: sp.sparsify_deterministic(w, s, m), lambda: sp.sparsify_sampling(w, s, m, seed=1)):
        mask, values = fn()
        assert torch.equal(mask, (s > 0) & (w != 0))
        assert torch.equal(values[mask], w[mask])  # whole rows are not reweighted


def test_m_below_one_empties_the_row():
    w, s = rand_layer(seed=2)
    m = torch.full((w.shape[0], 2), 0.7)
    mask, values = sp.sparsify_sampling(w, s, m, seed=0)
    assert not mask.any() and not values.any()


def test_eps_det_and_smallest_m_for_eps():
    w, s = rand_layer(seed=4)
    rows = sp.build_rows(w, s)
    ms = torch.randint(0, 12, (rows.rows,), generator=torch.Generator().manual_seed(0))
    got = sp.eps_det_rows(rows, ms)
    for (f, c, items), m in zip(slow_rows(w, s), ms.tolist()):
        assert float(got[2 * f + c]) == pytest.approx(sum(v for _, v in items[m:]), abs=1e-12)
    for eps in (1e-3, 0.05, 0.3, 1.0, 5.0):
        m = sp.det_m_for_eps(rows, eps)
        assert bool((sp.eps_det_rows(rows, m) <= eps).all())
        prev = sp.eps_det_rows(rows, (m - 1).clamp_min(0))
        assert bool(((m == 0) | (prev > eps)).all())  # m - 1 would not do


def test_expected_distinct_and_draws_for_distinct():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(50, 40, generator=g, dtype=torch.float64) ** 6  # skewed
    p[:, 30:] = 0.0  # padding
    p = p / p.sum(1, keepdim=True)
    m = torch.randint(1, 30, (50,), generator=g).double()
    k = sp.draws_for_distinct(p, m)
    e = sp.expected_distinct(p, k)
    lo, hi = sp.expected_distinct(p, k - 1), sp.expected_distinct(p, k + 1)
    assert bool((k >= m).all())
    # the nearest whole number of draws: neighbours are not closer to m (up to the solver's 1e-6)
    assert bool(((e - m).abs() <= (lo - m).abs() + 1e-6).all())
    assert bool(((e - m).abs() <= (hi - m).abs() + 1e-6).all())
    assert float((e - m).abs().max()) <= 0.5
    # expected distinct equals its definition on one row
    row = p[3]
    assert float(sp.expected_distinct(row, 17)) == pytest.approx(float((1 - (1 - row) ** 17).sum()), rel=1e-12)


@pytest.mark.parametrize("power", [1, 4, 12])
def test_alias_tables_reproduce_the_probabilities(power):
    g = torch.Generator().manual_seed(power)
    r, n = 40, 30
    p = torch.rand(r, n, generator=g, dtype=torch.float64) ** power
    nnz = torch.randint(0, n + 1, (r,), generator=g)
    p = torch.where(torch.arange(n)[None] < nnz[:, None], p, torch.zeros((), dtype=torch.float64))
    p = torch.sort(p, 1, descending=True).values
    p = p / p.sum(1, keepdim=True).clamp_min(1e-300)
    prob, alias = sp.alias_table(p, nnz)
    mass = torch.zeros_like(p)
    for i in range(r):
        z = int(nnz[i])
        for c in range(z):
            assert 0 <= int(alias[i, c]) < z
            mass[i, c] += prob[i, c] / z
            mass[i, alias[i, c]] += (1 - prob[i, c]) / z
    assert float((mass - p).abs().max()) < 1e-12


def test_draw_frequencies_match_probabilities():
    # one skewed row replicated: pooled draw frequencies must match p (alias tables + uniform split)
    g = torch.Generator().manual_seed(21)
    p_row = torch.sort(torch.rand(15, generator=g, dtype=torch.float64) ** 5, descending=True).values
    p_row = torch.cat([p_row / p_row.sum(), torch.zeros(3, dtype=torch.float64)])  # 3 padding columns
    reps, k = 3000, 50
    p = p_row.repeat(reps, 1)
    nnz = torch.full((reps,), 15)
    d = sp.NestedDraws(p, nnz, sp.layer_seed(0, "freq", 0), sp.alias_table(p, nnz))
    c = d.counts(torch.full((reps,), k)).sum(0).double()
    n = reps * k
    se = (p_row * (1 - p_row) / n).sqrt()
    assert bool(((c / n - p_row).abs() <= 5 * se + 1e-12).all())
    assert float(c[15:].sum()) == 0.0


def test_sampling_reproducible_and_seed_dependent():
    w, s = rand_layer(f=30, j=40, seed=5, ties=False)
    m = torch.full((30, 2), 6)
    a = sp.sparsify_sampling(w, s, m, seed=7)
    b = sp.sparsify_sampling(w, s, m, seed=7)
    c = sp.sparsify_sampling(w, s, m, seed=8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_sampling_reweighting_and_unbiasedness():
    # one row replicated: every replica is an independent draw of the same estimator
    j, reps = 25, 3000
    g = torch.Generator().manual_seed(11)
    w_row = torch.rand(j, generator=g) + 0.1  # positive row only
    s_row = torch.rand(j, generator=g) ** 3
    s_row = s_row / s_row.sum() * 1.5
    a = torch.rand(j, generator=g)
    w = w_row.repeat(reps, 1)
    s = s_row.repeat(reps, 1)
    m = torch.tensor([[5, 0]]).repeat(reps, 1)
    mask, values = sp.sparsify_sampling(w, s, m, seed=3)
    # values = W count / (m' p): sum_j (v_j / W_j) p_j = sum_j count_j / m' = 1 on every row
    p = (s_row / s_row.sum()).double()
    ratio = (values.double() / w.double()) @ p
    assert torch.allclose(ratio, torch.ones(reps, dtype=torch.float64), atol=1e-5)
    zhat = values.double() @ a.double()
    z = float(w_row.double() @ a.double())
    se = float(zhat.std()) / math.sqrt(reps)
    assert abs(float(zhat.mean()) - z) < 4.5 * se  # unbiased within statistical tolerance
    # expected number of distinct weights is about m = 5
    kept = mask.sum(1).double()
    assert float(kept.mean()) == pytest.approx(5.0, abs=0.1)
    # sampled rows keep values' signs
    assert bool((values[mask] > 0).all())


def test_sampling_negative_rows_keep_sign_and_only_positive_sensitivity():
    w, s = rand_layer(f=40, j=30, seed=9, ties=False)
    mask, values = sp.sparsify_sampling(w, s, torch.full((40, 2), 4), seed=2)
    assert bool((s[mask] > 0).all())
    assert bool((torch.sign(values[mask]) == torch.sign(w[mask])).all())


def test_nested_draws_grow_with_k_and_big_rows_use_multinomial():
    w, s = rand_layer(f=20, j=30, seed=12, ties=False)
    rows = sp.build_rows(w, s)
    d = sp.row_draws(rows, seed=0, name="x")
    k1 = torch.randint(1, 20, (rows.rows,), generator=torch.Generator().manual_seed(0))
    c1 = d.counts(k1)
    c2 = d.counts(k1 + 7)
    assert bool((c2 >= c1).all())
    assert torch.equal(c1.sum(1), k1)
    big = rows.nnz * 50 + 100  # far past the explicit-draw limit
    c3 = d.counts(big)
    assert torch.equal(c3.sum(1), torch.where(rows.nnz > 0, big, torch.zeros_like(big)))
    pad = torch.arange(rows.width)[None, :] >= rows.nnz[:, None]
    assert not bool(c3[pad].any())
    # same seed, same counts, whatever was asked before
    assert torch.equal(sp.row_draws(rows, seed=0, name="x").counts(big), c3)


def test_hybrid_choice_rule():
    w, s = rand_layer(f=40, j=50, seed=13, ties=False)
    log_term = 1.0  # small enough that both kinds of rows occur with these sensitivities
    m = torch.randint(1, 25, (40, 2), generator=torch.Generator().manual_seed(0))
    mask, values, sampled = sp.sparsify_hybrid(w, s, m, log_term=log_term, c_prime=3.0, seed=1)
    rows = sp.build_rows(w, s)
    mm = m.reshape(-1)
    e_det = sp.eps_det_rows(rows, mm)
    e_rand = eps_rand_rows(mm.double(), rows.total, torch.full((rows.rows,), log_term, dtype=torch.float64))
    rule = (3.0 * e_det > e_rand) & (mm < rows.nnz)
    assert torch.equal(sampled.reshape(-1), rule)
    assert bool(rule.any()) and bool((~rule).any())
    # deterministic rows are exactly the top-m of the row
    det_mask, _ = sp.sparsify_deterministic(w, s, m)
    det_rows = ~rule.reshape(-1, 2)
    pos, neg = w > 0, w < 0
    for c, sign in enumerate((pos, neg)):
        sel = det_rows[:, c][:, None] & sign
        assert torch.equal(mask & sel, det_mask & sel)
    # ties go deterministic
    assert not bool(sp.hybrid_choice(torch.tensor([1.0]), torch.tensor([3.0]), 3.0))


def test_invalid_arguments_name_the_argument():
    w, s = rand_layer()
    with pytest.raises(ValueError, match="sensitivities"):
        sp.build_rows(w, -s)
    with pytest.raises(ValueError, match="sensitivities"):
        sp.build_rows(w, s[:, :3])
    with pytest.raises(ValueError, match="m must"):
        sp.sparsify_deterministic(w, s, torch.ones(3))
    with pytest.raises(ValueError, match="m must"):
        sp.sparsify_deterministic(w, s, -torch.ones(w.shape[0], 2))
    bad = s.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        sp.build_rows(w, bad)


def test_conv_weight_shape_round_trip():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 3, 3, 3, generator=g)
    s = torch.rand(6, 3, 3, 3, generator=g)
    mask, values = sp.sparsify_sampling(w, s, torch.full((6, 2), 4), seed=0)
    assert mask.shape == w.shape and values.shape == w.shape and values.dtype == torch.float32
    rows = sp.build_rows(w, s)
    assert rows.fan_in == 27 and rows.out_units == 6
    np.testing.assert_allclose(rows.total.sum().item(), s.double().sum().item(), rtol=1e-9)


def _row_errors(module, a, w, v):
    """(F, 2) max over points and patches of |zhat - z| / z per row, where z > float32 eps."""
    if (a < 0).any():
        a = torch.cat([a.clamp(min=0), (-a).clamp(min=0)])
    out = []
    for sign in (w > 0, w < 0):
        full, approx = w.abs() * sign, v.abs() * sign
        if isinstance(module, torch.nn.Conv2d):
            def f(k):
                return torch.nn.functional.conv2d(a, k, None, module.stride, module.padding, module.dilation).flatten(2)
        else:
            def f(k):
                return (a.reshape(a.shape[0], -1) @ k.T).unsqueeze(-1)
        z, zh = f(full), f(approx)  # (B, F, P)
        rel = torch.where(z > 1.19e-7, (zh - z).abs() / z.clamp(min=1e-30), torch.zeros(()))
        out.append(rel.amax(dim=(0, 2)))
    return torch.stack(out, 1).double()


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_deterministic_bound_holds_on_s_with_real_sensitivities(kind):
    """eps_det holds exactly on every point of S (max patch reduction): an end-to-end oracle."""
    sensitivity = pytest.importorskip("sipp_core.sensitivity.api")
    from sipp_core.plan.planner import make_plan
    from sipp_core.zoo.layers import capture_inputs, layer_infos, prunable_layers

    torch.manual_seed(0)
    if kind == "mlp":
        model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        shape = (6,)
    else:
        model = torch.nn.Sequential(
            torch.nn.Conv2d(2, 4, 3, padding=1, stride=2), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 3 * 3, 3)
        )
        shape = (2, 5, 5)
    x = torch.randn(30, *shape)  # negative inputs: pseudo-points for the first layer
    sens = sensitivity.compute_sensitivities(model, x)
    infos = layer_infos(model, shape)
    layers = prunable_layers(model)
    weights = {n: m.weight.detach() for n, m in layers.items()}
    with torch.no_grad(), capture_inputs(model, list(layers)) as inputs:
        model(x)
    settings = [dict(epsilon=0.05), dict(epsilon=0.3), dict(keep_ratio=0.3), dict(keep_ratio=0.3, allocation="bound-optimal")]
    for kw in settings:
        for method in ("sipp-det", "sipp-hybrid"):
            plans = make_plan(method, weights, infos, sensitivities=sens, **kw)
            for n, p in plans.items():
                err = _row_errors(layers[n], inputs[n], weights[n], p.values)
                det = p.row_method != 1  # deterministic, whole and empty rows: the bound is exact on S
                assert bool((err[det] <= p.row_bound[det] + 1e-5).all()), (method, kw, n)
                if "epsilon" in kw:
                    assert bool((p.row_bound <= kw["epsilon"] * (1 + 1e-12)).all())


def test_sampling_bound_holds_on_s_with_real_sensitivities():
    """Sampled rows: the guarantee is probabilistic (delta = 1e-16), so on S it holds in practice."""
    sensitivity = pytest.importorskip("sipp_core.sensitivity.api")
    from sipp_core.plan.planner import make_plan
    from sipp_core.zoo.layers import capture_inputs, layer_infos, prunable_layers

    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(200, 60), torch.nn.ReLU(), torch.nn.Linear(60, 10))
    x = torch.rand(40, 200) * (torch.rand(40, 200) > 0.5)
    sens = sensitivity.compute_sensitivities(model, x)
    infos = layer_infos(model, (200,))
    layers = prunable_layers(model)
    weights = {n: m.weight.detach() for n, m in layers.items()}
    with torch.no_grad(), capture_inputs(model, list(layers)) as inputs:
        model(x)
    for kw in (dict(epsilon=10.0), dict(epsilon=30.0), dict(keep_ratio=0.2), dict(keep_ratio=0.05)):
        plans = make_plan("sipp-rand", weights, infos, sensitivities=sens, seed=3, **kw)
        assert any(bool((p.row_method == 1).any()) for p in plans.values())
        for n, p in plans.items():
            err = _row_errors(layers[n], inputs[n], weights[n], p.values)
            assert bool((err <= p.row_bound + 1e-5).all()), (kw, n)
