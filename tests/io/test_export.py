"""Deployable files: masks, state_dict, exported program and ONNX that run without this project's classes."""
from __future__ import annotations

import errno
import io
import json
import os

import numpy as np
import onnxruntime as ort
import pytest
import torch
from faults import fault
from torch import nn

import sipp_core
import sipp_core.io.export as export_mod
from sipp_core.__main__ import main
from sipp_core.errors import StorageError


class Residual(nn.Module):
    """A small residual CNN: conv, batch norm, a skip connection, max pooling, a classifier."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x):
        h = torch.relu(self.bn(self.stem(x)))
        h = torch.relu(h + self.conv(h))
        return self.fc(self.pool(h).flatten(1))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    net = Residual().eval()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.2, 0.2)
        net.bn.running_var.uniform_(0.5, 1.5)
    S = torch.randn(40, 3, 8, 8)
    result = sipp_core.prune(net, S, method="sipp-rand", keep_ratio=0.3, seed=1)
    test = torch.randn(300, 3, 8, 8)
    folder = tmp_path_factory.mktemp("export")
    summary = result.export(folder, check_inputs=test)
    return net, result, test, folder, summary


def test_every_file_is_written_and_reported(exported):
    _, _, test, folder, summary = exported
    assert set(summary.files) == {"masks.pt", "state_dict.pt", "model.pt2", "model.onnx", "report.json", "report.csv"}
    report = json.loads((folder / "report.json").read_text())
    assert report["export"]["onnx_checked_points"] == len(test) and report["export"]["onnx_max_abs_diff"] <= 1e-4
    assert report["layers"][0]["name"] == "stem" and "density" in report["layers"][0]


def test_masks_and_state_dict_load_safely_and_rebuild_the_pruned_network(exported):
    net, result, test, folder, _ = exported
    masks = torch.load(folder / "masks.pt", weights_only=True)
    assert set(masks) == set(result.masks) and all(torch.equal(masks[k], result.masks[k]) for k in masks)
    fresh = Residual().eval()
    fresh.load_state_dict(torch.load(folder / "state_dict.pt", weights_only=True))
    with torch.no_grad():
        assert torch.equal(fresh(test), result.model(test))
        assert not torch.equal(net(test), result.model(test))  # the original is untouched, the copy pruned


def test_program_runs_any_batch_without_project_classes(exported):
    _, result, test, folder, _ = exported
    program = torch.export.load(folder / "model.pt2").module()
    with torch.no_grad():
        for n in (1, 7, 300):
            torch.testing.assert_close(program(test[:n]), result.model(test[:n]), rtol=0, atol=1e-5)


def test_onnx_agrees_with_pytorch_on_the_test_points(exported):
    _, result, test, folder, _ = exported
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: test.numpy()})[0]
    with torch.no_grad():
        assert np.max(np.abs(got - result.model(test).numpy())) <= 1e-4
    one = session.run(None, {session.get_inputs()[0].name: test[:1].numpy()})[0]
    assert one.shape == (1, 5)


@fault("export into a read-only folder", surface="library", outcome="clear error")
def test_unwritable_export_folder_is_a_storage_error(exported, monkeypatch, tmp_path):
    _, result, _, _, _ = exported

    def refuse(*args, **kwargs):  # root ignores chmod: the refusal is simulated where files are created
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(export_mod.tempfile, "mkstemp", refuse)
    with pytest.raises(StorageError, match="could not write .*masks.pt.*Fix: choose a writable folder"):
        result.export(tmp_path / "out")
    assert not list((tmp_path / "out").iterdir())


def test_command_line_exports_a_users_network_on_its_data(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    data = tmp_path / "data.npz"
    np.savez(data, x_train=x[:240], y_train=y[:240], x_test=x[240:], y_test=y[240:])
    net = sipp_core.build_model("mlp", (6,), 2, seed=0)
    weights = tmp_path / "w.pt"
    torch.save(net.state_dict(), weights)
    out = tmp_path / "export"
    code = main(["prune", "--model", "mlp", "--npz", str(data), "--weights", str(weights), "--keep-ratio", "0.5",
                 "--sample-size", "20", "--quiet", "--export", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "exported to" in printed and "ONNX agrees" in printed
    assert {p.name for p in out.iterdir()} >= {"masks.pt", "state_dict.pt", "model.pt2", "model.onnx", "report.json"}
    report = json.loads((out / "report.json").read_text())
    with torch.no_grad():
        plain = float((net(torch.from_numpy(x[240:])).argmax(1) == torch.from_numpy(y[240:])).float().mean())
    assert report["accuracy_before"] == pytest.approx(plain, abs=1e-6)  # the data as given, not standardised


@fault("prune --npz without the network", surface="command line", outcome="clear error")
def test_npz_without_weights_is_refused(tmp_path, capsys):
    code = main(["prune", "--npz", str(tmp_path / "d.npz"), "--keep-ratio", "0.5"])
    err = capsys.readouterr().err
    assert code == 2 and "--npz needs the network" in err and "fix: add --weights" in err


def test_the_apps_zip_holds_every_deployable_file(tiny_moons_env):
    import zipfile

    from sipp_core.pipeline import evaluate_prune, prepare
    from ui.results import export_zip

    report = evaluate_prune(prepare("mlp", "moons", sample_size=20), method="wt", keep_ratio=0.4)
    with zipfile.ZipFile(io.BytesIO(export_zip(report))) as zf:
        names = set(zf.namelist())
        data = json.loads(zf.read("report.json"))
    assert names == {"masks.pt", "state_dict.pt", "model.pt2", "model.onnx", "report.json", "report.csv"}
    assert data["model"] == "mlp" and data["export"]["onnx_checked_points"] == len(report.prepared.record.x_test)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_files_get_the_mode_open_would_give_them(tmp_path, umask):
    """Written under a temporary name (mkstemp: private, 0600), then renamed: each file still ends with the mode a
    plain open() gives under the user's umask, so another user's service can read a model meant for deploying."""
    from sipp_core.io.export import _write

    before = os.umask(umask)
    try:
        _write(tmp_path / "model.onnx", b"bytes")
    finally:
        os.umask(before)
    assert (tmp_path / "model.onnx").stat().st_mode & 0o777 == 0o666 & ~umask


def test_every_exported_file_has_the_mode_of_the_users_umask(exported):
    *_, folder, summary = exported
    mask = os.umask(0o022)  # os.umask reads it only by setting it: put it back at once
    os.umask(mask)
    assert {f: (folder / f).stat().st_mode & 0o777 for f in summary.files} == {f: 0o666 & ~mask for f in summary.files}
