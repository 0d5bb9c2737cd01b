"""Trained models on demand: shipped checkpoints, an on-disk cache, or training.

Checkpoints are plain dicts of primitives and tensors, loaded only with
``torch.load(..., weights_only=True)``. A file that fails to load or does not
describe the requested (model, data set, epochs, seed) is reported, set aside
as ``<name>.<UTC time>.corrupt`` (never overwriting an earlier one) and rebuilt;
it is never loaded blindly.

Integrity: a flipped bit inside tensor data still loads (torch does not check
the zip's CRCs), so

* shipped checkpoints (``assets/checkpoints/*.pt``) are checked against
  ``assets/checkpoints/SHA256SUMS`` (``sha256sum`` format, written by
  ``assets/make_checkpoints.py``); a file that fails or is not listed is refused
  with a warning, never loaded, and the model comes from the cache or training;
* every checkpoint written by :func:`save_checkpoint` carries ``sha256``, a digest
  of its metadata and tensors, checked on load; a mismatch counts as corruption.

Storage: a cache that cannot be written (read-only folder, full disk) never
costs a trained model: it is returned with a warning that it was not cached.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, StorageError
from ..zoo.models import build_model, positional_names
from ..zoo.train import DEFAULT_EPOCHS, Progress, train_model
from .data import load_dataset
from .outputs import give_usual_mode
from .table_cache import cache_root
from .uploads import safe_load_message

FORMAT = "sipp-studio/checkpoint/v1"
ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets" / "checkpoints"
MANIFEST_NAME = "SHA256SUMS"
SHIPPED_FIX = "restore the shipped checkpoints from the repository (git checkout assets/checkpoints)"
CACHE_WRITE_FIX = "set SIPP_CACHE_DIR to a writable folder with free space"
# The identity and figures a checkpoint's digest covers besides its tensors.
_DIGEST_FIELDS = ("format", "model", "dataset", "epochs", "seed", "input_shape", "num_classes", "test_accuracy")


def cache_dir() -> Path:
    """SIPP_CACHE_DIR, else ~/.cache/sipp-studio (XDG_CACHE_HOME honoured), + /checkpoints."""
    return cache_root() / "checkpoints"


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
    path: str  # the file it came from or was saved to; "" when a trained model could not be saved


# ---- digests ---------------------------------------------------------------------------------------

def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, as ``sha256sum`` prints it."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def state_digest(payload: dict) -> str:
    """sha256 over a checkpoint's identity fields and every tensor's name, dtype, shape and raw bytes.

    Computed from the loaded values rather than the file, so it does not depend on how torch lays
    out the zip, and a flipped byte anywhere in the tensor data changes it."""
    h = hashlib.sha256()
    meta = {k: payload.get(k) for k in _DIGEST_FIELDS}
    h.update(json.dumps(meta, sort_keys=True).encode())
    state = payload.get("state_dict") or {}
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"\0{key}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def read_manifest(folder: Path = ASSETS_DIR) -> dict[str, str]:
    """{file name: sha256} from ``folder/SHA256SUMS``; {} when it is missing or unreadable."""
    try:
        text = (Path(folder) / MANIFEST_NAME).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    out = {}
    for line in text.splitlines():
        m = re.fullmatch(r"([0-9a-fA-F]{64}) [ *](.+)", line.strip())
        if m:
            out[m.group(2)] = m.group(1).lower()
    return out


def write_manifest(folder: Path = ASSETS_DIR) -> Path:
    """Write ``folder/SHA256SUMS`` for every ``*.pt`` there (``sha256sum -c SHA256SUMS`` checks it)."""
    folder = Path(folder)
    lines = [f"{file_sha256(p)}  {p.name}\n" for p in sorted(folder.glob("*.pt"))]
    target = folder / MANIFEST_NAME
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=MANIFEST_NAME, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.writelines(lines)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; this file is committed to the repository
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink(missing_ok=True)
        raise
    return target


def shipped_problem(path: Path) -> str | None:
    """None when a shipped file matches its manifest entry; else what is wrong."""
    want = read_manifest(path.parent).get(path.name)
    if want is None:
        return f"it is not listed in {path.parent / MANIFEST_NAME}, so its integrity cannot be checked"
    try:
        got = file_sha256(path)
    except OSError as exc:
        return f"it could not be read ({exc.strerror or exc})"
    if got != want:
        return f"its sha256 ({got[:16]}…) differs from the one in {MANIFEST_NAME} ({want[:16]}…): the file was changed"
    return None


# ---- writing ---------------------------------------------------------------------------------------

def _storage_error(path: Path, exc: OSError) -> StorageError:
    why = {errno.ENOSPC: "the disk is full", getattr(errno, "EDQUOT", -1): "the disk quota is exceeded",
           errno.EROFS: "the folder is on a read-only file system", errno.EACCES: "the folder is not writable",
           errno.EPERM: "the folder is not writable", errno.EISDIR: "it is a folder, not a file"}.get(
        exc.errno, exc.strerror or str(exc))
    fix = ("give the path of a file in it (e.g. folder/model.pt)" if exc.errno == errno.EISDIR else
           f"free some disk space or choose a writable folder (for the checkpoint cache: {CACHE_WRITE_FIX})")
    err = StorageError(f"could not write the checkpoint {path}: {why}", fix)
    # Keep errno so callers can still tell a full disk from a read-only one.
    err.errno, err.strerror, err.filename = exc.errno, exc.strerror, str(path)
    return err


LOW_SPACE = 64 * 2**20  # less free space than this where torch.save failed: the disk was full


def _failed_write(path: Path, exc: RuntimeError) -> OSError:
    """torch.save's own failure as the OSError it stands for: a full disk when little space is left there."""
    try:
        full = shutil.disk_usage(path.parent).free < LOW_SPACE
    except OSError:
        full = False
    text = str(exc).strip().splitlines()[-1][:160] if str(exc).strip() else type(exc).__name__
    return OSError(errno.ENOSPC if full else errno.EIO, "the disk is full" if full else f"torch could not write it "
                   f"({text}); the disk may be full")


