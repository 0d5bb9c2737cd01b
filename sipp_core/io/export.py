"""Files that deploy elsewhere: a pruned network written as masks, weights, an exported program and ONNX.

    summary = export_pruned(directory, model=result.model, masks=result.masks, example=S[:2],
                            check_inputs=x_test, report=report_dict)

Writes into ``directory`` (created if missing):

- ``masks.pt``: {layer name: bool mask shaped like the weight} (``torch.load(..., weights_only=True)``);
- ``state_dict.pt``: the pruned network's weights, reweighted where sampling reweighted them;
- ``model.pt2``: the pruned network as a ``torch.export`` program with a dynamic batch dimension, which
  runs without this project's classes (``torch.export.load(path).module()(x)``); a program uploaded for a
  fixed batch size is exported at that size again;
- ``model.onnx``: the same network as ONNX (opset chosen by torch's exporter), also with a dynamic batch,
  checked here with onnxruntime against the PyTorch model on ``check_inputs``: the largest absolute
  difference of the logits must be at most ``ONNX_TOLERANCE``, or the export fails;
- ``report.json`` (and ``report.csv`` with one row per layer when the report has "layers"): the
  report given, plus what was exported and the ONNX agreement.

``model.onnx`` opens in Netron, and so do ``model.pt2`` and ``state_dict.pt`` (Netron reads PyTorch
files); ``masks.pt`` is a plain dict of tensors. Every file is written to a temporary name first and
renamed, so a full disk never leaves a half file under the real name.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import SippError, StorageError
from .outputs import write_atomically
from .state_dicts import file_masks, file_state

__all__ = ["EXPORT_FILES", "ONNX_TOLERANCE", "ExportSummary", "export_pruned"]

EXPORT_FILES = ("masks.pt", "state_dict.pt", "model.pt2", "model.onnx", "report.json")
ONNX_TOLERANCE = 1e-4  # largest |logit difference| between onnxruntime and PyTorch that passes


class ExportError(SippError, RuntimeError):
    """The pruned network could not be exported (a layer torch.export or ONNX cannot express)."""


@dataclass(frozen=True)
class ExportSummary:
    """What was written: file name -> bytes, and how closely ONNX matched PyTorch."""

    directory: str
    files: dict[str, int] = field(default_factory=dict)
    onnx_max_abs_diff: float = math.nan
    onnx_checked_points: int = 0

    def to_dict(self) -> dict:
        return {"directory": self.directory, "files": dict(self.files),
                "onnx_max_abs_diff": self.onnx_max_abs_diff, "onnx_checked_points": self.onnx_checked_points,
                "onnx_tolerance": ONNX_TOLERANCE}


def export_pruned(directory, *, model: nn.Module, masks: dict[str, torch.Tensor], example: torch.Tensor,
                  check_inputs: torch.Tensor | None = None, report: dict | None = None) -> ExportSummary:
    """Write the deployable files of a pruned network (see the module docstring).

    Args:
        directory: where to write (created if missing).
        model: the pruned network (a copy is exported; the model itself is not changed).
        masks: {layer name: bool mask}.
        example: a batch of inputs the network takes (two or more points: the batch stays dynamic).
        check_inputs: points on which ONNX must agree with PyTorch (default: ``example``).
        report: a JSON-ready dict written as report.json (its "layers" list also as report.csv).

    Raises:
        ExportError: torch.export or the ONNX exporter cannot express the network, or onnxruntime
            disagrees with PyTorch by more than ONNX_TOLERANCE.
        StorageError: the folder cannot be created or written (read-only, full).
    """
    folder = Path(directory)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"could not create the export folder {folder} ({exc.strerror or exc})",
                           "choose a writable folder with free space") from exc
    net = _export_copy(model)
    example = _batch_of_two(example)
    checks = example if check_inputs is None else check_inputs
    fixed = getattr(net, "fixed_batch", None)  # a program uploaded for a fixed batch size (io.exported_upload.PerBatch)
    target = net if fixed is None else net.program
    if fixed is not None:
        example = _padded(example, fixed)
    files: dict[str, int] = {}
    # under an upload's own keys where its model remembers them (state_dicts.keep_file_keys)
    files["masks.pt"] = _write(folder / "masks.pt", _torch_bytes(
        file_masks(model, {k: v.clone().bool() for k, v in masks.items()})))
    files["state_dict.pt"] = _write(folder / "state_dict.pt", _torch_bytes(
        file_state(model, {k: v.detach().cpu().clone() for k, v in net.state_dict().items()})))
    program = _export_program(target, example, dynamic=fixed is None)
    files["model.pt2"] = _write(folder / "model.pt2", _program_bytes(program))
    onnx_bytes = _onnx_bytes(target, example, dynamic=fixed is None)
    diff = _onnx_max_diff(onnx_bytes, net, checks, fixed)
    if not diff <= ONNX_TOLERANCE:
        raise ExportError(f"the ONNX export disagrees with PyTorch by up to {diff:.3g} on {len(checks)} points "
                          f"(allowed: {ONNX_TOLERANCE:g})",
                          "report this network's layers; the .pt2 program and the state_dict are unaffected")
    files["model.onnx"] = _write(folder / "model.onnx", onnx_bytes)
    summary = ExportSummary(str(folder), files, diff, len(checks))
    full = dict(report or {})
    full["export"] = summary.to_dict()
    files["report.json"] = _write(folder / "report.json", _json_bytes(full))
    if isinstance(full.get("layers"), list) and full["layers"]:
        files["report.csv"] = _write(folder / "report.csv", _csv_bytes(full["layers"]))
    return ExportSummary(str(folder), files, diff, len(checks))


def _export_copy(model: nn.Module) -> nn.Module:
    """A CPU float32 eval copy without hooks or parametrisations: what the files hold."""
    net = copy.deepcopy(model).cpu().float().eval()
    for m in net.modules():
        m._forward_hooks.clear()
        m._forward_pre_hooks.clear()
    return net


def _batch_of_two(example: torch.Tensor) -> torch.Tensor:
    """At least two points: torch.export specialises a batch dimension of 1 to a constant."""
    if not isinstance(example, torch.Tensor) or example.ndim < 2 or len(example) == 0:
        raise ValueError("example must be a non-empty batch of inputs shaped (N, *input_shape)")
    example = example.detach().cpu().float()
    return example[:2] if len(example) >= 2 else torch.cat([example, example])


def _padded(x: torch.Tensor, n: int) -> torch.Tensor:
    """Exactly n points: cut, or padded with copies of the last point."""
    x = x[:n]
    return x if len(x) == n else torch.cat([x, x[-1:].expand(n - len(x), *x.shape[1:])])


def _export_program(net: nn.Module, example: torch.Tensor, dynamic: bool = True):
    shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic else None
    try:
        return torch.export.export(net, (example,), dynamic_shapes=shapes, strict=False)
    except Exception as exc:  # noqa: BLE001 - torch.export raises many types; the user needs the reason
        raise ExportError(f"torch.export could not trace the pruned network ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200] if str(exc) else ''})",
                          "use the state_dict.pt with your own model class; the masks and weights are valid") from exc


def _program_bytes(program) -> bytes:
    buf = io.BytesIO()
    torch.export.save(program, buf)
    return buf.getvalue()


def _onnx_bytes(net: nn.Module, example: torch.Tensor, dynamic: bool = True) -> bytes:
    """ONNX (with a dynamic batch unless the program has a fixed one); the exporter's progress lines
    are kept off stdout."""
    shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic else None
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        path = os.path.join(tmp, "model.onnx")
        try:
            program = torch.onnx.export(net, (example,), dynamic_shapes=shapes, dynamo=True, external_data=False)
            program.save(path)
        except Exception as exc:  # noqa: BLE001 - the exporter raises many types
            raise ExportError(f"the ONNX exporter could not express the pruned network ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200] if str(exc) else ''})",
                              "use model.pt2 or state_dict.pt instead") from exc
        with open(path, "rb") as fh:
            return fh.read()


def _onnx_max_diff(onnx_bytes: bytes, net: nn.Module, inputs: torch.Tensor, fixed: int | None = None) -> float:
    """Largest |onnxruntime logits - PyTorch logits| over `inputs`, in batches of 256 (or of the
    program's fixed batch size, the last one padded)."""
    import onnxruntime as ort  # deferred on purpose: only exports need it, and it loads a large library

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    worst = 0.0
    step = fixed or 256
    with torch.no_grad():
        for i in range(0, len(inputs), step):
            x = inputs[i : i + step].detach().cpu().float()
            ours = net(x).numpy()
            theirs = session.run(None, {name: (_padded(x, fixed) if fixed else x).numpy()})[0][: len(x)]
            worst = max(worst, float(np.max(np.abs(theirs - ours))) if ours.size else 0.0)
    return worst


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _json_bytes(obj) -> bytes:
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(obj), indent=2).encode()


def _csv_bytes(rows: list[dict]) -> bytes:
    text = io.StringIO()
    fields = list(dict.fromkeys(k for r in rows for k in r))
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k) for k in fields})
    return text.getvalue().encode()


def _write(path: Path, data: bytes) -> int:
    """Write atomically, with the umask's mode (the files are for deploying elsewhere); a storage failure is a
    StorageError."""
    try:
        return write_atomically(path, data)
    except OSError as exc:
        raise StorageError(f"could not write {path} ({exc.strerror or exc})",
                           "choose a writable folder with free space for the export") from exc
