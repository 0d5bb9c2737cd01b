"""Bring your own: a user's weights, exported program or data set, checked before anything runs.

    model = load_state_dict_upload(data, "lenet300", record)   # (a) a state_dict for a zoo architecture
    model = load_exported_upload(data, record)                 # (b) a torch.export program (.pt2)
    record = load_npz_upload(data, name="my data")             # (c) a .npz data set
    describe_model(model, record)                              # which layers SiPP can prune, and which not

Safety: nothing is unpickled freely.

* state_dicts load with ``torch.load(..., weights_only=True)``: only tensors and plain
  containers; any other Python object ("pickle with disallowed globals") is refused.
* ``torch.export.load`` itself falls back to full pickle for some payloads (pickled
  weights or constants, custom/opaque objects, the sample inputs, legacy archives)
  and can carry compiled AOTInductor code. So the archive is scanned first
  (:func:`scan_pt2`): every pickled payload must load with ``weights_only=True``,
  custom or opaque objects, compiled code and legacy layouts are refused, and every
  operator the graph calls must be an ATen operator or a plain arithmetic /
  symbolic-shape helper. Only then is the export loader called.
* ``.npz`` files are read with ``allow_pickle=False`` (``npz.load_npz_dataset``).

Every refusal is an ``UploadError`` (a ValueError) whose message names the problem and the fix.

Exported programs: ``ExportedProgram.module()`` is a flat graph in which Linear and
Conv2d layers are function calls (``aten.linear`` / ``aten.conv2d``), not modules, so
SiPP (which finds layers by module type and hooks their inputs) would see no prunable
layer. :func:`load_exported_upload` rebuilds each such call whose weight is a
parameter used by that call only into a real ``nn.Linear`` / ``nn.Conv2d`` (same
parameter objects, same qualified names, e.g. "1.weight"), and ReLU / max-pool calls
into ``nn.ReLU`` / ``nn.MaxPool2d`` modules; everything else (batch norm, additions,
matrix products from decomposed graphs) runs as exported and is left dense.
:func:`describe_model` reports both lists. The result is a plain ``torch.fx.GraphModule``
(export's own module refuses ``.eval()``); batch norm inside it stays in the mode
it was exported in, so use exported programs for pruning and evaluation, not retraining.
The program must accept any batch size (export with a dynamic batch dimension).
"""
from __future__ import annotations

import io
import json
import pickletools
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import UploadError
from ..zoo.layers import dense_layers, layer_infos
from ..zoo.models import build_model
from .npz import load_npz_dataset
from .state_dicts import Match, keep_file_keys, match_state_dict, named_as_file, strip_prefixes
from .uploads import read_upload, safe_load_message

__all__ = [
    "MODEL_MAX_BYTES",
    "NPZ_UPLOAD_MAX_BYTES",
    "ModelDescription",
    "describe_model",
    "load_exported_upload",
    "load_npz_upload",
    "load_state_dict_upload",
    "scan_pt2",
]

MODEL_MAX_BYTES = 200 * 1024**2  # Streamlit's default upload limit is 200 MB as well
NPZ_UPLOAD_MAX_BYTES = 200 * 1024**2

_SAVE_HINT = "save it with torch.save(model.state_dict(), 'weights.pt')"
_EXPORT_HINT = (
    "export it with ep = torch.export.export(model.eval(), (x,), dynamic_shapes=({0: torch.export.Dim('batch')},)) "
    "and torch.export.save(ep, 'model.pt2')"
)
# Operators an uploaded graph may call. Anything else (for example a Python function named by
# its module path, which the export deserializer would resolve with getattr) is refused.
_ALLOWED_TARGET_PREFIXES = ("torch.ops.aten.", "torch.ops.prims.", "_operator.", "torch.sym_", "math.",
                            "torch._sym_", "builtins.")


# ---------------------------------------------------------------------------------------------------
# shared helpers