def save_checkpoint(path: Path, model: nn.Module, *, name, dataset, epochs, seed, input_shape, num_classes, test_accuracy):
    """Write atomically (temp file + rename) so a crash never leaves a half file under the real name.

    Raises StorageError (an OSError, errno kept) when the folder is read-only or the disk is full;
    no temporary file is left behind."""
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
    payload["sha256"] = state_digest(payload)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            try:
                torch.save(payload, fh)
            except RuntimeError as exc:  # torch's writer reports a full disk as "unexpected pos 1408 vs 1302"
                raise _failed_write(path, exc) from exc
        give_usual_mode(tmp)  # not mkstemp's private 0600: `sipp train --out` makes a file to share
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):  # the folder may refuse this too; the first error is the one to report
                Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, StorageError):
            raise _storage_error(path, exc) from exc
        raise


# ---- reading ---------------------------------------------------------------------------------------

def _fix_for(path: Path) -> str:
    if Path(path).resolve().parent == ASSETS_DIR.resolve():
        return SHIPPED_FIX
    return (f"delete {path}; SiPP Studio sets a damaged cached checkpoint aside and rebuilds it on the next run "
            "(or train it again: python -m sipp_core train)")


def _read(path: Path, model: nn.Module, *, name, dataset, epochs, seed) -> tuple[float, bool]:
    """read_checkpoint, also saying whether the file carried a digest."""
    fix = _fix_for(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a torch file, or holds disallowed objects
        # safe_load_message drops torch's advice to retry with weights_only=False (unsafe on such a file).
        raise CheckpointError(f"{path} could not be read as a checkpoint ({safe_load_message(exc)})", fix) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a SiPP Studio checkpoint (format {FORMAT!r} expected)", fix)
    want = {"model": name, "dataset": dataset, "epochs": epochs, "seed": seed}
    got = {k: payload.get(k) for k in want}
    if got != want:
        raise CheckpointError(f"{path} describes {got}, not {want}", fix)
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} has no valid state_dict", fix)
    # Files written before digests existed (and the shipped ones, covered by SHA256SUMS) have none.
    stored = payload.get("sha256")
    if stored is not None and stored != state_digest(payload):
        raise CheckpointError(f"{path} fails its sha256 check: its contents changed after it was written "
                              "(a flipped bit on disk, or an edit)", fix)
    if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
        raise CheckpointError(f"{path} holds NaN or infinite weights", fix)
    state = _current_names(state, model)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit {name}: {exc}", fix) from exc
    acc = payload.get("test_accuracy")
    if not isinstance(acc, float) or not (0.0 <= acc <= 1.0) or math.isnan(acc):
        raise CheckpointError(f"{path} has no valid test accuracy", fix)
    return acc, stored is not None


def _current_names(state: dict, model: nn.Module) -> dict:
    """The state with the model's key names. Checkpoints written before the zoo named its layers ("fc1")
    number them by position ("1.weight"), as do the shipped ones (their SHA256SUMS cover the files as they
    are); those keys are renamed one for one. Any other state is returned as it is."""
    positional = positional_names(model)
    if not positional or set(state) != set(positional.values()):
        return state
    return {key: state[old] for key, old in positional.items()}


def read_checkpoint(path: Path, model: nn.Module, *, name, dataset, epochs, seed) -> float:
    """Load `path` into `model` after checking it describes exactly this model and, when it carries one,
    that its sha256 digest matches; returns its test accuracy. Raises CheckpointError (with a fix)."""
    return _read(path, model, name=name, dataset=dataset, epochs=epochs, seed=seed)[0]


# ---- the cache -------------------------------------------------------------------------------------

