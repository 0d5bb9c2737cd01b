"""Tests of the nonsmoothness engine (docs/nonsmoothness.md) against closed forms and slow loops."""
from __future__ import annotations

import json
import math
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sipp_core.smoothness.core import (
    compare,
    find_peaks,
    jacobian_norms,
    make_paths,
    nonsmoothness,
    segment_paths,
    smp,
)

F64 = torch.float64


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: a second intra-op thread only adds waiting (badly so on a loaded 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- helpers: nets with known kinks
def one_hidden(kinks_t, extra_units=8, outputs=3, seed=0):
    """A 2-16-C ReLU net and a path x(t) = (-1 + 2t, 0.3) along which unit i kinks at kinks_t[i].

    Units beyond the listed kinks get random weights (they may kink too); the
    exact kinks and slope jumps of all units come from `exact_kinks`.
    """
    g = torch.Generator().manual_seed(seed)
    h = len(kinks_t) + extra_units
    w = torch.randn(h, 2, generator=g, dtype=F64)
    w[: len(kinks_t), 0] = 1.0 + torch.rand(len(kinks_t), generator=g, dtype=F64)
    b = torch.randn(h, generator=g, dtype=F64)
    xa, xb = torch.tensor([[-1.0, 0.3]], dtype=F64), torch.tensor([[1.0, 0.3]], dtype=F64)
    for i, t in enumerate(kinks_t):  # w_i . x(t) + b_i = 0 at t
        x = xa[0] + t * (xb[0] - xa[0])
        b[i] = -(w[i] @ x)
    net = nn.Sequential(nn.Linear(2, h), nn.ReLU(), nn.Linear(h, outputs)).double()
    with torch.no_grad():
        net[0].weight.copy_(w)
        net[0].bias.copy_(b)
        net[2].weight.copy_(torch.randn(outputs, h, generator=g, dtype=F64))
    return net, xa, xb


def exact_kinks(net, xa, xb):
    """(t of each unit's kink, inside (0, 1) mask, jump per unit summed over outputs) in closed form."""
    w, b, v = net[0].weight.detach(), net[0].bias.detach(), net[2].weight.detach()
    dx = (xb - xa)[0]
    t = -(w @ xa[0] + b) / (w @ dx)
    inside = (t > 0) & (t < 1)
    jump = v.abs().sum(0) * (w @ dx).abs()  # |v_i| |w_i . (x_b - x_a)| summed over outputs
    return t, inside, jump


# ---------------------------------------------------------------- smp() on hand-made signals
@pytest.mark.parametrize("c", [0.5, 0.5 + 0.37 / 100])  # on a grid point, between two
def test_smp_of_abs_kink_is_the_slope_jump(c):
    t = torch.linspace(0, 1, 101, dtype=F64)
    res = smp(3 * (t - c).abs() + 2 * t, step=0.01, path_length=2.0)  # slope -1 -> 5: jump 6 in t
    assert res.value == pytest.approx(6.0 / 2.0, rel=1e-9)
    assert len(res.peaks) == 1 and abs(int(res.peaks[0]) - c * 100) <= 1


def test_smp_matrix_columns_and_smooth_column():
    t = torch.linspace(0, 1, 1024, dtype=torch.float32)
    y = torch.stack([(t - 0.3).abs(), torch.tanh(3 * t), torch.relu(t - 0.77) * 4, 0 * t + 1], 1)
    res = smp(y, step=1 / 1023)
    assert res.value.shape == (4,)
    assert res.value.tolist() == pytest.approx([2.0, 0.0, 4.0, 0.0], abs=1e-4)
    assert [len(p) for p in res.peaks] == [1, 0, 1, 0]


def test_smp_linear_signal_with_rounding_noise_has_no_peaks():
    g = torch.Generator().manual_seed(1)
    t = torch.linspace(0, 1, 2048, dtype=F64)
    y = (5 * t + 1 + 1e-9 * torch.randn(2048, generator=g, dtype=F64)).float()
    res = smp(y, step=1 / 2047)
    assert res.value == 0.0 and len(res.peaks) == 0


def test_smp_validation():
    with pytest.raises(ValueError, match="at least 3"):
        smp([1.0, 2.0], step=1.0)
    with pytest.raises(ValueError, match="step"):
        smp([1.0, 2.0, 3.0], step=0.0)
    with pytest.raises(ValueError, match="N, C"):
        smp(torch.zeros(4, 2, 2), step=1.0)


def test_peaks_are_three_apart_greedy_largest_first():
    d = torch.tensor([[0, 0, 5, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                      [1, 0, 2, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]], dtype=F64)
    pk = find_peaks(d)
    keep = pk.dense()
    assert keep[0].nonzero().flatten().tolist() == [2]  # 3 is 2 samples from 5: suppressed
    assert keep[1].nonzero().flatten().tolist() == [0, 4]  # 3 first, which frees 1
    assert pk.total().tolist() == [5.0, 4.0]  # +-1 windows: the suppressed 3 is lost; 1 + 3


# ---------------------------------------------------------------- exact oracle: one hidden layer
def test_one_hidden_layer_oracle_converges_and_counts_regions():
    net, xa, xb = one_hidden([0.2, 0.5, 0.505, 0.8], extra_units=12, seed=3)
    t, inside, jump = exact_kinks(net, xa, xb)
    exact = float(jump[inside].sum())
    length = float((xb - xa).norm())
    gaps = t[inside].sort().values.diff()
    errors = []
    for n in (129, 1025, 4097):
        rec = nonsmoothness(net, segment_paths(xa, xb, points=n), dtype=F64, jacobian_points=0)
        errors.append(abs(float(rec.smp[0]) * length - exact) / exact)
        assert int(rec.flipped_units[0]) == int(inside.sum())  # a line crosses each hyperplane once
    assert errors[-1] < 1e-9 and errors[0] > errors[-1]  # 0.5 and 0.505 merge at N = 129
    assert gaps.min() > 4 / 4096  # every kink in its own step at N = 4097:
    assert int(rec.region_transitions[0]) == int(inside.sum())
    relu = rec.layer("1")
    assert relu.kind == "relu" and int(relu.flips[0]) == int(inside.sum())
    # per-unit: unit i's output kinks once with jump |w_i . dx|; mean over the 16 units
    dx = (xb - xa)[0]
    per_unit = ((net[0].weight.detach() @ dx).abs() * inside).mean()
    assert float(relu.smp[0]) * length == pytest.approx(float(per_unit), rel=1e-9)
    # propagation: distinct kinks, so the linear rule holds with equality; the ReLU rule is exact
    out = rec.layer("2")
    assert float(out.smp_predicted[0]) == pytest.approx(float(out.smp[0]), rel=1e-6)
    assert float(relu.smp_predicted[0]) == pytest.approx(float(relu.smp[0]), rel=1e-6)
    # every logit peak sits at a kink
    peaks_t = torch.tensor(rec.output_peaks[0], dtype=F64) / (4097 - 1)
    assert all(float((t[inside] - p).abs().min()) < 2 / 4096 for p in peaks_t)


def test_float32_default_is_close_to_exact():
    net, xa, xb = one_hidden([0.25, 0.6], extra_units=6, seed=5)
    t, inside, jump = exact_kinks(net, xa, xb)
    rec = nonsmoothness(net, segment_paths(xa, xb, points=1024), jacobian_points=0)
    assert rec.dtype == "float32"
    length = float((xb - xa).norm())
    assert float(rec.smp[0]) * length == pytest.approx(float(jump[inside].sum()), rel=1e-3)
    assert int(rec.region_transitions[0]) == int(inside.sum())


def test_pruned_copy_without_a_unit_has_no_kink_from_it():
    net, xa, xb = one_hidden([0.3, 0.55, 0.7], extra_units=5, seed=7)
    t, inside, _ = exact_kinks(net, xa, xb)
    pruned = nn.Sequential(*[m for m in __import__("copy").deepcopy(net)])
    with torch.no_grad():  # remove unit 1 (kink at t = 0.55): its row, bias and outgoing column
        pruned[0].weight[1].zero_()
        pruned[0].bias[1] = 0.0
        pruned[2].weight[:, 1] = 0.0
    paths = segment_paths(xa, xb, points=2049)
    before, after = compare(net, pruned, paths, dtype=F64, jacobian_points=0)
    assert int(after.flipped_units[0]) == int(before.flipped_units[0]) - 1
    assert int(after.region_transitions[0]) == int(before.region_transitions[0]) - 1
    assert after.layer("1").live_units == before.layer("1").live_units - 1
    i_kink = 0.55 * 2048
    assert any(abs(p - i_kink) <= 2 for p in before.output_peaks[0])
    assert not any(abs(p - i_kink) <= 2 for p in after.output_peaks[0])
    assert after.paths is before.paths


# ---------------------------------------------------------------- smooth networks
@pytest.mark.parametrize("act", [nn.Tanh, nn.Softplus])
def test_smooth_network_has_no_peaks(act):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 32), act(), nn.Linear(32, 32), act(), nn.Linear(32, 4))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 8, generator=g)
    paths = make_paths(x, torch.arange(40) % 4, count=6, points=1024)
    rec = nonsmoothness(net, paths, jacobian_points=0)
    assert float(rec.smp.max()) < 1e-6
    assert all(len(p) == 0 for p in rec.output_peaks)
    assert int(rec.region_transitions.sum()) == 0
    assert [name for name, _ in rec.unmeasured] == ["1", "3"]  # reported, not silently skipped


