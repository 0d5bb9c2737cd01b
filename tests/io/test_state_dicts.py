"""State_dicts of any architecture the zoo can express: widths from shapes, names from common layouts."""
from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from sipp_core.errors import UploadError
from sipp_core.io.byo import AUTO, describe_model, load_npz_upload, load_state_dict_upload
from sipp_core.io.checkpoints import TrainedModel
from sipp_core.io.data import load_dataset
from sipp_core.pipeline import evaluate_prune, prepare_trained
from sipp_core.plan.pruning import prune
from sipp_core.sensitivity.api import compute_sensitivities
from sipp_core.structured.filters import prune_filters
from sipp_core.zoo.layers import dense_layers, layer_infos
from sipp_core.zoo.models import build_model

DIGITS = SimpleNamespace(name="digits", input_shape=(64,), num_classes=10,
                         x_test=torch.randn(8, 64), y_test=torch.arange(8) % 10)
IMAGES = SimpleNamespace(name="rgb", input_shape=(3, 8, 8), num_classes=5,
                         x_test=torch.randn(8, 3, 8, 8), y_test=torch.arange(8) % 5)


def _saved(state) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


class ClassMLP(nn.Module):
    """A user's own MLP class: fc1/fc2/fc3 instead of Sequential indices."""

    def __init__(self, widths=(64, 32)):
        super().__init__()
        self.fc1 = nn.Linear(64, widths[0])
        self.fc2 = nn.Linear(widths[0], widths[1])
        self.fc3 = nn.Linear(widths[1], 10)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x.flatten(1))))))


class ClassCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 12, 3, padding=1)
        self.head = nn.Linear(12 * 2 * 2, 5)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.head(x.flatten(1))


def _renamed(state, name=lambda i: f"block{i}"):
    """The same tensors in the same order under other layer names."""
    out, paths = {}, {}
    for k, v in state.items():
        path, _, leaf = k.rpartition(".")
        paths.setdefault(path, name(len(paths)))
        out[f"{paths[path]}.{leaf}"] = v
    return out


def _same_outputs(own: nn.Module, loaded: nn.Module, x) -> None:
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), own.eval()(x), rtol=0, atol=0)


CASES = {
    "mlp 64-32 as nn.Sequential": ("mlp", DIGITS, lambda: build_model("mlp", (64,), 10, seed=0, widths=(64, 32))),
    "mlp 64-32 as a class (fc1/fc2/fc3)": ("mlp", DIGITS, lambda: ClassMLP()),
    "mlp 128-64-16, three hidden layers": ("mlp", DIGITS, lambda: build_model("mlp", (64,), 10, seed=1,
                                                                              widths=(128, 64, 16))),
    "cnn 8-12 as a class (conv1/conv2/head)": ("cnn", IMAGES, lambda: ClassCNN()),
    "lenet5 under other layer names": ("lenet5", SimpleNamespace(name="m", input_shape=(1, 28, 28), num_classes=10,
                                                                 x_test=torch.randn(4, 1, 28, 28),
                                                                 y_test=torch.arange(4)),
                                       lambda: build_model("lenet5", (1, 28, 28), 10, seed=0)),
    "resnet20 under other layer names": ("resnet20", IMAGES, lambda: build_model("resnet20", (3, 8, 8), 5, seed=0)),
    "vgg11_bn as features.N / classifier.N": ("vgg11_bn", SimpleNamespace(
        name="c", input_shape=(3, 32, 32), num_classes=10, x_test=torch.randn(4, 3, 32, 32), y_test=torch.arange(4)),
        lambda: build_model("vgg11_bn", (3, 32, 32), 10, seed=0)),
}
WRAPS = {"as saved": lambda s: s, "module. prefix": lambda s: {f"module.{k}": v for k, v in s.items()},
         "model. prefix": lambda s: {f"model.{k}": v for k, v in s.items()}}


