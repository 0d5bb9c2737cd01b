"""Checkpoint cache: round trip, corrupted and foreign files, shipped checkpoints."""

import os

import pytest
import torch

from sipp_core.io import checkpoints
from sipp_core.io.checkpoints import (
    ASSETS_DIR,
    CheckpointError,
    cache_dir,
    checkpoint_name,
    load_model,
    load_trained,
    read_checkpoint,
)
from sipp_core.zoo.models import build_model


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SIPP_CACHE_DIR", str(tmp_path))
    return tmp_path / "checkpoints"


def _tiny(**kw):
    return load_trained("mlp", "moons", epochs=3, seed=1, **kw)


def test_train_then_cache_round_trip(cache):
    seen = []
    first = _tiny(progress=lambda f, m: seen.append(f))
    assert first.source == "trained" and seen[-1] == 1.0
    assert (cache / checkpoint_name("mlp", "moons", 3, 1)).exists()
    second = _tiny()
    assert second.source == "cache"
    assert second.test_accuracy == first.test_accuracy
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    assert not second.model.training


def test_corrupted_file_is_set_aside_and_rebuilt(cache):
    path = cache / checkpoint_name("mlp", "moons", 3, 1)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x80\x04 this is not a checkpoint")
    with pytest.warns(RuntimeWarning, match="rejected"):
        got = _tiny()
    assert got.source == "trained"
    # kept for inspection, not deleted; time-stamped so a later corruption cannot overwrite it
    assert len(list(path.parent.glob(path.name + ".*.corrupt"))) == 1
    assert read_checkpoint(path, build_model("mlp", (2,), 2), name="mlp", dataset="moons", epochs=3, seed=1) >= 0


def test_checkpoint_with_positional_names_still_loads(cache, tmp_path):
    """Checkpoints written before the zoo named its layers ("1.weight", not "fc1.weight"), such as the shipped ones
    and older caches, load into the named model, tensor for tensor, their digest checked as written."""
    trained = _tiny().model
    numbered = torch.nn.Sequential(*trained.children())  # the same modules, named by position
    path = tmp_path / "old.pt"
    checkpoints.save_checkpoint(path, numbered, name="mlp", dataset="moons", epochs=3, seed=1, input_shape=(2,),
                                num_classes=2, test_accuracy=0.5)
    assert "1.weight" in torch.load(path, weights_only=True)["state_dict"]
    fresh = build_model("mlp", (2,), 2)
    assert read_checkpoint(path, fresh, name="mlp", dataset="moons", epochs=3, seed=1) == 0.5
    assert list(fresh.state_dict())[:2] == ["fc1.weight", "fc1.bias"]
    for a, b in zip(fresh.state_dict().values(), trained.state_dict().values()):
        assert torch.equal(a, b)
    # names that are neither the model's nor its positional ones are refused, not guessed
    other = torch.nn.Sequential()
    for i, module in enumerate(trained.children()):
        other.add_module(f"layer{i}", module)
    checkpoints.save_checkpoint(path, other, name="mlp", dataset="moons", epochs=3, seed=1, input_shape=(2,),
                                num_classes=2, test_accuracy=0.5)
    with pytest.raises(CheckpointError, match="does not fit mlp"):
        read_checkpoint(path, build_model("mlp", (2,), 2), name="mlp", dataset="moons", epochs=3, seed=1)


def test_foreign_checkpoint_is_rejected(cache):
    _tiny()
    good = cache / checkpoint_name("mlp", "moons", 3, 1)
    other = cache / checkpoint_name("mlp", "moons", 3, 2)
    other.write_bytes(good.read_bytes())  # right format, wrong seed inside
    with pytest.raises(CheckpointError, match="describes"):
        read_checkpoint(other, build_model("mlp", (2,), 2), name="mlp", dataset="moons", epochs=3, seed=2)


def test_hostile_pickle_is_not_executed(cache, tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('executed')",))

    path = tmp_path / "evil.pt"
    torch.save({"format": checkpoints.FORMAT, "payload": Boom()}, path)
    with pytest.raises(CheckpointError, match="could not be read"):
        read_checkpoint(path, build_model("mlp", (2,), 2), name="mlp", dataset="moons", epochs=3, seed=1)


def test_no_training_when_not_allowed(cache):
    with pytest.raises(FileNotFoundError):
        load_trained("mlp", "moons", epochs=2, seed=9, allow_training=False)


def test_untrained_model_is_in_eval_mode():
    m = load_model("lenet300", "mnist5k", pretrained=False)
    assert not m.training


def test_cache_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SIPP_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path / "checkpoints"


@pytest.mark.parametrize("name,floor", [("lenet300", 0.92), ("lenet5", 0.95)])
def test_shipped_checkpoints_reach_stated_accuracy(name, floor, cache):
    from sipp_core.io.data import load_dataset
    from sipp_core.zoo.train import accuracy

    assert (ASSETS_DIR / checkpoint_name(name, "mnist5k", 30, 0)).exists()
    trained = load_trained(name, "mnist5k")
    assert trained.source == "shipped"
    data = load_dataset("mnist5k")
    measured = accuracy(trained.model, data.x_test, data.y_test)
    assert measured == pytest.approx(trained.test_accuracy, abs=1e-6)
    assert measured >= floor
    assert not list(cache.glob("*")) if cache.exists() else True  # nothing trained


def test_cli_train_prints_progress_and_accuracy(cache, tmp_path, capsys):
    from sipp_core.__main__ import main as cli

    out = tmp_path / "m.pt"
    assert cli(["train", "--model", "mlp", "--dataset", "moons", "--epochs", "2", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "epoch 2/2" in captured.err and "100.0%" in captured.err
    assert "test accuracy" in captured.out
    acc = read_checkpoint(out, build_model("mlp", (2,), 2), name="mlp", dataset="moons", epochs=2, seed=0)
    assert f"{acc:.4f}" in captured.out


def test_cli_train_unknown_model_exits_2(capsys):
    from sipp_core.__main__ import main as cli

    assert cli(["train", "--model", "alexnet", "--dataset", "moons", "--epochs", "1"]) == 2
    assert "valid models" in capsys.readouterr().err


def test_a_saved_checkpoint_has_the_mode_of_the_users_umask(tmp_path):
    """`sipp train --out` writes under a temporary name (mkstemp: private) and renames: the file still ends with the
    mode open() would give it (0644 under the usual umask), for sharing."""
    path = tmp_path / "lenet.pt"
    before = os.umask(0o022)
    try:
        checkpoints.save_checkpoint(path, build_model("mlp", (2,), 2), name="mlp", dataset="moons", epochs=3, seed=1,
                                    input_shape=(2,), num_classes=2, test_accuracy=0.5)
    finally:
        os.umask(before)
    assert path.stat().st_mode & 0o777 == 0o644
