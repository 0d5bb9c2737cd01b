"""Budget allocation (docs/sipp.md §5 and §8) and make_plan's SiPP modes."""
import heapq
import math

import numpy as np
import pytest
import torch

from sipp_core.plan import allocate as al
from sipp_core.plan import bounds
from sipp_core.plan.planner import METHODS, clear_cache, make_plan, prepared_rows, realised_keep_ratio
from sipp_core.plan.sparsify import eps_det_rows
from sipp_core.zoo.layers import LayerInfo


def build_rows(weight, sens):
    return prepared_rows("test", weight, sens)  # cached: the tests ask for the same rows many times


def make_net(shapes=((300, 784), (100, 300), (10, 100)), seed=0, dead=0.2, all_positive=False, spread=1.0, power=2):
    """Weights and sensitivity-like scores: s_fj = |W_fj| x_j / sum_row(|W| x) * (1 + spread U): rows sum >= 1.

    Larger ``spread`` (row totals T well above 1, as the max over many points gives)
    and ``power`` = 1 (flatter rows) make hybrid choose sampling for many rows.
    """
    g = torch.Generator().manual_seed(seed)
    weights, sens, infos = {}, {}, {}
    for i, (f, j) in enumerate(shapes):
        name = f"fc{i + 1}"
        w = torch.randn(f, j, generator=g) * 0.05
        x = torch.rand(j, generator=g) ** power
        if not all_positive:
            x[torch.rand(j, generator=g) < dead] = 0.0  # inputs never active on S: s = 0
        contrib = w.abs() * x
        s = torch.zeros(f, j)
        for sign in (w > 0, w < 0):
            part = contrib * sign
            tot = part.sum(1, keepdim=True)
            s = s + torch.where(tot > 0, part / tot.clamp_min(1e-30), torch.zeros(())) * (1 + spread * torch.rand(f, 1, generator=g))
        weights[name], sens[name] = w, s
        infos[name] = LayerInfo(name, "linear", (f, j), f, j, 1, 1)
    return weights, sens, infos


@pytest.fixture(scope="module")
def lenet():
    return make_net()


@pytest.fixture(scope="module")
def lenet_flat():
    """Flatter rows: with delta = 0.1 hybrid samples many rows at every ratio tested."""
    return make_net(power=1)


def flat_rows(weights, sens, infos, delta=1e-16):
    rows = {n: build_rows(weights[n], sens[n]) for n in weights}
    t = torch.cat([r.total for r in rows.values()])
    z = torch.cat([r.nnz for r in rows.values()])
    lt = torch.cat([torch.full((r.rows,), al.layer_log_term(infos[n].patches, infos[n].kernel_size, delta), dtype=torch.float64) for n, r in rows.items()])
    w = torch.cat([torch.full((r.rows,), 1.0 / r.out_units, dtype=torch.float64) for r in rows.values()])
    return rows, t, z, lt, w


# ------------------------------------------------------------------ the solution


def test_eps_for_gain_solves_the_cubic():
    c = np.logspace(-12, 12, 400)
    e = al.eps_for_gain(c)
    np.testing.assert_allclose(e**3 / (e + 3), c, rtol=1e-10)


def test_marginal_gain_is_the_derivative_of_the_objective():
    t, lt, w = np.array([1.3, 4.0]), np.array([40.0, 40.0]), np.array([0.01, 0.1])
    for m in (1.0, 7.5, 300.0):
        h = 1e-5 * m
        num = -w * (al._eps_rand_np(np.full(2, m + h), 2 * lt * t) - al._eps_rand_np(np.full(2, m - h), 2 * lt * t)) / (2 * h)
        np.testing.assert_allclose(al.marginal_gain(np.full(2, m), t, lt, w), num, rtol=1e-6)


def test_allocator_eps_rand_agrees_with_bounds():
    m, t, lt = torch.tensor([1.0, 3.0, 50.0]), torch.tensor([1.0, 2.5, 7.0], dtype=torch.float64), torch.tensor([38.0, 38.0, 45.0], dtype=torch.float64)
    want = torch.as_tensor(bounds.eps_rand(m.double(), t, lt), dtype=torch.float64)
    np.testing.assert_allclose(al._eps_rand_np(m.numpy().astype(float), 2 * (lt * t).numpy()), want.numpy(), rtol=1e-12)
    np.testing.assert_allclose(bounds.eps_rand_rows(m, t, lt).numpy(), want.numpy(), rtol=1e-12)


