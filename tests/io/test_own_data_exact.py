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
from rawdigits import raw_digits_files

from sipp_core.errors import UploadError
from sipp_core.io.byo import load_npz_upload, load_state_dict_upload
from sipp_core.io.checkpoints import TrainedModel
from sipp_core.io.npz import load_npz_dataset
from sipp_core.pipeline import evaluate_prune, prepare_trained


@pytest.fixture(scope="module")
def raw_digits():
    return raw_digits_files()


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