# ---------------------------------------------------------------- max pooling
def test_maxpool_argmax_switches_on_constructed_input():
    # one 2x2 window: a = 1 - t, b = t, c = 0.7, d = -1: max is a, then c (t = 0.3), then b (t = 0.7)
    xa = torch.tensor([[[[1.0, 0.0], [0.7, -1.0]]]], dtype=F64)
    xb = torch.tensor([[[[0.0, 1.0], [0.7, -1.0]]]], dtype=F64)
    net = nn.Sequential(nn.MaxPool2d(2), nn.Flatten())
    rec = nonsmoothness(net, segment_paths(xa, xb, points=1024), dtype=F64, jacobian_points=0)
    length = math.sqrt(2.0)
    pool = rec.layer("0")
    assert pool.kind == "maxpool2d"
    assert int(rec.argmax_switches[0]) == 2 and int(rec.region_transitions[0]) == 2
    # slope jumps |(-1) - 0| at 0.3 and |0 - 1| at 0.7
    assert float(rec.smp[0]) * length == pytest.approx(2.0, rel=1e-9)
    assert float(pool.smp[0]) * length == pytest.approx(2.0, rel=1e-9)
    assert float(pool.smp_predicted[0]) * length == pytest.approx(2.0, rel=1e-9)


@pytest.mark.parametrize("functional", [False, True])
def test_maxpool_switches_match_a_slow_count(functional):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 3, padding=1)
            self.pool = nn.MaxPool2d(3, stride=2, padding=1)
            self.fc = nn.Linear(3 * 4 * 4, 2)

        def forward(self, x):
            z = self.conv(x)
            z = F.max_pool2d(z, 3, 2, 1) if functional else self.pool(z)
            return self.fc(z.flatten(1))

    torch.manual_seed(0)
    net = Net().double()
    g = torch.Generator().manual_seed(2)
    xa, xb = torch.randn(2, 2, 8, 8, generator=g, dtype=F64), torch.randn(2, 2, 8, 8, generator=g, dtype=F64)
    paths = segment_paths(xa, xb, points=300)
    rec = nonsmoothness(net, paths, dtype=F64, jacobian_points=0, chunk_points=37)
    name = "model:max_pool2d" if functional else "pool"
    with torch.no_grad():
        for p in range(2):
            seg = paths.segment(p, F64)
            _, idx = F.max_pool2d(net.conv(seg), 3, 2, 1, return_indices=True)
            switches = int((idx[1:] != idx[:-1]).sum())
            assert int(rec.layer(name).flips[p]) == switches
            assert int(rec.argmax_switches[p]) == switches