@pytest.mark.parametrize("case", list(CASES))
def test_layouts_are_accepted_and_load_exactly(case):
    arch, rec, make = CASES[case]
    own = make().eval()
    state = own.state_dict()
    if "other layer names" in case or "features.N" in case:
        state = _renamed(state, (lambda i: f"features.{i}") if "features" in case else (lambda i: f"block{i}"))
    loaded = load_state_dict_upload(_saved(state), arch, rec)
    _same_outputs(own, loaded, rec.x_test)
    if not arch.startswith("resnet"):  # the file's own names, so a pruned state_dict loads back under them
        assert set(loaded.state_dict()) == set(state)
    # a ResNet keeps the zoo's names to run, but its pruned state_dict and masks are written under the file's
    result = prune(loaded, rec.x_test, method="sipp-det", keep_ratio=0.5)
    pruned = result.state_dict()
    assert list(pruned) == list(state)
    masks = result.masks_state()
    assert len(masks) == len(result.masks) and all(f"{name}.weight" in state for name in masks)
    again = load_state_dict_upload(_saved(pruned), arch, rec)  # the file's layout again: loads, same outputs
    _same_outputs(result.model, again, rec.x_test)


@pytest.mark.parametrize("wrap", list(WRAPS))
def test_common_prefixes_are_removed(wrap):
    own = ClassMLP((40, 20)).eval()
    loaded = load_state_dict_upload(_saved(WRAPS[wrap](own.state_dict())), "mlp", DIGITS)
    _same_outputs(own, loaded, DIGITS.x_test)


def test_nothing_fits_names_the_keys_the_nearest_architecture_and_the_misfit():
    rec = load_dataset("mnist5k")
    state = build_model("lenet5", (1, 28, 28), 10, seed=0).state_dict()
    with pytest.raises(UploadError) as info:
        load_state_dict_upload(_saved(state), "lenet300", rec)
    err = info.value
    assert "the file holds 10 tensors with these shapes: conv1.weight (6, 1, 5, 5)" in err.problem
    assert "first misfit:" in err.problem
    assert err.fix.startswith("it is a 'lenet5' state_dict: choose that architecture")


def test_a_tensor_of_the_wrong_shape_is_named():
    own = ClassMLP().state_dict()
    own["fc2.weight"] = torch.zeros(32, 60)
    with pytest.raises(UploadError, match=r"first misfit: fc2.weight is \(32, 60\) in the file, but its place"):
        load_state_dict_upload(_saved(own), "mlp", DIGITS)


def test_an_exported_resnet_under_other_names_writes_the_files_keys(tmp_path):
    """state_dict.pt and masks.pt of the deployable files use the uploaded file's names too."""
    arch, rec, make = CASES["resnet20 under other layer names"]
    state = _renamed(make().eval().state_dict())
    result = prune(load_state_dict_upload(_saved(state), arch, rec), rec.x_test, method="sipp-det", keep_ratio=0.5)
    result.export(tmp_path)
    written = torch.load(tmp_path / "state_dict.pt", weights_only=True)
    assert list(written) == list(state)
    masks = torch.load(tmp_path / "masks.pt", weights_only=True)
    assert masks.keys() == result.masks_state().keys() and all(f"{k}.weight" in state for k in masks)


def test_a_resnet_under_other_names_is_described_with_the_files_layer_names():
    """What SiPP sees in it: each prunable layer under the app's name and the file's, and a note saying why."""
    arch, rec, make = CASES["resnet20 under other layer names"]
    state = _renamed(make().eval().state_dict())
    desc = describe_model(load_state_dict_upload(_saved(state), arch, rec), rec)
    in_file = {d["name"]: d["file_name"] for d in desc.prunable}
    assert in_file["conv1"] == "block0" and in_file["fc"] == f"{next(reversed(state)).rsplit('.', 1)[0]}"
    assert all(f"{f}.weight" in state for f in in_file.values())
    assert any("your file's names" in n for n in desc.notes)
    same = describe_model(load_state_dict_upload(_saved(make().eval().state_dict()), arch, rec), rec)
    assert not any("file_name" in d for d in same.prunable) and not same.notes  # the zoo's own names: nothing to say