def test_continuous_allocation_meets_budget_and_kkt(lenet):
    _, t, z, lt, w = flat_rows(*lenet)
    for budget in (500, 5_000, 60_000):
        m, lam = al.continuous_allocation(t, z, lt, w, budget)
        assert m.sum() == pytest.approx(budget, rel=1e-9)
        gain = al.marginal_gain(np.maximum(m, 1e-300), t.numpy(), lt.numpy(), w.numpy())
        active = (t.numpy() > 0) & (z.numpy() > 0)
        inner = active & (m < z.numpy() - 1e-9)
        assert inner.any()
        np.testing.assert_allclose(gain[inner], lam, rtol=1e-6)  # equal marginal gains across unclipped rows
        full = active & ~inner
        assert bool((gain[full] >= lam * (1 - 1e-9)).all())  # clipped rows would gain more than lambda


def test_rounding_never_exceeds_budget_and_fills_it(lenet):
    _, t, z, lt, w = flat_rows(*lenet)
    for budget in (137, 2_661, 26_611, 133_057, int(z.sum()) + 10):
        m = al.bound_optimal_allocation(t, z, lt, w, budget)
        assert m.dtype == np.int64 and (m >= 0).all() and (m <= z.numpy()).all()
        assert m.sum() == min(budget, int(z.sum()))


def _greedy_from_zero(t, z, lt, w, budget):
    """Exact for separable convex objectives: add one weight at a time where the objective drops most."""
    a = 2 * lt * t
    m = np.zeros(len(t), dtype=np.int64)
    heap = [(-math.inf, i) for i in range(len(t)) if t[i] > 0 and z[i] > 0]
    heapq.heapify(heap)
    for _ in range(budget):
        if not heap:
            break
        _, i = heapq.heappop(heap)
        m[i] += 1
        if m[i] < z[i]:
            drop = w[i] * (al._eps_rand_np(np.array([m[i] * 1.0]), a[i]) - al._eps_rand_np(np.array([m[i] + 1.0]), a[i]))[0]
            heapq.heappush(heap, (-drop, i))
    return m


def test_allocation_is_optimal_against_brute_force_on_tiny_instances():
    rng = np.random.default_rng(0)
    for trial in range(6):
        r = 5
        t = rng.uniform(1.0, 3.0, r)
        z = rng.integers(1, 6, r)
        lt = np.full(r, 30.0)
        w = rng.choice([1 / 3, 1 / 7], r)
        for budget in range(r, int(z.sum()) + 1):
            m = al.bound_optimal_allocation(t, z, lt, w, budget)
            # brute force over every feasible integer vector
            grids = np.stack(np.meshgrid(*[np.arange(k + 1) for k in z], indexing="ij"), -1).reshape(-1, r)
            grids = grids[grids.sum(1) <= budget]
            obj = (w * al._eps_rand_np(grids.astype(float), 2 * lt * t)).sum(1)
            assert al.allocation_objective(m, t, z, lt, w) == pytest.approx(obj.min(), rel=1e-12)


def test_allocation_matches_greedy_from_zero():
    _, t, z, lt, w = flat_rows(*make_net(((40, 30), (12, 40)), seed=2))
    tn, zn, ln, wn = t.numpy(), z.numpy(), lt.numpy(), w.numpy()
    for budget in (100, 300, 700):
        m = al.bound_optimal_allocation(tn, zn, ln, wn, budget)
        ref = _greedy_from_zero(tn, zn, ln, wn, budget)
        assert al.allocation_objective(m, tn, zn, ln, wn) == pytest.approx(al.allocation_objective(ref, tn, zn, ln, wn), rel=1e-12)