# ---------------------------------------------------------------- batched sweep vs slow loops
class Block(nn.Module):
    """Residual block with functional ReLUs, as in many ResNet implementations."""

    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        out = F.relu(self.bn(self.conv1(x)))
        return F.relu(self.conv2(out) + x)


class SmallResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.block = Block(4)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 3 * 3, 3)

    def forward(self, x):
        x = self.pool(self.block(self.relu(self.stem(x))))
        return self.fc(x.flatten(1))


def slow_signals(net, seg):
    """Every measured signal of SmallResNet on all points of one path, by a plain forward."""
    with torch.no_grad():
        s = net.stem(seg)
        r0 = torch.relu(s)
        c1 = net.block.conv1(r0)
        pre1 = net.block.bn(c1)
        r1 = torch.relu(pre1)
        c2 = net.block.conv2(r1)
        pre2 = c2 + r0
        r2 = torch.relu(pre2)
        p = net.pool(r2)
        out = net.fc(p.flatten(1))
    return {"stem": s, "relu": r0, "block.conv1": c1, "block:relu": r1, "block.conv2": c2,
            "block:relu#2": r2, "pool": p, "fc": out}, {"block:relu": pre1, "block:relu#2": pre2, "relu": s}


def test_sweep_matches_slow_per_unit_loop_and_covers_functional_relu():
    torch.manual_seed(0)
    net = SmallResNet().double().eval()
    with torch.no_grad():
        net.block.bn.running_mean.uniform_(-0.2, 0.2)
        net.block.bn.running_var.uniform_(0.5, 2.0)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(12, 1, 6, 6, generator=g, dtype=F64)
    paths = make_paths(x, torch.arange(12) % 3, count=3, points=257, seed=1)
    rec = nonsmoothness(net, paths, dtype=F64, jacobian_points=0, chunk_points=50, paths_per_group=2)
    names = [layer.name for layer in rec.layers]
    assert names == ["stem", "relu", "block.conv1", "block:relu", "block.conv2", "block:relu#2", "pool", "fc"]
    assert rec.layer("block:relu").input_from == "(unmeasured)"  # after BatchNorm
    assert rec.layer("block.conv1").input_from == "relu"
    h = paths.step
    for p in range(paths.count):
        sig, pre = slow_signals(net, paths.segment(p, F64))
        length = float(paths.lengths[p])
        flips_total = 0
        for name, y in sig.items():
            layer = rec.layer(name)
            cols = y.reshape(y.shape[0], -1)  # (N, units)
            want = smp(cols, step=h, path_length=length).value.mean()
            if name == "stem":
                want = torch.tensor(0.0, dtype=F64)  # fed by the input: affine in t, S = 0 by construction
            assert float(layer.smp[p]) == pytest.approx(float(want), rel=1e-9, abs=1e-12), name
            traj = (cols[1:] - cols[:-1]).norm(dim=1).sum() / length
            assert float(layer.trajectory[p]) == pytest.approx(float(traj), rel=1e-9), name
            if name in pre:
                on = pre[name].reshape(y.shape[0], -1) > 0
                flips = int((on[1:] != on[:-1]).sum())
                assert int(layer.flips[p]) == flips, name
                flips_total += flips
        assert int(rec.flipped_units[p]) == flips_total
    # propagation (docs/nonsmoothness.md §3): the linear rule bounds Linear/Conv stages; ReLU and max-pool rules predict
    for layer in rec.layers:
        s, pred = layer.smp.mean().item(), layer.smp_predicted.mean().item()
        if layer.kind in ("linear", "conv2d"):
            assert s <= pred * (1 + 1e-9) + 1e-12, layer.name
        else:
            assert s == pytest.approx(pred, rel=0.05), layer.name