def test_a_resnet_under_other_names_reports_each_layers_name_in_the_file():
    """The per-layer rows (the page's table, its CSV and the JSON report) carry the file's name for each layer."""
    arch, _, make = CASES["resnet20 under other layer names"]
    rng = np.random.default_rng(0)
    images = lambda n: rng.normal(size=(n, 3, 8, 8)).astype("float32")  # noqa: E731
    buf = io.BytesIO()
    np.savez(buf, x_train=images(200), y_train=rng.integers(0, 5, 200), x_test=images(20),
             y_test=rng.integers(0, 5, 20))
    rec = load_npz_upload(buf.getvalue(), name="rgb")
    state = _renamed(make().eval().state_dict())
    model = load_state_dict_upload(_saved(state), arch, rec)
    prepared = prepare_trained(TrainedModel(model, "upload", rec.name, 0, 0, 0.0, "upload", ""), rec, sample_size=8,
                               heldout=10)
    layers = evaluate_prune(prepared, method="sipp-det", keep_ratio=0.5).to_dict()["layers"]
    assert layers[0]["name"] == "conv1" and layers[0]["file_name"] == "block0"
    assert all(f"{row['file_name']}.weight" in state for row in layers)
    assert layers[0]["label"] == "block0 · Conv2d 3→16, 3x3"  # what every chart and table calls it


def test_a_resnet_under_other_names_is_labelled_with_the_files_names_everywhere():
    """Charts and tables label layers by LayerInfo.label and, for filter pruning, Widths.label: both give the file's
    name for each layer of a renamed upload, and the module's own name for a network under the zoo's names."""
    arch, rec, make = CASES["resnet20 under other layer names"]
    state = _renamed(make().eval().state_dict())
    model = load_state_dict_upload(_saved(state), arch, rec)
    infos = layer_infos(model, rec.input_shape)
    assert infos["conv1"].label == "block0 · Conv2d 3→16, 3x3"
    assert all(f"{i.label.split(' · ')[0]}.weight" in state for i in infos.values())
    widths = prune_filters(model, torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(0)),
                           method="pfp", keep_ratio=0.7).widths
    assert {w.name: w.label for w in widths}["conv1"] == "block0 · Conv2d 3→16, 3x3"
    assert all(f"{w.label.split(' · ')[0]}.weight" in state for w in widths)
    dense = [name for name, _ in dense_layers(model)]  # the batch norms left dense, in the page's caption
    assert dense and all(f"{name}.weight" in state for name in dense)
    said = []
    compute_sensitivities(model, torch.randn(4, 3, 8, 8), progress=lambda f, m: said.append(m))
    assert "sensitivity of block0" in said and not any(m.endswith(" conv1") for m in said)  # progress, too
    own = layer_infos(load_state_dict_upload(_saved(make().eval().state_dict()), arch, rec), rec.input_shape)
    assert own["conv1"].label == "conv1 · Conv2d 3→16, 3x3" and not any(i.file_name for i in own.values())