def test_global_topk_ties_by_position_and_positive_only():
    a = torch.tensor([3.0, 1.0, 2.0, 2.0])
    b = torch.tensor([[2.0, 0.0], [5.0, 0.0]])
    ma, mb = al.global_topk([a, b], 4)
    assert ma.tolist() == [True, False, True, True] and mb.tolist() == [[False, False], [True, False]]
    ma, mb = al.global_topk([a, b], 7, positive_only=True)
    assert int(ma.sum() + mb.sum()) == 6  # the two zeros are never kept
    assert al.largest_remainder([10, 7, 3], 0.5, 10) == [5, 4, 1]
    assert sum(al.largest_remainder([784, 300, 10], 0.37, round(0.37 * 1094))) == round(0.37 * 1094)


def test_search_budget_finds_tolerance_on_noisy_monotone_function():
    rng = np.random.default_rng(0)
    noise = rng.integers(-30, 30, 100_000)
    calls = []

    def evaluate(nominal):
        calls.append(nominal)
        return int(0.93 * nominal) + int(noise[nominal]), nominal

    nominal, realised, payload = al.search_budget(evaluate, 20_000, upper=99_999)
    assert abs(realised - 20_000) <= 100 and payload == nominal and len(calls) <= 10


# ------------------------------------------------------------- keep-ratio mode


@pytest.mark.parametrize("method", ["sipp-rand", "sipp-hybrid"])
@pytest.mark.parametrize("kappa", [0.5, 0.1, 0.05, 0.02])
def test_realised_ratio_within_half_percent(lenet, lenet_flat, method, kappa):
    weights, sens, infos = lenet if method == "sipp-rand" else lenet_flat
    delta = 1e-16 if method == "sipp-rand" else 0.1
    plans = make_plan(method, weights, infos, keep_ratio=kappa, sensitivities=sens, seed=0, delta=delta)
    assert abs(realised_keep_ratio(plans) - kappa) <= 0.005 * kappa
    codes = torch.cat([p.row_method.reshape(-1) for p in plans.values()])
    assert bool((codes == 1).any())
    if method == "sipp-rand":
        assert not bool((codes == 0).any())
    for p in plans.values():
        assert int(p.row_kept.sum()) == p.kept
        assert bool((p.row_bound >= 0).all())


def test_deterministic_global_is_top_b_of_sensitivity(lenet):
    weights, sens, infos = lenet
    total = sum(w.numel() for w in weights.values())
    for kappa in (0.3, 0.05):
        plans = make_plan("sipp-det", weights, infos, keep_ratio=kappa, sensitivities=sens)
        assert realised_keep_ratio(plans) <= kappa + 1e-12
        kept = torch.cat([sens[n][p.mask] for n, p in plans.items()])
        pruned = torch.cat([sens[n][~p.mask & (weights[n] != 0)] for n, p in plans.items()])
        assert float(kept.min()) >= float(pruned.max())
        for n, p in plans.items():
            assert torch.equal(p.values[p.mask], weights[n][p.mask])
        assert sum(p.kept for p in plans.values()) == min(round(kappa * total), int(sum((s > 0).sum() for s in sens.values())))
    # no zero-sensitivity ties: exactly kappa
    w2, s2, i2 = make_net(((50, 60), (10, 50)), seed=5, all_positive=True)
    tot2 = sum(w.numel() for w in w2.values())
    plans = make_plan("sipp-det", w2, i2, keep_ratio=0.2, sensitivities=s2)
    assert sum(p.kept for p in plans.values()) == round(0.2 * tot2)


def test_deterministic_bound_optimal_spends_exactly_b_and_differs_from_global(lenet):
    weights, sens, infos = lenet
    total = sum(w.numel() for w in weights.values())
    glob = make_plan("sipp-det", weights, infos, keep_ratio=0.05, sensitivities=sens)
    opt = make_plan("sipp-det", weights, infos, keep_ratio=0.05, sensitivities=sens, allocation="bound-optimal")
    assert sum(p.kept for p in opt.values()) == round(0.05 * total)
    dens_g = [p.kept / p.total for p in glob.values()]
    dens_o = [p.kept / p.total for p in opt.values()]
    assert dens_g != dens_o
    # each row keeps its top-m and reports eps_det(m)
    for n, p in opt.items():
        rows = build_rows(weights[n], sens[n])
        m = p.row_budget.reshape(-1)
        det = p.row_method.reshape(-1) == 0
        np.testing.assert_allclose(p.row_bound.reshape(-1)[det], eps_det_rows(rows, m)[det], rtol=1e-12)