def test_results_do_not_depend_on_chunking_or_grouping():
    torch.manual_seed(1)
    net = SmallResNet().eval()
    x = torch.randn(20, 1, 6, 6)
    paths = make_paths(x, torch.arange(20) % 4, count=5, points=200, seed=3)
    a = nonsmoothness(net, paths, jacobian_points=0)
    b = nonsmoothness(net, paths, jacobian_points=0, chunk_points=7, paths_per_group=2)
    assert torch.equal(a.region_transitions, b.region_transitions)
    assert torch.equal(a.flipped_units, b.flipped_units)
    assert torch.allclose(a.smp, b.smp, rtol=1e-5, atol=1e-7)
    for la, lb in zip(a.layers, b.layers):
        assert torch.equal(la.flips, lb.flips)
        assert torch.allclose(la.smp, lb.smp, rtol=1e-5, atol=1e-7)
        assert torch.allclose(la.trajectory, lb.trajectory, rtol=1e-5)


def test_results_do_not_depend_on_row_blocks(monkeypatch):
    import sipp_core.smoothness.peaks as peaks

    torch.manual_seed(2)
    net = SmallResNet().eval()
    paths = make_paths(torch.randn(16, 1, 6, 6), torch.arange(16) % 4, count=3, points=150, seed=2)
    a = nonsmoothness(net, paths, jacobian_points=0)
    monkeypatch.setattr(peaks, "_BLOCK", 300)  # two rows of 148 second differences per block
    b = nonsmoothness(net, paths, jacobian_points=0, threads=1)
    assert torch.equal(a.smp, b.smp) and a.output_peaks == b.output_peaks
    for la, lb in zip(a.layers, b.layers):
        assert torch.equal(la.smp, lb.smp) and torch.equal(la.smp_predicted, lb.smp_predicted), la.name