def _read_upload(data: Any, max_bytes: int, what: str) -> bytes:
    """Bytes of an upload (bytes, bytearray, memoryview or a binary file object), within max_bytes."""
    raw = read_upload(data, max_bytes)
    if len(raw) > max_bytes:
        raise UploadError(
            f"{what}: the upload is {len(raw) / 1024**2:.1f} MiB (or more); the limit is {max_bytes / 1024**2:.0f} MiB. "
            "Upload a smaller file (for weights: the state_dict only, float32, no optimizer state)"
        )
    if not raw:
        raise UploadError(f"{what}: the upload is empty (0 bytes); choose the file again")
    return raw


def _zip_names(raw: bytes) -> list[str] | None:
    if not raw.startswith(b"PK"):
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            return z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return None


def _strip_root(name: str) -> str:
    """'archive/data/weights/w' -> 'data/weights/w' (torch archives nest everything under one folder)."""
    return name.split("/", 1)[1] if "/" in name else name


def _looks_like_pt2(names: list[str]) -> bool:
    inner = {_strip_root(n) for n in names}
    return "archive_format" in inner or any(n.startswith("models/") and n.endswith(".json") for n in inner)


def _looks_like_npz(names: list[str]) -> bool:
    return bool(names) and all(n.endswith(".npy") for n in names)


def _looks_like_torch_save(names: list[str]) -> bool:
    return any(_strip_root(n) == "data.pkl" for n in names)


def _first(items, n=5) -> str:
    items = list(items)
    more = f" (and {len(items) - n} more)" if len(items) > n else ""
    return ", ".join(str(i) for i in items[:n]) + more


def _check_runs_on(model: nn.Module, record, what: str) -> None:
    """A dry forward on two test points: shapes, class count and finite outputs, before anything runs."""
    x = record.x_test[:2]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            out = model(x)
    except Exception as exc:
        raise UploadError(
            f"{what} cannot take this data set's inputs shaped {tuple(record.input_shape)} "
            f"(a batch of 2 failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
            "choose the data set the model was trained for"
        ) from exc
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != len(x):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UploadError(f"{what} must return logits shaped (batch, classes); it returned {shape}")
    if out.shape[1] != record.num_classes:
        raise UploadError(
            f"{what} outputs {out.shape[1]} classes but the data set {record.name!r} has {record.num_classes}; "
            "use the data set the model was trained for, or a model with one output per class"
        )
    if not torch.isfinite(out).all():
        raise UploadError(f"{what} returns NaN or infinite logits on test points; check the weights")


# ---------------------------------------------------------------------------------------------------
# (a) state_dict for a zoo architecture