def test_plans_are_reproducible_and_seeded(lenet_flat):
    weights, sens, infos = lenet_flat
    a = make_plan("sipp-hybrid", weights, infos, keep_ratio=0.1, sensitivities=sens, seed=3, delta=0.1)
    clear_cache()  # cold and warm (cached rows) plans agree too
    b = make_plan("sipp-hybrid", weights, infos, keep_ratio=0.1, sensitivities=sens, seed=3, delta=0.1)
    c = make_plan("sipp-hybrid", weights, infos, keep_ratio=0.1, sensitivities=sens, seed=4, delta=0.1)
    for n in a:
        assert torch.equal(a[n].mask, b[n].mask) and torch.equal(a[n].values, b[n].values)
    assert any(not torch.equal(a[n].values, c[n].values) for n in a)


def test_layer_plan_records_are_consistent(lenet):
    weights, sens, infos = lenet
    for method in ("sipp-hybrid", "sipp-rand", "sipp-det"):
        plans = make_plan(method, weights, infos, keep_ratio=0.05, sensitivities=sens)
        for n, p in plans.items():
            f = infos[n].out_units
            assert p.mask.shape == weights[n].shape and p.mask.dtype == torch.bool
            assert p.values.dtype == torch.float32 and not bool(p.values[~p.mask].any())
            assert p.row_kept.shape == (f, 2) and p.row_kept.dtype == torch.int64
            assert p.row_budget.shape == (f, 2) and p.row_bound.shape == (f, 2) and p.row_bound.dtype == torch.float64
            assert p.row_method.shape == (f, 2) and p.row_method.dtype == torch.int8
            assert p.kept == int(p.mask.sum()) == int(p.row_kept.sum()) and p.total == weights[n].numel()
            whole = p.row_method == 2
            assert bool((p.row_bound[whole] == 0).all())
            empty = p.row_method == 3
            assert bool((p.row_kept[empty] == 0).all())
            sig = build_rows(weights[n], sens[n]).total.reshape(f, 2) > 0
            assert p.bound_max == pytest.approx(float(p.row_bound[sig].max()))
            assert p.bound_mean == pytest.approx(float(p.row_bound[sig].mean()))
            if method == "sipp-hybrid":
                rows = build_rows(weights[n], sens[n])
                det = p.row_method.reshape(-1) == 0
                np.testing.assert_allclose(p.row_bound.reshape(-1)[det], 3.0 * eps_det_rows(rows, p.row_budget.reshape(-1))[det], rtol=1e-12)


# ------------------------------------------------------------------ epsilon mode


def test_epsilon_mode_deterministic_rows_meet_eps_minimally(lenet):
    weights, sens, infos = lenet
    for eps in (0.2, 1.0):
        plans = make_plan("sipp-det", weights, infos, epsilon=eps, sensitivities=sens)
        for n, p in plans.items():
            rows = build_rows(weights[n], sens[n])
            m = p.row_budget.reshape(-1)
            assert bool((eps_det_rows(rows, m) <= eps).all())
            assert bool(((m == 0) | (eps_det_rows(rows, m - 1) > eps)).all())
            assert bool((p.row_bound <= eps).all())


def test_epsilon_mode_sampling_uses_m_of_eps_capped(lenet):
    weights, sens, infos = lenet
    eps, delta = 2.0, 1e-6
    plans = make_plan("sipp-rand", weights, infos, epsilon=eps, delta=delta, sensitivities=sens)
    for n, p in plans.items():
        rows = build_rows(weights[n], sens[n])
        lt = bounds.log_term(infos[n].patches, infos[n].kernel_size, delta)
        want = torch.as_tensor(bounds.m_for_eps(eps, rows.total, torch.full_like(rows.total, lt))).to(torch.int64)
        want = torch.where(rows.total > 0, torch.minimum(want, rows.nnz), torch.zeros_like(want))
        assert torch.equal(p.row_budget.reshape(-1), want)
        assert bool((p.row_bound <= eps * (1 + 1e-12)).all())