def test_unit_subsample_is_seeded_and_capped():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 64), nn.ReLU(), nn.Linear(64, 2))
    paths = make_paths(torch.randn(10, 5), torch.arange(10) % 2, count=2, points=64)
    a = nonsmoothness(net, paths, max_units=16, jacobian_points=0)
    b = nonsmoothness(net, paths, max_units=16, jacobian_points=0)
    assert a.layer("0").sampled_units == 16 and a.layer("0").units == 64
    assert torch.equal(a.layer("1").smp, b.layer("1").smp)
    assert int(a.layer("1").flips.sum()) == int(nonsmoothness(net, paths, jacobian_points=0).layer("1").flips.sum())


# ---------------------------------------------------------------- companions
def test_jacobian_frobenius_and_trajectory_of_a_linear_model():
    torch.manual_seed(0)
    lin = nn.Linear(6, 4).double()
    x = torch.randn(9, 6, dtype=F64)
    paths = make_paths(x, torch.arange(9) % 3, count=4, points=32)
    rec = nonsmoothness(lin, paths, dtype=F64, jacobian_points=4)
    w = lin.weight.detach()
    assert torch.allclose(rec.jacobian_norm, torch.full((4,), float(w.norm()), dtype=F64))
    dx = (paths.x_b - paths.x_a).double()
    want = (dx @ w.T).norm(dim=1) / dx.norm(dim=1)
    assert torch.allclose(rec.output_trajectory, want, rtol=1e-9)
    assert float(rec.smp.abs().max()) == 0.0


def test_jacobian_matches_autograd_on_a_relu_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)).double()
    x = torch.randn(3, 5, dtype=F64)
    got = jacobian_norms(net, x, rows_per_pass=2)
    for k in range(3):
        jac = torch.autograd.functional.jacobian(net, x[k])
        assert float(got[k]) == pytest.approx(float(jac.norm()), rel=1e-12)


def test_model_is_not_touched_and_float64_above_4096_points():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2)).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    paths = make_paths(torch.randn(6, 3), None, kind="local", count=2, points=4100)
    seen = []
    rec = nonsmoothness(net, paths, jacobian_points=1, progress=lambda f, m: seen.append(f))
    assert rec.dtype == "float64"
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())
    assert next(net.parameters()).dtype == torch.float32
    assert seen and seen[-1] == 1.0 and all(0 <= f <= 1 for f in seen)
    nonsmoothness(net, paths.with_points(64), threads=2, jacobian_points=0)
    assert torch.get_num_threads() == 1  # restored (the fixture set 1)


