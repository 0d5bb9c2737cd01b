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
        assert "choose one of the models that fit this data set" in err.value.fix
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
    with capture_inputs(model, ["fc1"]) as inputs:
        t = threading.Thread(target=lambda: model(other))
        t.start(); t.join()
        assert "fc1" not in inputs  # the other thread's forward is not recorded
        model(mine)
    assert inputs["fc1"].shape == (2, 784) and torch.all(inputs["fc1"] == 1)


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


def test_layers_are_named_by_kind_and_rank():
    """What a class reads on every chart: fc1, conv2, not a position in an nn.Sequential."""
    assert list(layer_infos(build_model("lenet300", (1, 28, 28), 10), (1, 28, 28))) == ["fc1", "fc2", "fc3"]
    lenet5 = build_model("lenet5", (1, 28, 28), 10)
    assert list(lenet5._modules) == ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten",
                                     "fc1", "relu3", "fc2", "relu4", "fc3"]
    assert list(layer_infos(lenet5, (1, 28, 28))) == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    vgg = build_model("vgg11_bn", (3, 32, 32), 10)
    assert [n for n in vgg._modules if n.startswith(("conv", "bn", "fc"))][:3] == ["conv1", "bn1", "conv2"]
    assert list(vgg._modules)[-2:] == ["flatten", "fc1"]


@pytest.mark.parametrize("name, shape", [("lenet300", (1, 28, 28)), ("lenet5", (1, 28, 28)), ("cnn", (1, 8, 8)),
                                         ("mlp", (2,))])
def test_named_layers_keep_the_seeded_weights_and_their_positional_names(name, shape):
    """A seed gives the same tensors as when the zoo numbered its layers; positional_names is the old key of each."""
    from sipp_core.zoo.models import positional_names

    model = build_model(name, shape, 4, seed=3)
    numbered = torch.nn.Sequential(*model.children())  # the same modules, named by position
    old = positional_names(model)
    assert list(old.values()) == list(numbered.state_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(value, numbered.state_dict()[old[key]])
    assert positional_names(build_model("resnet20", (3, 32, 32), 10)) == {}  # already named: nothing to map


def test_a_seed_draws_the_weights_the_numbered_zoo_drew():
    """The layers are created in the same order as when the zoo numbered them, so the shipped checkpoints and
    every seeded figure stay the same: the old LeNet-5, written out, against the named one."""
    from torch import nn

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        old = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                            nn.Linear(84, 10))
    new = build_model("lenet5", (1, 28, 28), 10, seed=5)
    assert [tuple(v.shape) for v in old.state_dict().values()] == [tuple(v.shape) for v in new.state_dict().values()]
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values()))