def test_epsilon_mode_hybrid_takes_the_smaller_m(lenet):
    weights, sens, infos = lenet
    eps = 3.0
    plans = make_plan("sipp-hybrid", weights, infos, epsilon=eps, sensitivities=sens)
    for n, p in plans.items():
        rows = build_rows(weights[n], sens[n])
        lt = bounds.log_term(1, 1, 1e-16)
        m_rand = torch.minimum(torch.as_tensor(bounds.m_for_eps(eps, rows.total, torch.full_like(rows.total, lt))).to(torch.int64), rows.nnz)
        m_det = (rows.suffix[:, :-1] > eps / 3.0).sum(1)
        m_rand = torch.where(rows.total > 0, m_rand, torch.zeros_like(m_rand))
        assert torch.equal(p.row_budget.reshape(-1), torch.minimum(m_rand, m_det))
        assert bool((p.row_method.reshape(-1)[m_rand < m_det] == 1).all())
        assert bool((p.row_bound <= eps * (1 + 1e-12)).all())


@pytest.mark.parametrize("method", ["sipp-det", "sipp-rand", "sipp-hybrid"])
def test_keep_ratio_decreases_as_eps_grows(lenet, method):
    weights, sens, infos = lenet
    ratios, planned = [], []
    for eps in (0.3, 1.0, 3.0, 10.0):
        plans = make_plan(method, weights, infos, epsilon=eps, sensitivities=sens)
        ratios.append(realised_keep_ratio(plans))
        planned.append(sum(int(p.row_budget.sum()) for p in plans.values()))
    assert ratios == sorted(ratios, reverse=True)
    assert planned == sorted(planned, reverse=True)


def test_delta_enters_the_log_term_in_both_modes(lenet):
    weights, sens, infos = lenet
    loose = make_plan("sipp-rand", weights, infos, epsilon=1.0, delta=0.1, sensitivities=sens)
    tight = make_plan("sipp-rand", weights, infos, epsilon=1.0, delta=1e-30, sensitivities=sens)
    assert sum(p.kept for p in tight.values()) > sum(p.kept for p in loose.values())
    loose = make_plan("sipp-rand", weights, infos, keep_ratio=0.1, delta=0.1, sensitivities=sens)
    tight = make_plan("sipp-rand", weights, infos, keep_ratio=0.1, delta=1e-30, sensitivities=sens)
    assert tight["fc1"].bound_max > loose["fc1"].bound_max


# ----------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="magic", keep_ratio=0.1), "method"),
        (dict(keep_ratio=0.0), "keep_ratio"),
        (dict(keep_ratio=1.5), "keep_ratio"),
        (dict(keep_ratio=float("nan")), "keep_ratio"),
        (dict(keep_ratio=True), "keep_ratio"),
        (dict(), "keep_ratio"),
        (dict(keep_ratio=0.1, epsilon=0.5), "keep_ratio"),
        (dict(epsilon=-1.0), "eps"),
        (dict(method="wt", epsilon=0.5), "epsilon"),
        (dict(keep_ratio=0.1, delta=0.0), "delta"),
        (dict(keep_ratio=0.1, delta=1.5), "delta"),
        (dict(keep_ratio=0.1, seed=-1), "seed"),
        (dict(keep_ratio=0.1, seed=1.5), "seed"),
        (dict(keep_ratio=0.1, allocation="best"), "allocation"),
        (dict(keep_ratio=0.1, c_prime=0.5), "c_prime"),
        (dict(keep_ratio=0.1, sensitivities=None), "sensitivities"),
        (dict(method="snip", keep_ratio=0.1), "snip_scores"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs, match):
    weights, sens, infos = make_net(((6, 8), (3, 6)))
    args = dict(method="sipp-hybrid", sensitivities=sens)
    args.update(kwargs)
    method = args.pop("method")
    with pytest.raises(ValueError, match=match):
        make_plan(method, weights, infos, **args)