def _torch_load_weights_only(raw: bytes, what: str):
    names = _zip_names(raw)
    if names is not None and _looks_like_pt2(names):
        raise UploadError(f"{what}: this is an exported program (.pt2), not a state_dict; "
                          "upload it as an exported program instead")
    if names is not None and _looks_like_npz(names):
        raise UploadError(f"{what}: this is a NumPy .npz archive, not a PyTorch file; upload data sets as a data set, "
                          f"and weights as a state_dict ({_SAVE_HINT})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": the refusal below says it all
            return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # disallowed globals, truncated zip, wrong magic number, random bytes, ...
        found = re.findall(r"GLOBAL ([\w.]+)", str(exc)) or _pickle_globals(raw, names)
        if found:
            raise UploadError(
                f"{what}: the file holds Python objects other than tensors (it asks for {found[0]}); such files "
                "can run code when loaded and are refused",
                f"upload the weights only: {_SAVE_HINT}",
            ) from exc
        raise UploadError(
            f"{what}: this file is not a readable PyTorch file saved with torch.save ({safe_load_message(exc)})",
            f"{_SAVE_HINT} and upload that file",
        ) from exc


_TORCH_GLOBAL_PREFIXES = ("torch.", "collections.OrderedDict", "builtins.set", "builtins.frozenset",
                          "builtins.bytearray", "_codecs.encode", "numpy.")


def _pickle_globals(raw: bytes, names: list[str] | None) -> list[str]:
    """Globals (module.name) a pickle would import, outside torch's own: read from the opcodes, never executed."""
    if names is not None:  # a torch.save zip: its pickle is <root>/data.pkl
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as z:
                pkl = [n for n in names if _strip_root(n) == "data.pkl"]
                if not pkl:
                    return []
                raw = z.read(pkl[0])
        except (zipfile.BadZipFile, OSError, ValueError, KeyError):
            return []
    out, strings = [], []
    try:
        for op, arg, _ in pickletools.genops(raw):
            if op.name == "GLOBAL":
                out.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                out.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
    except Exception:  # not a pickle at all
        pass
    return [g for g in out if not g.startswith(_TORCH_GLOBAL_PREFIXES)]


def _extract_state_dict(payload: Any, what: str) -> dict[str, torch.Tensor]:
    if isinstance(payload, dict):
        for key in ("state_dict", "model_state_dict"):
            if key in payload and isinstance(payload[key], dict):
                return dict(payload[key])
        if payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
            return dict(payload)
        bad = [k for k, v in payload.items() if not isinstance(v, torch.Tensor)]
        raise UploadError(
            f"{what}: expected a state_dict (names -> tensors) or a dict with a 'state_dict' entry; "
            f"these entries are not tensors: {_first(bad)}. {_SAVE_HINT}"
        )
    raise UploadError(f"{what}: expected a state_dict (a dict of tensors), got a {type(payload).__name__}; "
                      f"{_SAVE_HINT}")


def _weights(state: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    """The layer weights (2-D or 4-D tensors named '...weight') in saved order."""
    return [(k, v) for k, v in state.items() if k.endswith("weight") and v.ndim in (2, 4)]


def _misfit(state: dict[str, torch.Tensor], match: Match, rec) -> str:
    """What does not fit, in words: class count, input size, the first misfit, the keys and shapes found."""
    parts = []
    found = _weights(state)
    with torch.device("meta"):
        ref = _weights(build_model(match.name, rec.input_shape, rec.num_classes, **match.options).state_dict())
    if found and ref:
        (last_k, last), (first_k, first) = found[-1], found[0]
        if last.shape[0] != rec.num_classes:
            parts.append(f"class count: the file's output layer {last_k} has {last.shape[0]} outputs, "
                         f"the data set {rec.name!r} has {rec.num_classes} classes")
        if first.shape[1] != ref[0][1].shape[1]:
            parts.append(f"input size: the file's first layer {first_k} takes {first.shape[1]} inputs per unit, "
                         f"this data set's inputs {tuple(rec.input_shape)} need {ref[0][1].shape[1]}")
    parts.append(f"first misfit: {match.mismatch}")
    names = set(state)
    with torch.device("meta"):
        ref_keys = set(build_model(match.name, rec.input_shape, rec.num_classes, **match.options).state_dict())
    if names != ref_keys:
        missing, unexpected = sorted(ref_keys - names), [k for k in state if k not in ref_keys]
        if missing:
            parts.append(f"missing keys (by name): {_first(missing)}")
        if unexpected:
            parts.append(f"unexpected keys (by name): {_first(unexpected)}")
    shapes = [f"{k} {tuple(v.shape)}" for k, v in state.items() if not k.endswith("num_batches_tracked")]
    parts.append(f"the file holds {len(shapes)} tensors with these shapes: {_first(shapes, 8)}")
    return "; ".join(parts)


def _misfit_fix(match: Match, nearest: Match | None) -> str:
    if nearest is not None and nearest.mapping is not None:
        opts = f" with {nearest.options}" if nearest.options else ""
        return f"it is a {nearest.name!r} state_dict{opts}: choose that architecture"
    near = (f"the nearest zoo architecture is {nearest.name!r} ({nearest.misfits} tensors off: {nearest.mismatch}); "
            if nearest is not None else "")
    return (f"{near}choose the architecture and data set the weights were trained for, or upload the network as "
            f"an exported program (.pt2), which needs no zoo architecture ({_SAVE_HINT})")


def load_state_dict_upload(
    data: Any,
    model_name: str,
    dataset_record,
    *,
    max_bytes: int = MODEL_MAX_BYTES,
    model_options: dict | None = None,
) -> nn.Module:
    """A zoo model for ``dataset_record`` with the uploaded weights, in eval mode on the CPU.

    Accepts a bare state_dict, or a dict with a "state_dict" (or "model_state_dict") entry,
    such as SiPP Studio's own checkpoints; "module." / "_orig_mod." key prefixes are removed.

    Checks, in order: size, file type, weights_only loading, tensors only, key names, tensor
    shapes (naming the class count and the input size when those differ), NaN/inf, then a dry
    forward on two test points.

    Args:
        data: the file's bytes or a binary file object (e.g. a Streamlit UploadedFile).
        model_name: a zoo architecture (models.MODELS).
        dataset_record: the DataRecord the model is for.
        max_bytes: size limit.
        model_options: build options (e.g. widths for "mlp").

    Raises:
        UploadError (a ValueError): the message names the problem and the fix.
    """

    what = f"weights for {model_name}"
    raw = _read_upload(data, max_bytes, what)
    payload = _torch_load_weights_only(raw, what)
    if isinstance(payload, dict) and isinstance(payload.get("model"), str) and payload["model"] != model_name:
        note = f" (the file says it is for {payload['model']!r})"
    else:
        note = ""
    state = strip_prefixes(_extract_state_dict(payload, what))
    rec = dataset_record
    match, nearest = match_state_dict(state, model_name, rec, model_options)
    if match.mapping is None:
        raise UploadError(f"{what} on {rec.name!r}{note} do not fit: " + _misfit(state, match, rec),
                          _misfit_fix(match, nearest))
    file_keys = set(state)
    state = {match.mapping[k]: v for k, v in state.items()}
    model = build_model(model_name, rec.input_shape, rec.num_classes, **match.options)
    ref = model.state_dict()
    bad_dtype = [k for k in ref if ref[k].is_floating_point() and not state[k].is_floating_point()]
    if bad_dtype:
        raise UploadError(f"{what}: these tensors should hold floating-point numbers but hold integers or booleans: "
                          f"{_first(bad_dtype)}; save the trained float weights")
    not_finite = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if not_finite:
        raise UploadError(f"{what}: NaN or infinite values in {_first(not_finite)}; the training diverged or the file "
                          "is damaged: upload weights from a successful run")
    model.load_state_dict({k: state[k] for k in ref}, strict=True)
    if file_keys != set(ref):
        # The file names its layers its own way ("1.weight", "features.0.weight", "head.weight"): keep those names,
        # so that charts call each layer what the user's code calls it and a pruned state_dict loads back into the
        # user's network. Where no nesting can run the layers in order (a ResNet), the model keeps the zoo's names
        # and remembers the file's, which its pruned state_dict and masks are written under (state_dicts.py).
        model = named_as_file(model, match.mapping) or keep_file_keys(model, match.mapping)
    model.eval()
    _check_runs_on(model, rec, f"the uploaded {model_name}")
    return model


# ---------------------------------------------------------------------------------------------------
# (b) exported program


def _weights_only_ok(blob: bytes) -> str | None:
    """None when a torch.save blob loads with weights_only=True; else why not."""
    try:
        torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        return None
    except Exception as exc:
        return safe_load_message(exc)


def _graph_targets(obj: Any, out: set[str]) -> None:
    """Every operator name ('target') anywhere in the serialized graph, subgraphs included."""
    if isinstance(obj, dict):
        t = obj.get("target")
        if isinstance(t, str) and ("inputs" in obj or "outputs" in obj):
            out.add(t)
        for v in obj.values():
            _graph_targets(v, out)
    elif isinstance(obj, list):
        for v in obj:
            _graph_targets(v, out)


def scan_pt2(raw: bytes) -> dict:
    """Check an exported-program archive before torch.export.load sees it (see the module docstring).

    Returns a summary dict (models, operators, payload counts). Raises UploadError naming what was refused.
    """
    what = "exported program"
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UploadError(f"{what}: not a .pt2 archive (not a zip file: {exc}); {_EXPORT_HINT}") from exc
    with zf:
        names = zf.namelist()
        if _looks_like_torch_save(names) and not _looks_like_pt2(names):
            raise UploadError(f"{what}: this is a torch.save file (a state_dict or checkpoint), not an exported "
                              "program; upload it as a state_dict and choose its architecture")
        if _looks_like_npz(names):
            raise UploadError(f"{what}: this is a NumPy .npz archive; upload data sets as a data set")
        if not _looks_like_pt2(names):
            raise UploadError(f"{what}: a zip file, but not a torch.export archive (no models/*.json); {_EXPORT_HINT}")
        inner = {_strip_root(n): n for n in names}
        refused = [n for n in inner if n.startswith(("data/aotinductor/", "data/executorch/", "data/mtia"))]
        if refused:
            raise UploadError(f"{what}: the archive carries compiled code ({_first(refused, 2)}), which is never "
                              f"loaded here; upload the plain exported program: {_EXPORT_HINT}")
        models = sorted(n[len("models/"):-len(".json")] for n in inner if n.startswith("models/") and n.endswith(".json"))
        if models != ["model"]:
            raise UploadError(f"{what}: expected one program named 'model', found {models or 'none'}; {_EXPORT_HINT}")
        legacy = [n for n in inner if n in ("data/weights/model.pt", "data/constants/model.pt")]
        if legacy:
            raise UploadError(f"{what}: an old archive layout ({legacy[0]}) that is unpickled without restrictions; "
                              f"re-export it with this PyTorch ({torch.__version__}): {_EXPORT_HINT}")
        pickled = 0
        for kind in ("weights", "constants"):
            cfg_name = f"data/{kind}/model_{kind}_config.json"
            if cfg_name not in inner:
                continue
            try:
                cfg = json.loads(zf.read(inner[cfg_name]))
            except (ValueError, KeyError) as exc:
                raise UploadError(f"{what}: {cfg_name} is not valid JSON ({exc}); {_EXPORT_HINT}") from exc
            entries = cfg.get("config", {}) if isinstance(cfg, dict) else {}
            for fqn, meta in entries.items():
                path = str(meta.get("path_name", "")) if isinstance(meta, dict) else ""
                if path.startswith(("custom_obj_", "opaque_obj_")):
                    raise UploadError(f"{what}: {fqn} is a custom Python object, which would need unrestricted pickle "
                                      f"and is refused; export a model whose state is tensors only")
                if isinstance(meta, dict) and meta.get("use_pickle"):
                    key = f"data/{kind}/{path}"
                    if key not in inner:
                        raise UploadError(f"{what}: {kind} entry {fqn} points at a missing file {key}")
                    why = _weights_only_ok(zf.read(inner[key]))
                    if why is not None:
                        raise UploadError(f"{what}: the pickled {kind[:-1]} {fqn} holds objects other than tensors "
                                          f"({why}); refused")
                    pickled += 1
        for n in inner:
            if n.startswith("data/sample_inputs/"):
                why = _weights_only_ok(zf.read(inner[n]))
                if why is not None:
                    raise UploadError(f"{what}: the sample inputs {n} hold objects other than tensors ({why}); refused")
        try:
            graph = json.loads(zf.read(inner["models/model.json"]))
        except ValueError as exc:
            raise UploadError(f"{what}: models/model.json is not valid JSON ({exc}); {_EXPORT_HINT}") from exc
    targets: set[str] = set()
    _graph_targets(graph, targets)
    bad = sorted(t for t in targets if not t.startswith(_ALLOWED_TARGET_PREFIXES))
    if bad:
        raise UploadError(f"{what}: the graph calls operators that are not ATen operators: {_first(bad)}; only "
                          "standard PyTorch operators are accepted (export a plain model, no custom ops)")
    return dict(models=models, operators=sorted(targets), pickled_payloads=pickled)


def _getattr_path(root: nn.Module, path: str):
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _ints(v, n=2) -> tuple[int, ...]:
    if isinstance(v, int):
        return (v,) * n
    v = tuple(int(i) for i in v)
    return v * n if len(v) == 1 else v


def _adopt_layers(gm: torch.fx.GraphModule) -> tuple[torch.fx.GraphModule, list[str]]:
    """Turn aten.linear / aten.conv2d / relu / max_pool2d calls into real modules (see the module docstring).

    Returns the rebuilt GraphModule and notes on calls that were left as functions."""
    aten = torch.ops.aten
    graph = gm.graph
    notes: list[str] = []
    uses: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "get_attr":
            uses[node.target] = uses.get(node.target, 0) + len(node.users)
    used_names = {n for n, _ in gm.named_modules()} | {n for n, _ in gm.named_parameters()}
    counter = 0

    def fresh(base: str) -> str:
        nonlocal counter
        while True:
            name = f"{base}_{counter}"
            counter += 1
            if name not in used_names and not hasattr(gm, name):
                used_names.add(name)
                return name

    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        if node.target in (aten.linear.default, aten.conv2d.default):
            is_linear = node.target is aten.linear.default
            names = ["input", "weight", "bias", "stride", "padding", "dilation", "groups"]
            args = dict(zip(names, node.args))
            args.update(node.kwargs)
            w_node, b_node = args.get("weight"), args.get("bias")
            ok = isinstance(w_node, torch.fx.Node) and w_node.op == "get_attr" and w_node.target.endswith(".weight")
            ok = ok and (b_node is None or (isinstance(b_node, torch.fx.Node) and b_node.op == "get_attr"
                                             and b_node.target == w_node.target[: -len("weight")] + "bias"))
            if not ok:
                notes.append(f"{node.name}: {node.target} whose weight is not a named parameter; left dense")
                continue
            owner_path = w_node.target[: -len(".weight")]
            owner = _getattr_path(gm, owner_path)
            own = {n for n, _ in owner.named_parameters(recurse=False)} | {n for n, _ in owner.named_buffers(recurse=False)}
            shared = uses.get(w_node.target, 0) > 1 or (b_node is not None and uses.get(b_node.target, 0) > 1)
            if shared or list(owner.children()) or not own <= {"weight", "bias"} or type(owner) is not nn.Module:
                notes.append(f"{owner_path}: weight shared or held with other state; left dense")
                continue
            w = owner.weight
            if not isinstance(w, nn.Parameter):
                notes.append(f"{owner_path}: weight is a constant, not a parameter; left dense")
                continue
            bias = getattr(owner, "bias", None) if b_node is not None else None
            if is_linear:
                if w.ndim != 2:
                    notes.append(f"{owner_path}: linear weight of {w.ndim} dims; left dense")
                    continue
                layer = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None, device="meta")
            else:
                groups = int(args.get("groups", 1))
                if w.ndim != 4:
                    notes.append(f"{owner_path}: conv weight of {w.ndim} dims; left dense")
                    continue
                layer = nn.Conv2d(
                    w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), stride=_ints(args.get("stride", 1)),
                    padding=_ints(args.get("padding", 0)), dilation=_ints(args.get("dilation", 1)), groups=groups,
                    bias=bias is not None, device="meta",
                )
            layer.weight = w
            if bias is not None:
                layer.bias = bias
            parent_path, _, leaf = owner_path.rpartition(".")
            parent = _getattr_path(gm, parent_path) if parent_path else gm
            setattr(parent, leaf, layer)
            with graph.inserting_before(node):
                new = graph.call_module(owner_path, (args["input"],))
            new.meta = dict(node.meta)
            node.replace_all_uses_with(new)
            graph.erase_node(node)
        elif node.target is aten.relu.default and len(node.args) == 1 and not node.kwargs:
            name = fresh("relu")
            gm.add_submodule(name, nn.ReLU())
            with graph.inserting_before(node):
                new = graph.call_module(name, (node.args[0],))
            new.meta = dict(node.meta)
            node.replace_all_uses_with(new)
            graph.erase_node(node)
        elif node.target is aten.max_pool2d.default and not node.kwargs:
            a = list(node.args) + [None] * (6 - len(node.args))
            x, kernel, stride, padding, dilation, ceil = a[:6]
            name = fresh("maxpool")
            gm.add_submodule(name, nn.MaxPool2d(
                _ints(kernel), stride=_ints(stride) if stride else None, padding=_ints(padding or 0),
                dilation=_ints(dilation or 1), ceil_mode=bool(ceil)))
            with graph.inserting_before(node):
                new = graph.call_module(name, (x,))
            new.meta = dict(node.meta)
            node.replace_all_uses_with(new)
            graph.erase_node(node)
        elif node.target in (aten.addmm.default, aten.mm.default, aten.matmul.default, aten.convolution.default,
                             aten.bmm.default):
            notes.append(f"{node.name}: {node.target} (a decomposed layer) runs as exported and is left dense; "
                         "export without run_decompositions() to make it prunable")
    graph.eliminate_dead_code()
    graph.lint()
    # A plain GraphModule: export's own module refuses .eval()/.train(), which the engine calls.
    rebuilt = torch.fx.GraphModule(gm, graph)
    return rebuilt, notes


