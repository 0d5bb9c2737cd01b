"""The safety scan of an uploaded exported program (.pt2), made before ``torch.export.load`` sees it.

Why: ``torch.export.load`` itself falls back to full pickle for some payloads (pickled weights or constants,
custom or opaque objects, the sample inputs, legacy archives) and can carry compiled AOTInductor code. So every
pickled payload must load with ``weights_only=True``; custom or opaque objects, compiled code and legacy layouts are
refused; and every operator the graph calls must be an ATen operator or a plain arithmetic or symbolic-shape helper
(a Python function named by its module path would be resolved with getattr by the export deserializer).

Every refusal is an ``UploadError`` (a ValueError) whose message names the problem and the fix.
"""
from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import torch

from ..errors import UploadError
from .uploads import first_few, looks_like_npz, looks_like_pt2, looks_like_torch_save, safe_load_message, strip_root

__all__ = ["EXPORT_HINT", "scan_pt2"]

EXPORT_HINT = (
    "export it with ep = torch.export.export(model.eval(), (x,), dynamic_shapes=({0: torch.export.Dim('batch')},)) "
    "and torch.export.save(ep, 'model.pt2')"
)
# Operators an uploaded graph may call. Anything else (for example a Python function named by
# its module path, which the export deserializer would resolve with getattr) is refused.
_ALLOWED_TARGET_PREFIXES = ("torch.ops.aten.", "torch.ops.prims.", "_operator.", "torch.sym_", "math.",
                            "torch._sym_", "builtins.")


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
        raise UploadError(f"{what}: not a .pt2 archive (not a zip file: {exc})", EXPORT_HINT) from exc
    with zf:
        names = zf.namelist()
        if looks_like_torch_save(names) and not looks_like_pt2(names):
            raise UploadError(f"{what}: this is a torch.save file (a state_dict or checkpoint), not an exported "
                              "program; upload it as a state_dict and choose its architecture")
        if looks_like_npz(names):
            raise UploadError(f"{what}: this is a NumPy .npz archive; upload data sets as a data set")
        if not looks_like_pt2(names):
            raise UploadError(f"{what}: a zip file, but not a torch.export archive (no models/*.json)", EXPORT_HINT)
        inner = {strip_root(n): n for n in names}
        refused = [n for n in inner if n.startswith(("data/aotinductor/", "data/executorch/", "data/mtia"))]
        if refused:
            raise UploadError(f"{what}: the archive carries compiled code ({first_few(refused, 2)}), which is never "
                              "loaded here", f"upload the plain exported program: {EXPORT_HINT}")
        models = sorted(n[len("models/"):-len(".json")] for n in inner if n.startswith("models/") and n.endswith(".json"))
        if models != ["model"]:
            raise UploadError(f"{what}: expected one program named 'model', found {models or 'none'}", EXPORT_HINT)
        legacy = [n for n in inner if n in ("data/weights/model.pt", "data/constants/model.pt")]
        if legacy:
            raise UploadError(f"{what}: an old archive layout ({legacy[0]}) that is unpickled without restrictions",
                              f"re-export it with this PyTorch ({torch.__version__}): {EXPORT_HINT}")
        pickled = 0
        for kind in ("weights", "constants"):
            cfg_name = f"data/{kind}/model_{kind}_config.json"
            if cfg_name not in inner:
                continue
            try:
                cfg = json.loads(zf.read(inner[cfg_name]))
            except (ValueError, KeyError) as exc:
                raise UploadError(f"{what}: {cfg_name} is not valid JSON ({exc})", EXPORT_HINT) from exc
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
            raise UploadError(f"{what}: models/model.json is not valid JSON ({exc})", EXPORT_HINT) from exc
    targets: set[str] = set()
    _graph_targets(graph, targets)
    bad = sorted(t for t in targets if not t.startswith(_ALLOWED_TARGET_PREFIXES))
    if bad:
        raise UploadError(f"{what}: the graph calls operators that are not ATen operators: {first_few(bad)}; only "
                          "standard PyTorch operators are accepted (export a plain model, no custom ops)")
    return dict(models=models, operators=sorted(targets), pickled_payloads=pickled)
