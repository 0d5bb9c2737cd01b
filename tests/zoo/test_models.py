"""Every zoo model builds and runs on every compatible input shape; mismatches explain themselves."""
import pytest
import torch

from sipp_core.zoo.layers import layer_infos
from sipp_core.zoo.models import MODELS, ModelDataMismatch, build_model, check_compatible, compatible_models

SHAPES = {"mnist-like": (1, 28, 28), "digits": (1, 8, 8), "moons": (2,), "cifar-like": (3, 32, 32)}
HEAVY = {"vgg16_bn", "resnet56"}  # forward is still fast, but keep the suite lean on 2 cores


@pytest.mark.parametrize("shape_name", SHAPES)
@pytest.mark.parametrize("name", MODELS)
def test_builds_and_runs_forward(name, shape_name):
    shape = SHAPES[shape_name]
    if name not in compatible_models(shape):
        with pytest.raises(ModelDataMismatch) as err:
            build_model(name, shape, 10)
        assert "Models that fit this data set" in str(err.value)
        return
    if name in HEAVY and shape_name != "cifar-like":
        pytest.skip("heavy model: checked on its own data shape")
    model = build_model(name, shape, 7, seed=0).eval()
    with torch.no_grad():
        out = model(torch.randn(3, *shape))
    assert out.shape == (3, 7)
    assert layer_infos(model, shape)  # every model has prunable layers


def test_same_seed_same_weights():
    a = build_model("lenet5", (1, 28, 28), 10, seed=3)
    b = build_model("lenet5", (1, 28, 28), 10, seed=3)
    c = build_model("lenet5", (1, 28, 28), 10, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a[0].weight, c[0].weight)


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match="lenet300.*lenet5"):
        check_compatible("alexnet", (1, 28, 28))


def test_unknown_option_is_named():
    with pytest.raises(ValueError, match="depth"):
        build_model("lenet300", (1, 28, 28), 10, depth=3)


def test_tiny_teaching_mlp():
    model = build_model("mlp", (2,), 3, widths=(4,))
    infos = layer_infos(model, (2,))
    assert [(i.out_units, i.fan_in) for i in infos.values()] == [(4, 2), (3, 4)]


def test_lenet300_and_resnet20_layer_counts():
    infos = layer_infos(build_model("lenet300", (1, 28, 28), 10), (1, 28, 28))
    assert [i.weight_shape for i in infos.values()] == [(300, 784), (100, 300), (10, 100)]
    infos = layer_infos(build_model("resnet20", (3, 32, 32), 10), (3, 32, 32))
    assert len(infos) == 20  # 19 convolutions + the classifier
    assert infos["conv1"].patches == 32 * 32 and infos["fc"].patches == 1


def test_capture_inputs_ignores_other_threads():
    import threading

    from sipp_core.zoo.layers import capture_inputs

    model = build_model("lenet300", (1, 28, 28), 10).eval()
    mine, other = torch.ones(2, 1, 28, 28), torch.zeros(5, 1, 28, 28)
    with capture_inputs(model, ["1"]) as inputs:
        t = threading.Thread(target=lambda: model(other))
        t.start(); t.join()
        assert "1" not in inputs  # the other thread's forward is not recorded
        model(mine)
    assert inputs["1"].shape == (2, 784) and torch.all(inputs["1"] == 1)


@pytest.mark.parametrize("conv", [
    dict(padding="same"), dict(padding="valid"), dict(padding=1, padding_mode="reflect"),
    dict(padding=(1, 2), padding_mode="circular", stride=2),
])
def test_unfold_matches_the_layer_for_every_padding(conv):
    from sipp_core.plan.measure import _apply
    from sipp_core.zoo.layers import unfold_input, weight_matrix

    m = torch.nn.Conv2d(3, 4, 3, bias=False, **conv)
    a = torch.randn(2, 3, 9, 9)
    want = m(a).flatten(2)  # (B, F, P)
    got = weight_matrix(m) @ unfold_input(m, a)
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(_apply(m, a, m.weight), want, atol=1e-5)
    infos = layer_infos(torch.nn.Sequential(m), (3, 9, 9))
    assert infos["0"].patches == want.shape[2]


def test_linear_on_sequences_treats_positions_as_patches():
    from sipp_core.plan.measure import _apply
    from sipp_core.zoo.layers import unfold_input

    m = torch.nn.Linear(5, 3, bias=False)
    a = torch.randn(2, 7, 5)
    want = m(a).transpose(1, 2)  # (B, F, P=7)
    assert torch.allclose(m.weight @ unfold_input(m, a), want, atol=1e-6)
    assert torch.allclose(_apply(m, a, m.weight), want, atol=1e-6)


def test_layer_infos_on_a_model_without_prunable_layers():
    assert layer_infos(torch.nn.Sequential(torch.nn.ReLU()), (3,)) == {}