class PerBatch(nn.Module):
    """A program exported for a fixed batch size, run on any batch: in pieces of that size, the last
    one padded with copies of its last point (the padding's outputs are dropped). Each point's output
    is the program's own; the prunable layers stay the program's modules (under ``program.``)."""

    def __init__(self, program: nn.Module, batch: int):
        super().__init__()
        self.program = program
        self.fixed_batch = int(batch)  # sipp_core.io.export exports the program itself at this batch size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.fixed_batch
        if x.shape[0] == b:
            return self.program(x)
        outs = []
        for i in range(0, x.shape[0], b):
            part = x[i : i + b]
            short = b - part.shape[0]
            if short:
                part = torch.cat([part, part[-1:].expand(short, *part.shape[1:])])
            outs.append(self.program(part)[: b - short])
        return torch.cat(outs)


def _fixed_batch(ep) -> int | None:
    """The batch size a program was exported for, if its input's first dimension is a constant."""
    try:
        user = [n for n in ep.graph.nodes if n.op == "placeholder" and n.name in set(ep.graph_signature.user_inputs)]
        first = user[0].meta["val"].shape[0]
    except (IndexError, KeyError, AttributeError):
        return None
    return int(first) if isinstance(first, int) else None


def _expected_input(ep) -> str:
    try:
        user = [n for n in ep.graph.nodes if n.op == "placeholder" and n.name in set(ep.graph_signature.user_inputs)]
        shapes = [tuple("N" if re.fullmatch(r"s\d+", str(d)) else str(d) for d in n.meta["val"].shape) for n in user]
        return ", ".join("(" + ", ".join(s) + ")" for s in shapes)
    except Exception:
        return "unknown"


