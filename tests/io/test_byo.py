"""Bring your own: state_dicts, exported programs and .npz uploads; every bad or hostile file the tests write
themselves is refused with a message naming the problem, and nothing is unpickled freely."""
import io
import json
import pickle
import zipfile

import numpy as np
import pytest
import torch

from sipp_core.errors import UploadError
from sipp_core.io.byo import describe_model, load_exported_upload, load_npz_upload, load_state_dict_upload, scan_pt2
from sipp_core.io.data import load_dataset
from sipp_core.plan.pruning import prune
from sipp_core.zoo.layers import prunable_layers
from sipp_core.zoo.models import build_model


@pytest.fixture(scope="module")
def moons():
    return load_dataset("moons")


def _mlp(classes=2, inputs=(2,), seed=0):
    return build_model("mlp", inputs, classes, widths=(8,), seed=seed).eval()


def _saved(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _export(model, example, dynamic=True) -> bytes:
    shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
    ep = torch.export.export(model, (example,), dynamic_shapes=shapes)
    buf = io.BytesIO()
    torch.export.save(ep, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def exported(moons):
    model = _mlp(seed=3)
    return model, _export(model, moons.x_test[:2])


def _rewrite(raw: bytes, change) -> bytes:
    """A copy of a zip archive with entries changed by change(dict inner_name -> bytes)."""
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        root = z.namelist()[0].split("/", 1)[0]
        entries = {n.split("/", 1)[1]: z.read(n) for n in z.namelist()}
    change(entries)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for n, data in entries.items():
            z.writestr(f"{root}/{n}", data)
    return out.getvalue()


class Evil:  # any class outside torch's allowlist stands for "arbitrary code on load"
    def __reduce__(self):
        return (print, ("this must never run",))


# ---------------------------------------------------------------------------------------------- state_dict


def test_state_dict_variants_load(moons):
    ref = _mlp(seed=1)
    x = moons.x_test[:16]
    sd = ref.state_dict()
    for payload in (sd, {"state_dict": sd, "epochs": 3}, {f"module.{k}": v for k, v in sd.items()}):
        m = load_state_dict_upload(_saved(payload), "mlp", moons, model_options=dict(widths=(8,)))
        assert torch.equal(m(x), ref(x)) and not m.training
    m = load_state_dict_upload(io.BytesIO(_saved(sd)), "mlp", moons, model_options=dict(widths=(8,)))  # file object
    assert torch.equal(m(x), ref(x))


def test_state_dict_keeps_the_files_own_names(moons):
    """A network saved as a plain nn.Sequential ("1.weight") keeps those names: charts call its layers what the
    user's code calls them, and the pruned state_dict loads back into the user's own network. The zoo's names
    ("fc1.weight") stay the zoo's."""
    own = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)).eval()
    m = load_state_dict_upload(_saved(own.state_dict()), "mlp", moons)
    assert list(m.state_dict()) == list(own.state_dict()) and list(prunable_layers(m)) == ["1", "3"]
    x = moons.x_test[:16]
    assert torch.equal(m(x), own(x)) and not m.training
    pruned = prune(m, moons.x_pool[:40], method="sipp-det", keep_ratio=0.5)
    own.load_state_dict(pruned.state_dict())  # strict: the same keys
    assert torch.equal(own(x), pruned.model(x))
    named = load_state_dict_upload(_saved(_mlp().state_dict()), "mlp", moons)
    assert list(prunable_layers(named)) == ["fc1", "fc2"]


class _EncoderHead(torch.nn.Module):
    """A user's own class: a nested container and a layer of its own name."""

    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU())
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.encoder(x))


def test_state_dict_keeps_nested_and_custom_names(moons):
    """encoder.0 / head: the upload runs under the user's names (nested where the name is dotted), and its pruned
    state_dict loads strictly into the user's class."""
    torch.manual_seed(0)
    own = _EncoderHead().eval()
    m = load_state_dict_upload(_saved(own.state_dict()), "mlp", moons)
    assert list(prunable_layers(m)) == ["encoder.0", "head"] and set(m.state_dict()) == set(own.state_dict())
    x = moons.x_test[:16]
    assert torch.equal(m(x), own(x))
    pruned = prune(m, moons.x_pool[:40], method="sipp-det", keep_ratio=0.5)
    fresh = _EncoderHead()
    fresh.load_state_dict(pruned.state_dict())  # strict
    assert torch.equal(fresh.eval()(x), pruned.model(x))