def test_invalid_layers_name_the_argument():
    weights, sens, infos = make_net(((6, 8), (3, 6)))
    with pytest.raises(ValueError, match="sensitivities"):
        make_plan("sipp-det", weights, infos, keep_ratio=0.5, sensitivities={"fc1": sens["fc1"]})
    with pytest.raises(ValueError, match="sensitivities"):
        make_plan("sipp-det", weights, infos, keep_ratio=0.5, sensitivities={"fc1": sens["fc1"], "fc2": -sens["fc2"]})
    with pytest.raises(ValueError, match="weights"):
        make_plan("wt", {"fc1": weights["fc1"][:, :3]}, infos, keep_ratio=0.5)
    with pytest.raises(ValueError, match="infos"):
        make_plan("wt", {"other": weights["fc1"]}, infos, keep_ratio=0.5)
    assert set(METHODS) == {"sipp-hybrid", "sipp-det", "sipp-rand", "wt", "layerwise", "snip", "uniform", "random"}


# ------------------------------------------------------------------- edge cases


def _tiny_conv_net(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 5 * 5, 3))
    from sipp_core.zoo.layers import layer_infos, prunable_layers

    infos = layer_infos(model, (2, 5, 5))
    weights = {n: m.weight.detach() for n, m in prunable_layers(model).items()}
    g = torch.Generator().manual_seed(seed)
    sens = {n: torch.rand(w.shape, generator=g) * (torch.rand(w.shape, generator=g) > 0.2) for n, w in weights.items()}
    sens["0"][0] = 0.0  # a unit without signal
    return weights, sens, infos


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kappa", [1.0, 0.3, 0.01])
def test_every_method_on_a_tiny_conv_net(method, kappa):
    weights, sens, infos = _tiny_conv_net()
    assert infos["0"].patches == 25 and infos["0"].kernel_size == 9
    snip = {n: torch.rand(w.shape) for n, w in weights.items()}
    plans = make_plan(method, weights, infos, keep_ratio=kappa, sensitivities=sens, snip_scores=snip, seed=1)
    total = sum(w.numel() for w in weights.values())
    kept = sum(p.kept for p in plans.values())
    positive = int(sum(((s > 0) & (weights[n] != 0)).sum() for n, s in sens.items()))
    for n, p in plans.items():
        assert p.mask.shape == weights[n].shape and p.values.shape == weights[n].shape
        assert not bool(p.values[~p.mask].any())
        if method.startswith("sipp"):
            assert not bool((p.mask & (sens[n] == 0)).any())  # docs/sipp.md §8.7: s = 0 never kept
            assert bool((p.row_bound >= 0).all()) and math.isfinite(p.bound_max)
    if kappa == 1.0:
        assert kept == (positive if method.startswith("sipp") else total)
    else:
        assert kept <= max(1, round(kappa * total) * 1.5) or method == "uniform"


def test_conv_layer_log_term_uses_patches_and_kernel():
    weights, sens, infos = _tiny_conv_net()
    plans = make_plan("sipp-rand", weights, infos, epsilon=2.0, delta=1e-3, sensitivities=sens)
    rows = build_rows(weights["0"], sens["0"])
    lt = bounds.log_term(25, 9, 1e-3)
    assert lt == pytest.approx(math.log(8 * 26 * 9 / 1e-3))
    want = torch.minimum(torch.as_tensor(bounds.m_for_eps(2.0, rows.total, torch.full_like(rows.total, lt))).to(torch.int64), rows.nnz)
    want = torch.where(rows.total > 0, want, torch.zeros_like(want))
    assert torch.equal(plans["0"].row_budget.reshape(-1), want)
    assert bool((plans["0"].row_method[0] == 3).all()) and bool((plans["0"].row_bound[0] == 0).all())


def test_epsilon_extremes():
    weights, sens, infos = _tiny_conv_net()
    positive = int(sum(((s > 0) & (weights[n] != 0)).sum() for n, s in sens.items()))
    for method in ("sipp-det", "sipp-rand", "sipp-hybrid"):
        tiny = make_plan(method, weights, infos, epsilon=1e-9, sensitivities=sens)
        assert sum(p.kept for p in tiny.values()) == positive  # everything with signal stays
        huge = make_plan(method, weights, infos, epsilon=1e9, sensitivities=sens)
        assert sum(p.kept for p in huge.values()) <= sum(int((p.row_budget > 0).sum()) for p in huge.values())