def load_exported_upload(data: Any, dataset_record, *, max_bytes: int = MODEL_MAX_BYTES) -> nn.Module:
    """The model of an uploaded ``torch.export`` program (.pt2), checked and made prunable.

    Returns a ``torch.fx.GraphModule`` (CPU, eval mode) whose Linear / Conv2d calls are real
    modules where possible; ``describe_model(model, record)`` lists what SiPP can prune.

    Raises:
        UploadError (a ValueError): too big, not a .pt2, refused by the safety scan, not loadable by this PyTorch,
            more than one input or output, wrong input shape or class count. A program exported for a fixed
            batch size is run in pieces of that size (PerBatch).
    """
    what = "exported program"
    raw = _read_upload(data, max_bytes, what)
    scan_pt2(raw)
    try:
        ep = torch.export.load(io.BytesIO(raw))
    except Exception as exc:
        raise UploadError(f"{what}: could not be loaded by torch.export.load with PyTorch {torch.__version__} "
                          f"({type(exc).__name__}: {safe_load_message(exc)})",
                          f"re-export it with this version: {_EXPORT_HINT}") from exc
    user_inputs = list(ep.graph_signature.user_inputs)
    user_outputs = list(ep.graph_signature.user_outputs)
    if len(user_inputs) != 1 or len(user_outputs) != 1:
        raise UploadError(f"{what}: the program takes {len(user_inputs)} inputs and returns {len(user_outputs)} "
                          "outputs; SiPP needs one image/vector batch in and one logits tensor out")
    expected = _expected_input(ep)
    try:
        gm = ep.module()
    except Exception as exc:
        raise UploadError(f"{what}: the program could not be turned into a module ({exc})") from exc
    gm, _notes = _adopt_layers(gm)
    for owner, module_type in _exported_types(gm).items():  # plain holders keep the type they were exported as
        holder = _getattr_path(gm, owner) if owner else gm
        if type(holder) is nn.Module:
            holder.exported_type = module_type  # named by zoo.layers.dense_layers
    rec = dataset_record
    fixed = _fixed_batch(ep)
    model = gm if fixed is None else PerBatch(gm, fixed)
    for n in sorted({1, 2, (fixed or 1) + 1}):
        try:
            with torch.no_grad():
                out = model(rec.x_test[:n])
        except Exception as exc:
            text = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise UploadError(f"{what} expects inputs shaped {expected}, but the data set {rec.name!r} gives "
                              f"(batch, {', '.join(str(d) for d in rec.input_shape)}) ({text})",
                              "choose the data set the program was exported for") from exc
        if isinstance(out, torch.Tensor) and out.ndim == 2 and out.shape[0] != n:
            raise UploadError(f"{what}: returned {out.shape[0]} rows for a batch of {n}", _EXPORT_HINT)
    gm = model
    _check_runs_on(gm, rec, f"the {what}")
    for p in gm.parameters():
        p.requires_grad_(True)
    return gm.eval()