def test_state_dict_names_that_cannot_run_in_order_keep_the_zoos(moons):
    """a.0, b.0, a.1: no nesting of containers runs these in the saved order, so the zoo's names are used (the
    weights still load exactly)."""
    ref = build_model("mlp", (2,), 2, widths=(8, 8), seed=0).eval()
    names = iter(["a.0", "b.0", "a.1"])
    renamed, seen = {}, {}
    for k, v in ref.state_dict().items():
        layer, leaf = k.rsplit(".", 1)
        if layer not in seen:
            seen[layer] = next(names)
        renamed[f"{seen[layer]}.{leaf}"] = v
    m = load_state_dict_upload(_saved(renamed), "mlp", moons)
    assert list(prunable_layers(m)) == ["fc1", "fc2", "fc3"]
    assert torch.equal(m(moons.x_test[:8]), ref(moons.x_test[:8]))


def test_state_dict_shipped_checkpoint_loads():
    rec = load_dataset("mnist5k")
    from sipp_core.io.checkpoints import ASSETS_DIR

    raw = (ASSETS_DIR / "lenet300-mnist5k-e30-s0.pt").read_bytes()
    m = load_state_dict_upload(raw, "lenet300", rec)
    assert float((m(rec.x_test).argmax(1) == rec.y_test).float().mean()) > 0.9


def test_state_dict_too_big_and_empty(moons):
    raw = _saved(_mlp().state_dict())
    with pytest.raises(ValueError, match="larger than the limit of 100 bytes"):
        load_state_dict_upload(raw, "mlp", moons, max_bytes=100, model_options=dict(widths=(8,)))
    with pytest.raises(ValueError, match="empty"):
        load_state_dict_upload(b"", "mlp", moons)


@pytest.mark.parametrize("raw, match", [
    (b"\x00\x01garbage" * 50, "not a readable PyTorch file"),
    (b"PK\x03\x04 truncated zip", "not a readable PyTorch file"),
])
def test_state_dict_not_a_torch_file(moons, raw, match):
    with pytest.raises(ValueError, match=match):
        load_state_dict_upload(raw, "mlp", moons, model_options=dict(widths=(8,)))


def test_state_dict_pickle_with_disallowed_globals_never_runs(moons, capsys):
    sd = dict(_mlp().state_dict())
    sd["extra"] = Evil()
    for raw in (_saved(sd), pickle.dumps(sd)):  # a torch.save zip and a bare pickle
        with pytest.raises(ValueError, match="Python objects other than tensors"):
            load_state_dict_upload(raw, "mlp", moons, model_options=dict(widths=(8,)))
    assert "must never run" not in capsys.readouterr().out


def test_state_dict_wrong_keys_names_the_architecture():
    rec = load_dataset("mnist5k")
    sd = build_model("lenet5", (1, 28, 28), 10, seed=0).state_dict()
    with pytest.raises(ValueError) as info:
        load_state_dict_upload(_saved(sd), "lenet300", rec)
    msg = str(info.value)
    assert "unexpected keys (by name): conv1.weight" in msg and "'lenet5'" in msg
    # and the other way round: LeNet-300-100's fc1..fc3 lack LeNet-5's convolutions
    sd = build_model("lenet300", (1, 28, 28), 10, seed=0).state_dict()
    with pytest.raises(ValueError) as info:
        load_state_dict_upload(_saved(sd), "lenet5", rec)
    msg = str(info.value)
    assert "missing keys (by name): conv1." in msg and "'lenet300'" in msg


def test_state_dict_class_count_and_input_size():
    rec = load_dataset("mnist5k")
    sd = build_model("lenet300", (1, 28, 28), 4, seed=0).state_dict()
    with pytest.raises(ValueError, match=r"class count: .* 4 outputs, the data set 'mnist5k' has 10 classes"):
        load_state_dict_upload(_saved(sd), "lenet300", rec)
    digits = load_dataset("digits")
    with pytest.raises(UploadError, match=r"input size: .* takes 784 inputs .* need 64") as info:
        load_state_dict_upload(_saved(build_model("lenet300", (1, 28, 28), 10).state_dict()), "lenet300", digits)
    # weights for another data set: the fix names the data sets they fit, not another architecture
    assert info.value.fix.startswith("these are 'lenet300' weights for inputs of shape (1, 28, 28) and 10 classes, "
                                     "not for 'digits' (inputs (1, 8, 8), 10 classes): choose a data set of that "
                                     "shape ('mnist5k', 'mnist', 'fashion-mnist')")


