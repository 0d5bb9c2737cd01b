"""sparse_speed: CSR products equal dense ones; record structure; file sizes measured. Never asserts on timings."""
import math

import pytest
import torch

from sipp_core.plan.sparse_speed import EXPLANATION, csr_matmul, file_sizes, measure, to_csr
from sipp_core.zoo.models import build_model


def _masked(model, keep=0.1, seed=0):
    gen = torch.Generator().manual_seed(seed)
    masks = {}
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
                mask = torch.rand(m.weight.shape, generator=gen) < keep
                m.weight.mul_(mask)
                masks[name] = mask
    return model, masks


def test_csr_matmul_equals_dense():
    torch.manual_seed(0)
    w = torch.randn(30, 50) * (torch.rand(30, 50) < 0.2)
    x = torch.randn(7, 50)
    assert torch.allclose(csr_matmul(to_csr(w), x), x @ w.t(), atol=1e-5)


def test_measure_structure_and_correctness():
    model, masks = _masked(build_model("lenet5", (1, 16, 16), 4, seed=0))
    rec = measure(model, masks, batch_sizes=(1, 8), repeats=2, warmup=0)
    names = [n for n in masks]
    assert {(l.name, l.batch_size) for l in rec.layers} == {(n, b) for n in names for b in (1, 8)}
    for l in rec.layers:
        assert l.kept == int(masks[l.name].sum()) and l.total == masks[l.name].numel()
        if l.kind == "linear":
            assert l.dense_ms > 0 and l.csr_ms > 0 and l.max_abs_diff < 1e-4
        else:
            assert math.isnan(l.dense_ms) and "not timed" in l.note
    df = rec.to_frame()
    assert len(df) == len(rec.layers) and {"dense_ms", "csr_ms", "speedup", "density"} <= set(df.columns)
    d = rec.to_dict()
    assert d["explanation"] == EXPLANATION and len(d["totals"]) == 2 and d["totals"][0]["layers"] == 3
    assert set(rec.files) == {"dense", "dense_zip", "csr_torch", "csr_npz"}
    assert rec.files["csr_npz"] < rec.files["dense"]  # 10% kept: the compressed sparse file is smaller
    assert list(rec.files_frame()["format"]) == ["dense", "dense_zip", "csr_torch", "csr_npz"]


def test_masks_inferred_from_zeros_and_prune_result_like():
    model, masks = _masked(build_model("mlp", (20,), 3, widths=(16,), seed=0), keep=0.3)
    before = torch.get_num_threads()
    rec = measure(model, batch_sizes=(2,), repeats=1, warmup=0, threads=1)
    assert rec.threads == 1 and torch.get_num_threads() == before  # restored
    assert {l.name: l.kept for l in rec.layers} == {n: int(m.sum()) for n, m in masks.items()}

    class Result:  # duck-typed PruneResult
        pass

    r = Result()
    r.model, r.masks = model, masks
    assert len(measure(r, batch_sizes=(1,), repeats=1, warmup=0).layers) == 2


def test_file_sizes_zero_pruned_entries():
    model, masks = _masked(build_model("mlp", (20,), 3, widths=(16,), seed=0), keep=0.5)
    with torch.no_grad():
        model[1].weight.add_(1.0)  # weights under the mask are no longer zero: file_sizes must mask them
    sizes = file_sizes(model, masks)
    assert all(v > 0 for v in sizes.values())


def test_bad_inputs():
    model, masks = _masked(build_model("mlp", (20,), 3, widths=(16,), seed=0))
    with pytest.raises(ValueError, match="batch_sizes"):
        measure(model, masks, batch_sizes=(0,))
    with pytest.raises(ValueError, match="not have"):
        measure(model, {"nope": torch.ones(2, 2, dtype=torch.bool)})
    with pytest.raises(ValueError, match="shaped"):
        measure(model, {"fc1": torch.ones(2, 2, dtype=torch.bool)})
    with pytest.raises(ValueError, match="threads"):
        measure(model, masks, threads=0)
    with pytest.raises(TypeError):
        measure(object())


def test_measure_a_prune_result():
    pytest.importorskip("sipp_core.sensitivity.api")
    from sipp_core.plan.pruning import prune

    model = build_model("lenet300", (1, 12, 12), 4, seed=0).eval()
    result = prune(model, torch.randn(16, 1, 12, 12), method="wt", keep_ratio=0.05)
    rec = measure(result, batch_sizes=(1, 4), repeats=2, warmup=1)
    assert {l.name for l in rec.layers} == set(result.masks)
    assert sum(l.kept for l in rec.layers if l.batch_size == 1) == result.kept
    assert all(l.max_abs_diff < 1e-4 for l in rec.layers)
    assert rec.files["csr_npz"] < rec.files["dense"] / 5  # 5% kept