# ---------------------------------------------------------------------------------------------------
# (c) .npz data set


def load_npz_upload(data: Any, *, name: str = "custom", seed: int = 0, max_bytes: int = NPZ_UPLOAD_MAX_BYTES,
                    preprocessing: str = "as-given"):
    """An uploaded .npz data set as a DataRecord: the size limit here, every other check and the
    preprocessing ("as-given", "scale" or "standardize") in ``npz.load_npz_dataset``."""

    raw = _read_upload(data, max_bytes, "Invalid .npz data set")
    names = _zip_names(raw)
    if names is not None and (_looks_like_pt2(names) or _looks_like_torch_save(names)):
        raise UploadError("Invalid .npz data set: this is a PyTorch file (weights or an exported program), not a "
                          "data set; upload it in the model box, and the data as np.savez(path, x_train=..., "
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
    if any("file_name" in d for d in prunable):
        notes.append("Your file names some layers its own way. This network runs as the app's own architecture, "
                     "under the app's module names (the column 'app's module name'); the charts and tables call "
                     "each layer by your file's names, and the pruned state_dict and masks you download use them "
                     "too, so they load into your own network.")
    if isinstance(model, torch.fx.GraphModule):
        dense = _exported_dense(model, infos, dense)
        notes = _exported_notes(model)
    total = sum(p.numel() for p in model.parameters())
    return ModelDescription(prunable=prunable, dense=tuple(dense), notes=tuple(notes),
                            prunable_weights=sum(d["weights"] for d in prunable), total_parameters=total)


_NORM_TYPES = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm", "GroupNorm", "InstanceNorm1d",
               "InstanceNorm2d", "RMSNorm")


def _short_type(module_type: Any) -> str:
    """'torch.nn.modules.conv.Conv1d' -> 'torch.nn.Conv1d'; other types as exported."""
    if not isinstance(module_type, str):
        module_type = f"{module_type.__module__}.{module_type.__qualname__}"
    cls = module_type.rpartition(".")[2]
    if module_type.startswith("torch.nn.modules.") and getattr(nn, cls, None) is not None:
        return f"torch.nn.{cls}"
    return module_type


def _exported_types(gm: torch.fx.GraphModule) -> dict[str, str]:
    """{owner of a parameter: the module type that used it when exported}. An exported graph keeps
    parameters on plain nn.Module holders, so the original type survives only in nn_module_stack."""
    types: dict[str, str] = {}
    for node in gm.graph.nodes:
        stack = node.meta.get("nn_module_stack") if node.op == "call_function" else None
        if not stack:
            continue
        module_type = _short_type(list(stack.values())[-1][1])
        for arg in node.all_input_nodes:
            if arg.op == "get_attr":
                types.setdefault(arg.target.rpartition(".")[0], module_type)
    return types


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
    types = _exported_types(gm)
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
