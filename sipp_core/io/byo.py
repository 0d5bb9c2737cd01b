"""Bring your own: a user's weights, exported program or data set, checked before anything runs.

    model = load_state_dict_upload(data, "lenet300", record)   # (a) a state_dict for a zoo architecture
    model = load_exported_upload(data, record)                 # (b) a torch.export program (.pt2)
    record = load_npz_upload(data, name="my data")             # (c) a .npz data set
    describe_model(model, record)                              # which layers SiPP can prune, and which not

Each kind has its module: ``state_dict_upload`` (weights_only loading, names and shapes matched against the
architecture), ``exported_upload`` (layers rebuilt as modules) after ``pt2_scan`` (the archive's safety scan), and
``npz`` (``allow_pickle=False``); ``uploads`` holds what they share (size limits, telling the kinds of file apart, a
dry forward pass on the data set). Nothing is unpickled freely. Every refusal is an ``UploadError`` (a ValueError)
whose message names the problem and the fix.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import UploadError
from ..zoo.layers import dense_layers, layer_infos
from .exported_upload import exported_types, load_exported_upload
from .npz import load_npz_dataset
from .pt2_scan import scan_pt2
from .state_dict_upload import AUTO, load_state_dict_upload
from .uploads import (
    DATA_SMALLER,
    MODEL_MAX_BYTES,
    NPZ_UPLOAD_MAX_BYTES,
    looks_like_pt2,
    looks_like_torch_save,
    read_checked,
    zip_names,
)

__all__ = [
    "AUTO",
    "MODEL_MAX_BYTES",
    "NPZ_UPLOAD_MAX_BYTES",
    "ModelDescription",
    "describe_model",
    "load_exported_upload",
    "load_npz_upload",
    "load_state_dict_upload",
    "scan_pt2",
]


# ---------------------------------------------------------------------------------------------------
# (c) .npz data set


def load_npz_upload(data: Any, *, name: str = "custom", seed: int = 0, max_bytes: int = NPZ_UPLOAD_MAX_BYTES,
                    preprocessing: str = "as-given"):
    """An uploaded .npz data set as a DataRecord: the size limit here, every other check and the
    preprocessing ("as-given", "scale" or "standardize") in ``npz.load_npz_dataset``."""

    raw = read_checked(data, max_bytes, "Invalid .npz data set", DATA_SMALLER)
    names = zip_names(raw)
    if names is not None and (looks_like_pt2(names) or looks_like_torch_save(names)):
        raise UploadError("Invalid .npz data set: this is a PyTorch file (weights or an exported program), not a "
                          "data set", "upload it in the model box, and the data as np.savez(path, x_train=..., "
                          "y_train=..., x_test=..., y_test=...)")
    return load_npz_dataset(raw, name=name, seed=seed, preprocessing=preprocessing)


# ---------------------------------------------------------------------------------------------------
# what can be pruned


@dataclass(frozen=True)
class ModelDescription:
    """What SiPP sees in a model: prunable layers, layers left dense, and why."""

    prunable: tuple[dict, ...]  # name, kind, weight_shape, weights; file_name where the file calls it otherwise
    dense: tuple[dict, ...]  # name, reason
    notes: tuple[str, ...] = field(default_factory=tuple)  # graph calls left as functions (exported programs)
    prunable_weights: int = 0
    total_parameters: int = 0

    @property
    def prunable_share(self) -> float:
        return self.prunable_weights / self.total_parameters if self.total_parameters else 0.0

    def to_dict(self) -> dict:
        return dict(prunable=[dict(d) for d in self.prunable], dense=[dict(d) for d in self.dense],
                    notes=list(self.notes), prunable_weights=self.prunable_weights,
                    total_parameters=self.total_parameters, prunable_share=self.prunable_share)


def describe_model(model: nn.Module, record) -> ModelDescription:
    """Prunable layers (those a forward pass on the data set actually calls), dense layers and notes."""

    infos = layer_infos(model, record.input_shape)
    # a ResNet saved under other names runs under the zoo's (keep_file_keys): infos carry the file's names
    prunable = tuple(dict(name=n, kind=i.kind, weight_shape=list(i.weight_shape), weights=i.num_weights,
                          **({"file_name": i.file_name} if i.file_name else {}))
                     for n, i in infos.items())
    dense = [dict(name=n, reason=r) for n, r in dense_layers(model)]
    notes: list[str] = []
    fixed = getattr(model, "fixed_batch", None)  # a fixed-batch program, run inside exported_upload.PerBatch
    if any("file_name" in d for d in prunable) and not fixed:
        notes.append("Your file names some layers its own way. This network runs as the app's own architecture, "
                     "under the app's module names (the column 'app's module name'); the charts and tables call "
                     "each layer by your file's names, and the pruned state_dict and masks you download use them "
                     "too, so they load into your own network.")
    program, prefix = (model.program, "program.") if fixed else (model, "")
    if isinstance(program, torch.fx.GraphModule):
        own = {n.removeprefix(prefix): i for n, i in infos.items()}
        dense = _exported_dense(program, own, [dict(d, name=d["name"].removeprefix(prefix)) for d in dense])
        notes = _exported_notes(program)
        if fixed:
            notes.insert(0, f"Exported for a fixed batch size of {fixed}: it runs in pieces of {fixed} points, the "
                            "last one padded with copies of its last point (their outputs are dropped). Inside the "
                            "app its layers sit under 'program.' (the column 'app's module name'); the charts, tables "
                            "and downloads use the program's own names.")
    total = sum(p.numel() for p in model.parameters())
    return ModelDescription(prunable=prunable, dense=tuple(dense), notes=tuple(notes),
                            prunable_weights=sum(d["weights"] for d in prunable), total_parameters=total)


_NORM_TYPES = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm", "GroupNorm", "InstanceNorm1d",
               "InstanceNorm2d", "RMSNorm")


def _unsupported_reason(module_type: str) -> str:
    cls = module_type.rpartition(".")[2]
    if cls in _NORM_TYPES:
        return f"{module_type}: normalisation parameters are not pruned"
    if module_type in ("torch.nn.Linear", "torch.nn.Conv2d"):  # supported, but _adopt_layers could not rebuild it
        return (f"{module_type} runs as a graph call, not as a module (its weight is shared, a constant or held "
                "with other state); left dense")
    return f"{module_type} is not supported: SiPP prunes only Linear and Conv2d (groups=1) layers; left dense"


def _exported_dense(gm: torch.fx.GraphModule, infos: dict, dense: list[dict]) -> list[dict]:
    """Dense layers of an exported program, each named with the module type it was exported from."""
    types = exported_types(gm)
    modules = dict(gm.named_modules())
    out = []
    for d in dense:
        if type(modules.get(d["name"])) is nn.Module and d["name"] in types:  # a holder, not the layer itself
            d = dict(d, reason=_unsupported_reason(types[d["name"]]))
        out.append(d)
    listed = {d["name"] for d in out}
    for node in gm.graph.nodes:
        owner = node.target[: -len(".weight")] if node.op == "get_attr" and node.target.endswith(".weight") else None
        if owner is not None and owner not in infos and owner not in listed:
            module_type = types.get(owner)
            reason = (_unsupported_reason(module_type) if module_type else
                      "weight used by a graph call that is not a layer module; left dense")
            out.append(dict(name=owner, reason=reason))
            listed.add(owner)
    return out


def _exported_notes(gm: torch.fx.GraphModule) -> list[str]:
    aten = torch.ops.aten
    calls = (aten.linear.default, aten.conv2d.default, aten.addmm.default, aten.mm.default, aten.matmul.default,
             aten.convolution.default, aten.bmm.default)
    return [f"{node.name}: {node.target} runs as exported (not a module); left dense"
            for node in gm.graph.nodes if node.op == "call_function" and node.target in calls]
