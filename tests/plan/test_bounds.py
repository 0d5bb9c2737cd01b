"""Row bounds and |S| (sipp_core.plan.bounds, docs/sipp.md §2.5 and §3)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from sipp_core.plan.bounds import (
    check_delta,
    check_epsilon,
    det_m_for_eps,
    draw_sample,
    eps_det,
    eps_rand,
    log_term,
    m_for_eps,
    row_totals,
    sample_size,
    sample_size_terms,
    sorted_rows,
)
from sipp_core.zoo.layers import layer_infos

# --------------------------------------------------------------------------- L_l


def test_log_term_formula_and_layer_info():
    assert log_term(1, 1, 1e-16) == pytest.approx(math.log(16 / 1e-16), rel=1e-15)
    assert log_term(1024, 9, 0.1) == pytest.approx(math.log(8 * 1025 * 9 / 0.1), rel=1e-15)
    conv = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1))
    info = layer_infos(conv, (3, 8, 8))["0"]
    assert log_term(info, delta=1e-3) == pytest.approx(math.log(8 * 65 * 9 / 1e-3), rel=1e-15)


@pytest.mark.parametrize("args", [(0, 1, 0.1), (4, 0, 0.1), (4, 1, 0.0), (4, 1, 1.0), (1.5, 1, 0.1)])
def test_log_term_rejects_bad_arguments(args):
    with pytest.raises(ValueError):
        log_term(*args)


# --------------------------------------------------------------------------- eps_rand, m(eps)


def test_eps_rand_values_and_edge_cases():
    L, T = 40.0, 2.0
    u = 2 * L * T / 10
    assert eps_rand(10, T, L) == pytest.approx((u + math.sqrt(u * u + 6 * u)) / 2, rel=1e-15)
    assert eps_rand(0, T, L) == math.inf
    assert eps_rand(0, 0.0, L) == 0.0 and eps_rand(7, 0.0, L) == 0.0
    m = torch.arange(0, 2000, dtype=torch.float64)
    e = eps_rand(m, torch.full_like(m, T), L)
    assert isinstance(e, torch.Tensor) and e.dtype == torch.float64
    assert bool(torch.all(e[1:] < e[:-1]))  # strictly decreasing in m
    assert isinstance(eps_rand(np.array([1.0, 2.0]), 1.0, L), np.ndarray)
    with pytest.raises(ValueError):
        eps_rand(-1, T, L)


@pytest.mark.parametrize("seed", range(4))
def test_m_for_eps_is_the_exact_inverse(seed):
    gen = np.random.default_rng(seed)
    total = torch.tensor(gen.uniform(0.01, 50, 400))
    lt = torch.tensor(gen.uniform(5, 80, 400))
    eps = float(gen.uniform(0.05, 20))
    m = m_for_eps(eps, total, lt)
    assert bool(torch.all(m >= 1)) and bool(torch.all(m == torch.floor(m)))
    assert bool(torch.all(eps_rand(m, total, lt) <= eps))
    below = m > 1
    assert bool(torch.all(eps_rand(m[below] - 1, total[below], lt[below]) > eps))


def test_m_for_eps_at_the_ceiling_round_off():
    """eps exactly eps_rand(m0): the answer is m0 itself, never m0 + 1 or m0 - 1."""
    total, lt = torch.tensor(3.7, dtype=torch.float64), torch.tensor(41.3, dtype=torch.float64)
    for m0 in [1, 2, 3, 10, 99, 1000, 123457, 10**9]:
        eps = eps_rand(torch.tensor(float(m0), dtype=torch.float64), total, lt)
        assert float(m_for_eps(float(eps), total, lt)) == m0
    assert m_for_eps(0.5, 0.0, 40.0) == 0.0  # no signal: nothing to keep


def test_m_for_eps_rejects_bad_epsilon():
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="epsilon"):
            m_for_eps(bad, 1.0, 10.0)


# --------------------------------------------------------------------------- rows, eps_det


def _brute_eps_det(s, w, m):
    out = np.zeros((w.shape[0], 2))
    for f in range(w.shape[0]):
        for c, member in enumerate((w[f] > 0, w[f] < 0)):
            idx = [j for j in range(w.shape[1]) if member[j]]
            order = sorted(idx, key=lambda j: (-s[f, j], j))
            out[f, c] = sum(s[f, j] for j in order[int(m[f, c]):])
    return out


def test_row_totals():
    w = torch.tensor([[1.0, -2.0, 0.0, 3.0], [-1.0, -1.0, 2.0, 0.0]])
    s = torch.tensor([[0.5, 0.25, 0.9, 0.0], [0.1, 0.2, 0.3, 0.4]])
    total, nnz = row_totals(s, w)
    torch.testing.assert_close(total, torch.tensor([[0.5, 0.25], [0.3, 0.3]], dtype=torch.float64))
    assert nnz.tolist() == [[1, 1], [1, 2]]


def test_eps_det_matches_sorting_by_hand():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(6, 9, generator=gen)
    w[0, :4] = 0.0
    s = torch.rand(6, 9, generator=gen)
    s[1, :5] = 0.5  # ties, broken by index
    s[2] = 0.0
    for m_val in range(0, 11):
        m = torch.full((6, 2), m_val)
        want = _brute_eps_det(s.double().numpy(), w.numpy(), m.numpy())
        np.testing.assert_allclose(eps_det(s, w, m).numpy(), want, rtol=1e-12, atol=1e-15)
    assert eps_det(s, w, 100).abs().max() == 0  # keeping whole rows prunes nothing


def test_sorted_rows_tables_and_masks():
    w = torch.tensor([[1.0, -2.0, 3.0, 4.0, -5.0]])
    s = torch.tensor([[0.2, 0.7, 0.2, 0.5, 0.1]])
    rows = sorted_rows(s, w)
    assert rows.col[0, 0, :3].tolist() == [3, 0, 2]  # 0.5, then the 0.2 tie by index
    assert rows.col[0, 1, :2].tolist() == [1, 4]
    torch.testing.assert_close(rows.total, torch.tensor([[0.9, 0.8]], dtype=torch.float64))
    assert rows.length.tolist() == [[3, 2]] and rows.nnz.tolist() == [[3, 2]]
    torch.testing.assert_close(rows.eps_det(torch.tensor([[1, 1]])), torch.tensor([[0.4, 0.1]], dtype=torch.float64))
    assert rows.keep_mask(torch.tensor([[2, 1]])).tolist() == [[True, True, False, True, False]]


@pytest.mark.parametrize("eps", [1e-9, 0.05, 0.3, 1.0, 50.0])
def test_smallest_m_for_a_deterministic_epsilon(eps):
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(5, 12, generator=gen)
    s = torch.rand(5, 12, generator=gen) ** 3
    m = det_m_for_eps(s, w, eps)
    rows = sorted_rows(s, w)
    assert bool(torch.all(rows.eps_det(m) <= eps))
    positive = m > 0
    assert bool(torch.all(rows.eps_det((m - 1).clamp(min=0))[positive] > eps))


def test_eps_det_validates_its_inputs():
    with pytest.raises(ValueError, match="shaped like"):
        eps_det(torch.ones(2, 3), torch.ones(3, 2), 1)
    with pytest.raises(ValueError, match=">= 0"):
        eps_det(-torch.ones(2, 3), torch.ones(2, 3), 1)


# --------------------------------------------------------------------------- |S|


def _lenet300():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))


def test_sample_size_lenet300_is_152():
    assert sample_size_terms(_lenet300(), (1, 28, 28)) == (410, 300)
    assert sample_size(_lenet300(), (1, 28, 28)) == 152


def test_sample_size_resnet20_is_183():
    from sipp_core.zoo.models import build_model

    model = build_model("resnet20", (3, 32, 32), 10, seed=0)
    eta, eta_max = sample_size_terms(model, (3, 32, 32))
    # 19 convs (option-A shortcuts, no 1x1 convs) + fc: 16*1024 * 7 + 32*256 * 6 + 64*64 * 6 + 10
    assert (eta, eta_max) == (188426, 16384)
    assert sample_size(model, (3, 32, 32)) == 183


def test_sample_size_arguments():
    assert sample_size(_lenet300(), (1, 28, 28), delta=1e-3) == math.ceil(3 * math.log(8 * 410 * 300 / 1e-3))
    with pytest.raises(ValueError, match="delta"):
        sample_size(_lenet300(), (1, 28, 28), delta=2.0)
    with pytest.raises(ValueError, match="no prunable layer"):
        sample_size(nn.Sequential(nn.Flatten()), (1, 2, 2))


def test_draw_sample_is_seeded_distinct_and_nested():
    a = draw_sample(1000, 152, seed=7)
    assert a.dtype == torch.int64 and a.shape == (152,)
    assert torch.equal(a, draw_sample(1000, 152, seed=7))
    assert not torch.equal(a, draw_sample(1000, 152, seed=8))
    assert len(set(a.tolist())) == 152 and int(a.min()) >= 0 and int(a.max()) < 1000
    assert torch.equal(draw_sample(1000, 200, seed=7)[:152], a)  # a larger S extends a smaller one
    assert sorted(draw_sample(5, 5, seed=0).tolist()) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("size", [0, 11, -3, 2.5, True])
def test_draw_sample_rejects_sizes_outside_the_pool(size):
    with pytest.raises(ValueError, match=r"sample_size must be an integer from 1 to 10"):
        draw_sample(10, size, seed=0)


# --------------------------------------------------------------------------- validation helpers


@pytest.mark.parametrize("bad", [0, 1, -0.5, 1.5, math.nan, math.inf, "0.1", None])
def test_check_delta(bad):
    with pytest.raises(ValueError, match=r"delta must be a number with 0 < delta < 1"):
        check_delta(bad)


def test_check_delta_accepts_valid_values():
    assert check_delta(1e-16) == 1e-16 and check_delta(np.float64(0.5)) == 0.5


@pytest.mark.parametrize("bad", [0, -1.0, math.inf, math.nan, "1", None])
def test_check_epsilon(bad):
    with pytest.raises(ValueError, match=r"epsilon must be a finite number > 0"):
        check_epsilon(bad)


def test_check_epsilon_accepts_valid_values():
    assert check_epsilon(0.25) == 0.25 and check_epsilon(3) == 3.0
