"""measure_layer_errors with a kept Reference (the original network's side, computed once) gives the numbers it
gives without one, bit for bit; a Reference too large, or made for other points, is not used."""
import pytest
import torch

from sipp_core.plan.measure import measure_layer_errors, reference
from sipp_core.plan.pruning import prune
from sipp_core.zoo.models import build_model


def _same(a, b):
    assert a.keys() == b.keys()
    for n in a:
        for t in ("point_error", "row_error"):
            assert torch.equal(torch.nan_to_num(getattr(a[n], t), -7.0), torch.nan_to_num(getattr(b[n], t), -7.0)), (n, t)
        assert (a[n].max, a[n].mean, a[n].p95, a[n].pairs) == (b[n].max, b[n].mean, b[n].p95, b[n].pairs), n
        fa, fb = a[n].failure_rate, b[n].failure_rate
        assert fa == fb or (fa != fa and fb != fb), n  # equal, or both nan (no bound)


@pytest.mark.parametrize("model_name,shape", [("lenet5", (1, 16, 16)), ("lenet300", (1, 16, 16))])
@pytest.mark.parametrize("method,kw", [("sipp-hybrid", dict(keep_ratio=0.2)), ("sipp-rand", dict(epsilon=0.5)),
                                       ("wt", dict(keep_ratio=0.1))])
def test_a_reference_gives_the_same_numbers(model_name, shape, method, kw):
    torch.manual_seed(0)
    model = build_model(model_name, shape, 4, seed=0).eval()
    x = torch.randn(40, *shape)  # negative inputs: the first layer splits them into pseudo-points
    held = torch.randn(30, *shape)
    r = prune(model, x, method=method, seed=1, **kw)
    for pts in (x, held):
        ref = reference(model, list(r.plans), pts, batch_size=16)  # several batches
        assert ref is not None and ref.nbytes > 0
        _same(measure_layer_errors(model, r.plans, pts, batch_size=16),
              measure_layer_errors(model, r.plans, pts, batch_size=16, ref=ref))


def test_a_reference_above_its_size_limit_is_not_kept_and_one_for_other_points_is_ignored():
    torch.manual_seed(0)
    model = build_model("lenet300", (1, 16, 16), 4, seed=0).eval()
    x, other = torch.randn(20, 1, 16, 16), torch.randn(20, 1, 16, 16)
    r = prune(model, x, method="sipp-det", keep_ratio=0.3)
    assert reference(model, list(r.plans), x, max_bytes=1000) is None
    ref_other = reference(model, list(r.plans), other)
    _same(measure_layer_errors(model, r.plans, x), measure_layer_errors(model, r.plans, x, ref=ref_other))


def test_prepare_keeps_references_and_evaluate_uses_them(tmp_path, monkeypatch):
    from sipp_core.pipeline import evaluate_prune, prepare

    monkeypatch.setenv("SIPP_CACHE_DIR", str(tmp_path))
    p = prepare("mlp", "moons", sample_size=40)
    assert set(p.references) == {"s", "heldout"}
    assert p.references["s"].x is p.s_x and p.references["heldout"].x is p.heldout_x
    rep = evaluate_prune(p, keep_ratio=0.3)
    _same(rep.errors_heldout, measure_layer_errors(p.model, rep.result.plans, p.heldout_x))
    _same(rep.errors_s, measure_layer_errors(p.model, rep.result.plans, p.s_x))
