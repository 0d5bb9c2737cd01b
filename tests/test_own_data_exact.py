"""A user's own model on a user's own data gives exactly the numbers plain PyTorch gives.

The model is an 8x8-digits MLP trained on the raw stored values (0..16). Uploaded with
its data and preprocessing "as-given", every accuracy the engine reports must equal
plain PyTorch's on the same test split; standardising the inputs (what the loader used
to do silently) would evaluate it on inputs it never saw.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from sipp_core.errors import UploadError
from sipp_core.io.byo import load_npz_upload, load_state_dict_upload
from sipp_core.io.checkpoints import TrainedModel
from sipp_core.io.data import load_npz_dataset
from sipp_core.pipeline import evaluate_prune, prepare_trained
from sipp_core.zoo.models import build_model


@pytest.fixture(scope="module")
def raw_digits():
    """(npz bytes, state_dict bytes, plain PyTorch test accuracy) of an MLP trained on raw digits."""
    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    tr, te = order[:1400], order[1400:]
    torch.manual_seed(0)
    net = build_model("mlp", (64,), 10, seed=0, widths=(64, 32))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x[tr]), torch.from_numpy(y[tr])
    for _ in range(30):
        for i in range(0, len(xt), 64):
            loss = F.cross_entropy(net(xt[i:i + 64]), yt[i:i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        plain = float((net(torch.from_numpy(x[te])).argmax(1) == torch.from_numpy(y[te])).float().mean())
    data, weights = io.BytesIO(), io.BytesIO()
    np.savez(data, x_train=x[tr], y_train=y[tr], x_test=x[te], y_test=y[te])
    torch.save(net.state_dict(), weights)
    return data.getvalue(), weights.getvalue(), plain


def _accuracy_before(record, weights: bytes) -> float:
    model = load_state_dict_upload(weights, "mlp", record, model_options={"widths": (64, 32)})
    trained = TrainedModel(model, "mlp", record.name, 0, 0, float("nan"), "upload", "")
    prepared = prepare_trained(trained, record, sample_size=50, seed=0)
    return evaluate_prune(prepared, method="wt", keep_ratio=0.5).to_dict()["accuracy_before"]


def test_as_given_gives_plain_pytorch_accuracy(raw_digits):
    data, weights, plain = raw_digits
    assert plain > 0.9
    record = load_npz_upload(data, name="digits raw")  # "as-given" is the default for an upload
    assert record.preprocessing == "as-given" and "as given" in record.source
    assert _accuracy_before(record, weights) == pytest.approx(plain, abs=1e-6)


def test_the_values_are_exactly_as_stored(raw_digits):
    data, _, _ = raw_digits
    stored = np.load(io.BytesIO(data))
    record = load_npz_dataset(data, preprocessing="as-given")
    assert torch.equal(record.x_test, torch.from_numpy(stored["x_test"]))


def test_standardising_a_raw_model_changes_its_accuracy(raw_digits):
    data, weights, plain = raw_digits
    record = load_npz_dataset(data, preprocessing="standardize")
    assert record.preprocessing == "standardize" and "standardised" in record.source
    assert abs(_accuracy_before(record, weights) - plain) > 0.01  # the silent bug this choice prevents


def test_scale_is_for_uint8_only(raw_digits):
    data, _, _ = raw_digits
    with pytest.raises(UploadError, match="uint8.*Fix: choose 'as-given'"):
        load_npz_dataset(data, preprocessing="scale")
    with pytest.raises(ValueError, match="preprocessing must be one of as-given, scale, standardize"):
        load_npz_dataset(data, preprocessing="normalize")


def test_scale_divides_uint8_by_255():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(60, 8, 8), dtype=np.uint8)
    y = np.arange(60) % 3
    buf = io.BytesIO()
    np.savez(buf, x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:])
    record = load_npz_dataset(buf.getvalue(), preprocessing="scale")
    assert torch.equal(record.x_test[:, 0], torch.from_numpy(x[40:]).float() * (1 / 255))
