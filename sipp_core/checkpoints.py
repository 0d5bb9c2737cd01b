"""Trained models on demand: shipped checkpoints, an on-disk cache, or training.

Checkpoints are plain dicts of primitives and tensors, loaded only with
``torch.load(..., weights_only=True)``. A file that fails to load or does not
describe the requested (model, data set, epochs, seed) is reported, set aside
as ``*.corrupt`` and rebuilt; it is never loaded blindly.
"""
from __future__ import annotations

import math
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .data import load_dataset
from .models import build_model
from .train import DEFAULT_EPOCHS, Progress, train_model

FORMAT = "sipp-studio/checkpoint/v1"
ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets" / "checkpoints"


class CheckpointError(RuntimeError):
    """A checkpoint file is corrupted or describes something else."""


def cache_dir() -> Path:
    """SIPP_CACHE_DIR, else ~/.cache/sipp-studio (XDG_CACHE_HOME honoured), + /checkpoints."""
    root = os.environ.get("SIPP_CACHE_DIR")
    if root:
        return Path(root) / "checkpoints"
    base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    return Path(base) / "sipp-studio" / "checkpoints"


def checkpoint_name(model: str, dataset: str, epochs: int, seed: int) -> str:
    return f"{model}-{dataset}-e{epochs}-s{seed}.pt"


@dataclass(frozen=True, eq=False)
class TrainedModel:
    model: nn.Module  # eval mode, CPU
    name: str
    dataset: str
    epochs: int
    seed: int
    test_accuracy: float
    source: str  # "shipped", "cache" or "trained"
    path: str


def save_checkpoint(path: Path, model: nn.Module, *, name, dataset, epochs, seed, input_shape, num_classes, test_accuracy):
    """Write atomically (temp file + rename) so a crash never leaves a half file under the real name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "model": name,
        "dataset": dataset,
        "epochs": int(epochs),
        "seed": int(seed),
        "input_shape": [int(d) for d in input_shape],
        "num_classes": int(num_classes),
        "test_accuracy": float(test_accuracy),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_checkpoint(path: Path, model: nn.Module, *, name, dataset, epochs, seed) -> float:
    """Load `path` into `model` after checking it describes exactly this model; returns its test accuracy."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a torch file, or holds disallowed objects
        raise CheckpointError(f"{path} could not be read as a checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a SiPP Studio checkpoint (format {FORMAT!r} expected)")
    want = {"model": name, "dataset": dataset, "epochs": epochs, "seed": seed}
    got = {k: payload.get(k) for k in want}
    if got != want:
        raise CheckpointError(f"{path} describes {got}, not {want}")
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} has no valid state_dict")
    if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
        raise CheckpointError(f"{path} holds NaN or infinite weights")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit {name}: {exc}") from exc
    acc = payload.get("test_accuracy")
    if not isinstance(acc, float) or not (0.0 <= acc <= 1.0) or math.isnan(acc):
        raise CheckpointError(f"{path} has no valid test accuracy")
    return acc


def _set_aside(path: Path, reason: str, progress: Progress | None) -> None:
    aside = path.with_suffix(path.suffix + ".corrupt")
    os.replace(path, aside)
    msg = f"checkpoint {path.name} was rejected ({reason}); moved to {aside.name} and rebuilding"
    warnings.warn(msg, RuntimeWarning, stacklevel=3)
    if progress is not None:
        progress(0.0, msg)


def load_trained(
    name: str,
    dataset: str,
    *,
    epochs: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    device: str | None = None,
    allow_training: bool = True,
) -> TrainedModel:
    """A trained model: the shipped checkpoint, else the cache, else trains (and caches) it."""
    record = load_dataset(dataset)
    epochs = int(epochs if epochs is not None else DEFAULT_EPOCHS.get(name, 30))
    fname = checkpoint_name(name, dataset, epochs, seed)
    ident = dict(name=name, dataset=dataset, epochs=epochs, seed=seed)
    model = build_model(name, record.input_shape, record.num_classes, seed=seed)
    shipped = ASSETS_DIR / fname
    if shipped.exists():
        # A broken shipped file is a packaging bug: fail loudly instead of silently retraining.
        acc = read_checkpoint(shipped, model, **ident)
        return TrainedModel(model.eval(), name, dataset, epochs, seed, acc, "shipped", str(shipped))
    cached = cache_dir() / fname
    if cached.exists():
        try:
            acc = read_checkpoint(cached, model, **ident)
            return TrainedModel(model.eval(), name, dataset, epochs, seed, acc, "cache", str(cached))
        except CheckpointError as exc:
            _set_aside(cached, str(exc), progress)
            model = build_model(name, record.input_shape, record.num_classes, seed=seed)
    if not allow_training:
        raise FileNotFoundError(f"no checkpoint for {name} on {dataset} ({fname}) and training is not allowed")
    model, acc = train_model(model, record, epochs=epochs, seed=seed, device=device, progress=progress)
    save_checkpoint(cached, model, input_shape=record.input_shape, num_classes=record.num_classes, test_accuracy=acc, **ident)
    return TrainedModel(model.eval(), name, dataset, epochs, seed, acc, "trained", str(cached))


def load_model(name: str, dataset: str, pretrained: bool = True, **options) -> nn.Module:
    """A zoo model for `dataset` in eval mode: trained (shipped, cached, or trained now) or freshly initialised.

    Options: epochs, seed, progress, device (see load_trained).
    """
    if not pretrained:
        record = load_dataset(dataset)
        return build_model(name, record.input_shape, record.num_classes, seed=options.get("seed", 0)).eval()
    return load_trained(name, dataset, **options).model
