"""Exported programs (.pt2) with a static or a dynamic batch: accepted, pruned on their own weights,
and downloadable again as .pt2 and ONNX."""
from __future__ import annotations

import io

import pytest
import torch

import sipp_core
from sipp_core.io.byo import describe_model, load_exported_upload
from sipp_core.io.data import load_dataset
from sipp_core.io.exported_upload import PerBatch


@pytest.fixture(scope="module")
def moons():
    return load_dataset("moons")


def _program(net, x, dynamic: bool) -> bytes:
    shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
    buf = io.BytesIO()
    torch.export.save(torch.export.export(net, (x,), dynamic_shapes=shapes), buf)
    return buf.getvalue()


@pytest.mark.parametrize("batch, dynamic", [(1, False), (3, False), (2, True)])
def test_static_and_dynamic_programs_run_every_batch_and_prune(moons, batch, dynamic, tmp_path):
    net = sipp_core.build_model("mlp", moons.input_shape, moons.num_classes, seed=0).eval()
    model = load_exported_upload(_program(net, moons.x_test[:batch], dynamic), moons)
    assert isinstance(model, PerBatch) != dynamic
    with torch.no_grad():
        torch.testing.assert_close(model(moons.x_test), net(moons.x_test), rtol=0, atol=1e-6)
    assert [l["name"] for l in describe_model(model, moons).prunable] == (
        ["fc1", "fc2", "fc3"] if dynamic else ["program.fc1", "program.fc2", "program.fc3"])
    # what the user sees and downloads is named as in their own network, not under the wrapper's "program."
    seen = describe_model(model, moons)
    assert [l.get("file_name", l["name"]) for l in seen.prunable] == ["fc1", "fc2", "fc3"]
    assert dynamic or seen.notes[0].startswith(f"Exported for a fixed batch size of {batch}: it runs in pieces")
    result = sipp_core.prune(model, moons.x_pool[:30], keep_ratio=0.5)
    assert set(result.state_dict()) == set(net.state_dict()) and set(result.masks_state()) == {"fc1", "fc2", "fc3"}
    own = sipp_core.build_model("mlp", moons.input_shape, moons.num_classes, seed=1).eval()
    own.load_state_dict(result.state_dict())  # the pruned weights load into the user's own network
    with torch.no_grad():
        torch.testing.assert_close(own(moons.x_test), result.model(moons.x_test), rtol=0, atol=1e-6)
    assert abs(result.keep_ratio - 0.5) < 0.01
    summary = result.export(tmp_path, check_inputs=moons.x_test)
    assert summary.onnx_max_abs_diff <= 1e-4
    again = torch.export.load(tmp_path / "model.pt2").module()
    n = 5 if dynamic else batch  # a fixed-batch program is exported at its own batch size again
    with torch.no_grad():
        torch.testing.assert_close(again(moons.x_test[:n]), result.model(moons.x_test[:n]), rtol=0, atol=1e-6)


def test_unsupported_exported_layers_are_named_by_their_type():
    from types import SimpleNamespace

    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.norm, self.fc = nn.Conv1d(1, 4, 3), nn.LayerNorm(16), nn.Linear(16, 3)

        def forward(self, x):
            return self.fc(self.norm(torch.relu(self.c(x.unsqueeze(1))).mean(1)))

    torch.manual_seed(0)
    x = torch.randn(30, 18)
    rec = SimpleNamespace(name="v", input_shape=(18,), num_classes=3, x_test=x, y_test=torch.arange(30) % 3)
    model = load_exported_upload(_program(Net().eval(), x[:2], dynamic=True), rec)
    dense = dict(sipp_core.prune(model, x.abs(), keep_ratio=0.5).dense)
    assert dense["c"].startswith("torch.nn.Conv1d is not a supported layer")
    assert dense["norm"] == "torch.nn.LayerNorm: normalisation parameters are not pruned"


def test_a_fixed_batch_program_is_measured_as_its_dynamic_twin(moons):
    """The layer errors hook the program's layers, which a fixed-batch program runs once per piece (the last one
    padded): its report must be the dynamic program's, whether the batch divides the points or not."""
    from sipp_core.io.checkpoints import TrainedModel
    from sipp_core.pipeline import evaluate_prune, prepare_trained

    net = sipp_core.build_model("mlp", moons.input_shape, moons.num_classes, seed=0).eval()
    reports = {}
    for batch, dynamic in ((2, True), (7, False), (8, False)):
        model = load_exported_upload(_program(net, moons.x_test[:batch], dynamic), moons)
        prepared = prepare_trained(TrainedModel(model, "mlp", "moons", 0, 0, float("nan"), "upload", ""), moons)
        reports[batch] = evaluate_prune(prepared, method="sipp-hybrid", keep_ratio=0.3).to_dict()
    keys = ("kept", "bound", "measured_max_s", "measured_max_heldout", "failure_rate", "failure_rate_s")
    for batch in (7, 8):
        for ours, twin in zip(reports[batch]["layers"], reports[2]["layers"]):
            for k in keys:
                assert ours[k] == pytest.approx(twin[k], rel=1e-5, abs=1e-7), (batch, ours["name"], k)
        assert reports[batch]["accuracy_after"] == reports[2]["accuracy_after"]