def test_the_command_line_names_a_renamed_resnets_layers_as_its_file_does(tmp_path, capsys):
    """Its table uses the file's layer names, and the 19 batch norms left dense take one line, not 19."""
    from sipp_core.__main__ import main

    arch, _, make = CASES["resnet20 under other layer names"]
    state = _renamed(make().eval().state_dict())
    (tmp_path / "w.pt").write_bytes(_saved(state))
    rng = np.random.default_rng(0)
    images = lambda n: rng.normal(size=(n, 3, 8, 8)).astype("float32")  # noqa: E731
    np.savez(tmp_path / "d.npz", x_train=images(200), y_train=rng.integers(0, 5, 200), x_test=images(20),
             y_test=rng.integers(0, 5, 20))
    code = main(["prune", "--model", arch, "--npz", str(tmp_path / "d.npz"), "--weights", str(tmp_path / "w.pt"),
                 "--method", "sipp-det", "--keep-ratio", "0.5", "--sample-size", "8", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "\nblock0 · Conv2d 3→16, 3x3 " in out and "\nconv1 · " not in out
    dense = [line for line in out.splitlines() if "left dense" in line.lower()]
    assert len(dense) == 1 and dense[0].startswith("  Left dense (normalisation parameters are not pruned): block1")


def test_auto_finds_the_architecture_the_weights_fit():
    """Bring your own asked for the architecture first, and a wrong pick was only named in the refusal: 'auto' picks
    the one the weights fit (the zoo's order first: lenet300 over an mlp of the same widths), or the one the file names."""
    rec = load_dataset("mnist5k")
    for name in ("lenet5", "lenet300", "cnn"):
        model = build_model(name, (1, 28, 28), 10, seed=0).eval()
        loaded = load_state_dict_upload(_saved(model.state_dict()), AUTO, rec)
        assert loaded.zoo_architecture == name
        _same_outputs(model, loaded, rec.x_test[:8])
    sd = build_model("mlp", (1, 28, 28), 10, widths=(300, 100), seed=0).state_dict()
    assert load_state_dict_upload(_saved(sd), AUTO, rec).zoo_architecture == "lenet300"
    assert load_state_dict_upload(_saved({"model": "mlp", "state_dict": sd}), AUTO, rec).zoo_architecture == "mlp"
    named_wrong = load_state_dict_upload(_saved({"model": "resnet20", "state_dict": sd}), AUTO, rec)
    assert named_wrong.zoo_architecture == "lenet300" and named_wrong.zoo_note == " (the file says it is for 'resnet20')"
    own = ClassMLP((40, 20)).eval()  # a user's class, under its own names
    assert load_state_dict_upload(_saved(own.state_dict()), AUTO, DIGITS).zoo_architecture == "mlp"


def test_auto_with_weights_that_fit_nothing_says_so_and_names_the_data_they_fit():
    """lenet5's weights with 8x8 digits: no architecture fits these inputs, and the fix names the data that does."""
    state = build_model("lenet5", (1, 28, 28), 10, seed=0).state_dict()
    with pytest.raises(UploadError) as info:
        load_state_dict_upload(_saved(state), AUTO, IMAGES)
    err = info.value
    assert err.problem.startswith("the weights fit no zoo architecture on 'rgb'; against the nearest, "), err.problem
    assert "(1, 28, 28)" in err.fix and "'lenet5'" in err.fix, err.fix


CIFAR = SimpleNamespace(name="cifar-shaped", input_shape=(3, 32, 32), num_classes=10,
                        x_test=torch.randn(4, 3, 32, 32), y_test=torch.arange(4))


def test_auto_refuses_with_one_nearest_of_the_files_kind_and_a_fix_left_to_take():
    """A reviewer's findings: the refusal named lenet300 as the nearest and the fix named mlp (the fix searched the
    others again); a ResNet-32's nearest was lenet300 (fewer tensors off) rather than a ResNet; and the fix said to
    choose the architecture, which auto had already done."""
    from sipp_core.zoo.models import CifarResNet

    with pytest.raises(UploadError) as info:
        load_state_dict_upload(_saved(nn.Linear(784, 10).state_dict()), AUTO, load_dataset("mnist5k"))
    nearest = info.value.problem.split("against the nearest, ")[1].split(":")[0]
    assert nearest in ("lenet300", "mlp") and "nearest zoo architecture is" not in info.value.fix
    assert "exported program" in info.value.fix and "choose the architecture" not in info.value.fix
    with pytest.raises(UploadError) as info:
        load_state_dict_upload(_saved(CifarResNet((3, 32, 32), 10, 32).state_dict()), AUTO, CIFAR)
    assert "against the nearest, resnet" in info.value.problem, info.value.problem


def test_training_checkpoints_and_empty_files():
    """{"model": state_dict, "optimizer": ..., "epoch": 5}, a training script's checkpoint, was refused ("these
    entries are not tensors: model, optimizer, epoch"); an empty file said "these entries are not tensors: ." with no
    fix of its own."""
    own = ClassMLP((40, 20)).eval()
    ckpt = {"model": own.state_dict(), "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}, "epoch": 5}
    loaded = load_state_dict_upload(_saved(ckpt), AUTO, DIGITS)
    _same_outputs(own, loaded, DIGITS.x_test)
    assert loaded.zoo_architecture == "mlp" and loaded.zoo_options == "hidden widths 40, 20"
    for empty in ({}, {"state_dict": {}}):
        with pytest.raises(UploadError) as info:
            load_state_dict_upload(_saved(empty), AUTO, DIGITS)
        assert info.value.problem == "weights: the file holds no tensors" and "torch.save" in info.value.fix