# ---------------------------------------------------------------- paths and records
def test_make_paths_kinds_labels_and_seed():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 1, 4, 4, generator=g), torch.randint(0, 3, (60,), generator=g)
    p = make_paths(x, y, count=32, points=100, seed=5)
    q = make_paths(x, y, count=32, points=100, seed=5)
    assert torch.equal(p.x_a, q.x_a) and torch.equal(p.x_b, q.x_b) and p.kinds == q.kinds
    assert {k: p.kinds.count(k) for k in set(p.kinds)} == {"same-class": 11, "different-class": 11, "local": 10}
    same = torch.tensor([k == "same-class" for k in p.kinds])
    diff = torch.tensor([k == "different-class" for k in p.kinds])
    local = ~same & ~diff
    assert torch.equal(p.labels_a[same], p.labels_b[same]) and bool((p.index_a[same] != p.index_b[same]).all())
    assert bool((p.labels_a[diff] != p.labels_b[diff]).all())
    assert torch.allclose(p.lengths[local], torch.full((10,), 2 * p.radius, dtype=F64), rtol=1e-5)
    mid = (p.x_a[local] + p.x_b[local]) / 2
    assert torch.allclose(mid, p.anchor[local], atol=1e-6)
    chunk = p.chunk([0, 3], 10, 20)
    assert chunk.shape == (2, 10, 1, 4, 4)
    assert torch.allclose(chunk[1, 5], p.segment(3)[15])
    assert not torch.equal(make_paths(x, y, count=32, seed=6).x_a, p.x_a)


def test_make_paths_errors():
    x = torch.randn(5, 3)
    with pytest.raises(ValueError, match="y_test"):
        make_paths(x, None)
    with pytest.raises(ValueError, match="kind"):
        make_paths(x, torch.zeros(5), kind="sideways")
    with pytest.raises(ValueError, match="different-class"):
        make_paths(x, torch.zeros(5), kind="different-class")
    with pytest.raises(ValueError, match="same-class"):
        make_paths(x, torch.arange(5), kind="same-class")
    with pytest.raises(ValueError, match="count"):
        make_paths(x, torch.zeros(5), count=0)
    with pytest.raises(TypeError, match="Paths"):
        nonsmoothness(nn.Linear(3, 2), x)
    with pytest.raises(ValueError, match="shape"):
        nonsmoothness(nn.Linear(4, 2), make_paths(x, torch.arange(5) % 2, count=2, points=8))


def test_records_are_plain_for_a_ui():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    pruned = __import__("copy").deepcopy(net)
    with torch.no_grad():
        pruned[0].weight[:3].zero_()
    paths = make_paths(torch.randn(12, 4), torch.arange(12) % 3, count=3, points=64)
    cmp = compare(net, pruned, paths, jacobian_points=2)
    rows = cmp.layer_rows()
    assert [r["model"] for r in rows] == ["original"] * 3 + ["pruned"] * 3
    assert cmp.pruned.layer("0").live_units == 3
    json.dumps(cmp.original.to_dict())
    again = pickle.loads(pickle.dumps(cmp.original))  # records cache (st.cache_data pickles)
    assert torch.equal(again.smp, cmp.original.smp) and again.layer_rows() == cmp.original.layer_rows()
    json.dumps(cmp.summary())
    frame = cmp.original.to_frame()
    assert list(frame["layer"]) == ["0", "1", "2"]
    assert len(cmp.original.to_frame("layer-path")) == 9 and len(cmp.original.path_rows()) == 3
    prop = cmp.original.propagation_rows()
    assert {"block", "smp_in", "smp", "smp_predicted", "rule"} <= set(prop[0])
    assert cmp.original.logits.shape == (3, 64, 3)
    assert int(torch.isnan(cmp.original.jacobian_norm).sum()) == 1