def test_a_convolutions_weights_for_a_linear_network_name_the_layer_kinds_and_where_they_fit():
    """A small CNN trained on the 8x8 digits, given as LeNet-300-100 on MNIST: its first layer's input channels are
    no input size; the fix names the architecture and the data set the weights fit."""
    sd = build_model("cnn", (1, 8, 8), 10, seed=0).state_dict()
    with pytest.raises(UploadError) as info:
        load_state_dict_upload(_saved(sd), "lenet300", load_dataset("mnist5k"))
    err = info.value
    assert "input size" not in err.problem
    assert ("first layer: the file's conv1.weight (16, 1, 3, 3) is a convolution, lenet300's first layer is a Linear "
            "layer (fc1.weight (300, 784))") in err.problem
    assert "choose the architecture 'cnn' and a data set of that shape ('digits')" in err.fix


def test_weights_for_an_input_size_no_data_set_has_say_so_and_options_read_as_words():
    """A first layer of 100 inputs for the 8x8 digits (64): no architecture fixes that, and the fix says what does;
    an MLP's weights given as LeNet-300-100 name the MLP's widths in words, not as a Python dict."""
    digits = load_dataset("digits")
    wide = build_model("mlp", (100,), 10, widths=(32,), seed=0).state_dict()
    for arch in ("lenet300", "mlp"):
        with pytest.raises(UploadError) as info:
            load_state_dict_upload(_saved(wide), arch, digits)
        assert info.value.fix.startswith("the file's first layer takes 100 inputs per point and this data set gives 64:")
    mlp = build_model("mlp", (1, 8, 8), 10, widths=(64, 32), seed=0).state_dict()
    with pytest.raises(UploadError) as info:
        load_state_dict_upload(_saved(mlp), "lenet300", digits)
    assert info.value.fix == "it is a 'mlp' state_dict (hidden widths 64, 32): choose that architecture"


def test_a_resnets_batch_norms_are_counted_apart_from_its_layers():
    sd = build_model("resnet20", (3, 32, 32), 10, seed=0).state_dict()
    with pytest.raises(UploadError) as info:
        load_state_dict_upload(_saved(sd), "lenet300", load_dataset("mnist5k"))
    assert "the file holds 39 layers with tensors (19 of them batch norms), the architecture 3;" in info.value.problem
    assert "choose the architecture 'resnet20' and a data set of that shape ('cifar10')" in info.value.fix