def _warn(msg: str, progress: Progress | None) -> None:
    warnings.warn(msg, RuntimeWarning, stacklevel=3)
    if progress is not None:
        progress(0.0, msg)


def _aside_name(path: Path) -> Path:
    """``<name>.<UTC time>.corrupt``, with ``-2``, ``-3``, ... when one of that second exists already."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    aside, n = path.with_name(f"{path.name}.{stamp}.corrupt"), 2
    while aside.exists():
        aside, n = path.with_name(f"{path.name}.{stamp}-{n}.corrupt"), n + 1
    return aside


def _set_aside(path: Path, reason: str, progress: Progress | None) -> None:
    aside = _aside_name(path)
    try:
        os.replace(path, aside)
    except OSError as exc:
        # A read-only cache: the file stays where it is; the model is still rebuilt (in memory).
        _warn(f"checkpoint {path} was rejected ({reason}) and could not be set aside "
              f"({exc.strerror or exc}); rebuilding it in memory. Fix: {CACHE_WRITE_FIX}, or delete {path}",
              progress)
        return
    _warn(f"checkpoint {path.name} was rejected ({reason}); moved to {aside.name} in {path.parent} "
          "(kept for inspection, not deleted) and rebuilding", progress)


def cache_checkpoint(path: Path, model: nn.Module, progress: Progress | None = None, **fields) -> bool:
    """save_checkpoint for a cache: on a storage failure (read-only folder, full disk) warn that the
    model was not cached, naming the folder and the fix, and return False instead of raising; the
    caller keeps its trained model. ``fields`` are save_checkpoint's keyword arguments."""
    try:
        save_checkpoint(path, model, **fields)
    except OSError as exc:
        reason = exc.problem if isinstance(exc, StorageError) else str(exc)
        _warn(f"the trained {fields['name']} on {fields['dataset']} was not saved to the checkpoint cache "
              f"{path.parent} ({reason}); it is used now but will be trained again next time. "
              f"Fix: {CACHE_WRITE_FIX}", progress)
        return False
    return True


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
    """A trained model: the shipped checkpoint (if it passes SHA256SUMS), else the cache, else trains
    (and caches) it. A cache that cannot be written gives a warning, never a lost model."""
    record = load_dataset(dataset)
    epochs = int(epochs if epochs is not None else DEFAULT_EPOCHS.get(name, 30))
    fname = checkpoint_name(name, dataset, epochs, seed)
    ident = dict(name=name, dataset=dataset, epochs=epochs, seed=seed)
    model = build_model(name, record.input_shape, record.num_classes, seed=seed)
    shipped = ASSETS_DIR / fname
    if shipped.exists():
        problem = shipped_problem(shipped)
        if problem is None:
            # It matches the manifest, so a failure here is a packaging bug: fail loudly (with the fix).
            acc = read_checkpoint(shipped, model, **ident)
            return TrainedModel(model.eval(), name, dataset, epochs, seed, acc, "shipped", str(shipped))
        # Never load it, never move it (assets/ belongs to the repository): use the cache or train instead.
        _warn(f"shipped checkpoint {shipped} was refused, not loaded: {problem}. Fix: {SHIPPED_FIX}; "
              "meanwhile the model comes from the checkpoint cache or is trained", progress)
    cached = cache_dir() / fname
    if cached.exists():
        try:
            acc, had_digest = _read(cached, model, **ident)
        except CheckpointError as exc:
            _set_aside(cached, exc.problem, progress)
            model = build_model(name, record.input_shape, record.num_classes, seed=seed)
        else:
            if not had_digest:  # written before digests: add one so later damage is caught (best effort)
                with contextlib.suppress(OSError):
                    save_checkpoint(cached, model, input_shape=record.input_shape,
                                    num_classes=record.num_classes, test_accuracy=acc, **ident)
            return TrainedModel(model.eval(), name, dataset, epochs, seed, acc, "cache", str(cached))
    if not allow_training:
        raise FileNotFoundError(f"no checkpoint for {name} on {dataset} ({fname}) and training is not allowed")
    model, acc = train_model(model, record, epochs=epochs, seed=seed, device=device, progress=progress)
    saved = cache_checkpoint(cached, model, progress, input_shape=record.input_shape, num_classes=record.num_classes,
                          test_accuracy=acc, **ident)
    return TrainedModel(model.eval(), name, dataset, epochs, seed, acc, "trained", str(cached) if saved else "")


def load_model(name: str, dataset: str, pretrained: bool = True, **options) -> nn.Module:
    """A zoo model for `dataset` in eval mode: trained (shipped, cached, or trained now) or freshly initialised.

    Options: epochs, seed, progress, device (see load_trained).
    """
    if not pretrained:
        record = load_dataset(dataset)
        return build_model(name, record.input_shape, record.num_classes, seed=options.get("seed", 0)).eval()
    return load_trained(name, dataset, **options).model