def test_state_dict_nan_and_non_dict(moons):
    sd = _mlp().state_dict()
    sd["fc1.weight"][0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or infinite values in fc1.weight"):
        load_state_dict_upload(_saved(sd), "mlp", moons, model_options=dict(widths=(8,)))
    with pytest.raises(ValueError, match="expected a state_dict"):
        load_state_dict_upload(_saved([torch.zeros(2)]), "mlp", moons)
    with pytest.raises(ValueError, match="not tensors: epochs"):
        load_state_dict_upload(_saved({"epochs": 3, "w": torch.zeros(1)}), "mlp", moons)


def test_state_dict_refuses_other_file_kinds(moons, exported):
    with pytest.raises(ValueError, match="exported program"):
        load_state_dict_upload(exported[1], "mlp", moons)
    buf = io.BytesIO()
    np.savez(buf, a=np.zeros(3))
    with pytest.raises(ValueError, match="npz"):
        load_state_dict_upload(buf.getvalue(), "mlp", moons)


# ---------------------------------------------------------------------------------------------- exported


def test_exported_round_trip_is_prunable(moons, exported):
    ref, raw = exported
    gm = load_exported_upload(raw, moons)
    x = moons.x_test[:32]
    assert torch.allclose(gm(x), ref(x), atol=1e-6)
    assert list(prunable_layers(gm)) == ["fc1", "fc2"]  # same qualified names as the zoo model
    assert set(gm.state_dict()) == set(ref.state_dict())
    d = describe_model(gm, moons)
    assert [p["name"] for p in d.prunable] == ["fc1", "fc2"] and d.prunable_weights == 2 * 8 + 8 * 2
    assert 0 < d.prunable_share < 1 and d.to_dict()["notes"] == []
    gm.train()  # export's own module refuses this; the rebuilt one accepts it
    gm.eval()


def test_exported_prunes_with_the_engine(moons, exported):
    gm = load_exported_upload(exported[1], moons)
    r = prune(gm, moons.x_pool[:40], method="sipp-det", keep_ratio=0.5)
    assert 0 < r.keep_ratio <= 0.5 + 1e-9 and set(r.masks) == {"fc1", "fc2"}


def test_exported_checks(moons, exported):
    with pytest.raises(ValueError, match="limit"):
        load_exported_upload(exported[1], moons, max_bytes=1000)
    with pytest.raises(ValueError, match="not a .pt2 archive"):
        load_exported_upload(b"hello world, not a zip", moons)
    with pytest.raises(ValueError, match="torch.save file"):
        load_exported_upload(_saved(_mlp().state_dict()), moons)
    spirals = load_dataset("spirals")  # (2,) inputs, 3 classes
    with pytest.raises(ValueError, match="outputs 2 classes but the data set 'spirals' has 3"):
        load_exported_upload(exported[1], spirals)
    digits = load_dataset("digits")
    with pytest.raises(UploadError, match=r"expects inputs shaped \(N, 2\)") as info:
        load_exported_upload(exported[1], digits)
    # the two shapes say it all: torch's own words ("Guard failed: ...", a matmul's sizes) are left out
    assert info.value.problem.endswith("but the data set 'digits' gives (batch, 1, 8, 8)")


def test_exported_fixed_batch_runs_in_pieces(moons):
    net = _mlp()
    model = load_exported_upload(_export(net, moons.x_test[:1], dynamic=False), moons)
    with torch.no_grad():  # a program exported for batch 1 now takes any batch (tests/io/test_exported_programs.py)
        torch.testing.assert_close(model(moons.x_test[:7]), net.eval()(moons.x_test[:7]), rtol=0, atol=1e-6)


@pytest.fixture
def loader_must_not_run(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("torch.export.load was called on a file the scan should have refused")

    monkeypatch.setattr(torch.export, "load", boom)


def test_hostile_pickled_weight_refused(moons, exported, loader_must_not_run):
    def change(e):
        cfg = json.loads(e["data/weights/model_weights_config.json"])
        first = next(iter(cfg["config"]))
        cfg["config"][first]["use_pickle"] = True
        e["data/weights/model_weights_config.json"] = json.dumps(cfg).encode()
        e["data/weights/" + cfg["config"][first]["path_name"]] = _saved({"w": Evil()})

    with pytest.raises(ValueError, match="objects other than tensors"):
        load_exported_upload(_rewrite(exported[1], change), moons)


def test_hostile_custom_object_refused(moons, exported, loader_must_not_run):
    def change(e):
        cfg = json.loads(e["data/constants/model_constants_config.json"])
        cfg.setdefault("config", {})["evil"] = {"path_name": "opaque_obj_0", "use_pickle": True}
        e["data/constants/model_constants_config.json"] = json.dumps(cfg).encode()
        e["data/constants/opaque_obj_0"] = pickle.dumps(Evil())

    with pytest.raises(ValueError, match="custom Python object"):
        load_exported_upload(_rewrite(exported[1], change), moons)


def test_hostile_sample_inputs_refused(moons, exported, loader_must_not_run):
    def change(e):
        e["data/sample_inputs/model.pt"] = _saved((Evil(),))

    with pytest.raises(ValueError, match="sample inputs"):
        load_exported_upload(_rewrite(exported[1], change), moons)


def test_hostile_graph_target_refused(moons, exported, loader_must_not_run):
    def change(e):
        text = e["models/model.json"].decode()
        e["models/model.json"] = text.replace("torch.ops.aten.relu.default", "torch.serialization.pickle.loads").encode()

    with pytest.raises(ValueError, match="not ATen operators: torch.serialization.pickle.loads"):
        load_exported_upload(_rewrite(exported[1], change), moons)


def test_compiled_code_and_legacy_refused(moons, exported, loader_must_not_run):
    with pytest.raises(ValueError, match="compiled code"):
        load_exported_upload(_rewrite(exported[1], lambda e: e.update({"data/aotinductor/model/x.so": b"\x7fELF"})), moons)
    with pytest.raises(ValueError, match="old archive layout"):
        load_exported_upload(_rewrite(exported[1], lambda e: e.update({"data/weights/model.pt": b"x"})), moons)


def test_scan_summary(exported):
    s = scan_pt2(exported[1])
    assert s["models"] == ["model"] and "torch.ops.aten.linear.default" in s["operators"]


# ---------------------------------------------------------------------------------------------- npz


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_npz_upload():
    rng = np.random.default_rng(0)
    raw = _npz(x_train=rng.normal(size=(40, 3)).astype(np.float32), y_train=np.arange(40) % 2,
               x_test=rng.normal(size=(10, 3)).astype(np.float32), y_test=np.arange(10) % 2)
    rec = load_npz_upload(raw, name="mine")
    assert rec.input_shape == (3,) and rec.num_classes == 2 and rec.name == "mine"
    with pytest.raises(ValueError, match="larger than the limit of"):
        load_npz_upload(raw, max_bytes=100)
    with pytest.raises(ValueError, match="PyTorch file"):
        load_npz_upload(_saved({"w": torch.zeros(2)}))
    with pytest.raises(ValueError, match="Invalid .npz"):
        load_npz_upload(_npz(x_train=np.zeros((40, 3))))
