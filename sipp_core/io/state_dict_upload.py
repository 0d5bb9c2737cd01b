"""(a) A state_dict for one of the app's own architectures (the zoo), uploaded by a user.

Nothing is unpickled freely: the file loads with ``torch.load(..., weights_only=True)``, so only tensors and plain
containers come through; a file holding any other Python object ("pickle with disallowed globals") is refused, and
the message names the object, read from the pickle's opcodes without running them. Then the names and shapes are
matched against the architecture (state_dicts.py: any key layout of the same layers), and what does not fit is said
in words: the class count, the input size, the first misfit and the nearest architecture.

Every refusal is an ``UploadError`` (a ValueError) whose message names the problem and the fix.
"""
from __future__ import annotations

import io
import pickletools
import re
import warnings
import zipfile
from typing import Any

import torch
from torch import nn

from ..errors import UploadError
from ..zoo.models import build_model, compatible_models
from .state_dicts import (
    Match,
    OtherData,
    fits_other_data,
    keep_file_keys,
    match_state_dict,
    named_as_file,
    ranked_matches,
    strip_prefixes,
)
from .uploads import (
    MODEL_MAX_BYTES,
    check_runs_on,
    first_few,
    looks_like_npz,
    looks_like_pt2,
    read_checked,
    safe_load_message,
    strip_root,
    zip_names,
)

__all__ = ["AUTO", "load_state_dict_upload"]

# The architecture name that asks the loader to find the zoo architecture the weights fit
AUTO = "auto"

_SAVE_HINT = "save it with torch.save(model.state_dict(), 'weights.pt')"


def _torch_load_weights_only(raw: bytes, what: str):
    names = zip_names(raw)
    if names is not None and looks_like_pt2(names):
        raise UploadError(f"{what}: this is an exported program (.pt2), not a state_dict; "
                          "upload it as an exported program instead")
    if names is not None and looks_like_npz(names):
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
                pkl = [n for n in names if strip_root(n) == "data.pkl"]
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
    """The tensors of a state_dict file: the file itself, its 'state_dict' or 'model_state_dict' entry, or the one
    entry that is a dict of tensors (a training checkpoint: {"model": ..., "optimizer": ..., "epoch": 5})."""
    if not isinstance(payload, dict):
        raise UploadError(f"{what}: expected a state_dict (a dict of tensors), got a {type(payload).__name__}",
                          _SAVE_HINT)
    for key in ("state_dict", "model_state_dict"):
        if key in payload and isinstance(payload[key], dict):
            payload = payload[key]
            break
    else:
        inner = [k for k, v in payload.items() if _tensors_only(v)]
        if len(inner) == 1 and not any(isinstance(v, torch.Tensor) for v in payload.values()):
            payload = payload[inner[0]]
    if not payload:
        raise UploadError(f"{what}: the file holds no tensors", f"{_SAVE_HINT} from the trained network")
    bad = [k for k, v in payload.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise UploadError(f"{what}: expected a state_dict (names -> tensors) or a dict with a 'state_dict' entry; "
                          f"these entries are not tensors: {first_few(bad)}", _SAVE_HINT)
    return dict(payload)


def _tensors_only(v: Any) -> bool:
    return isinstance(v, dict) and bool(v) and all(isinstance(t, torch.Tensor) for t in v.values())


def _weights(state: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    """The layer weights (2-D or 4-D tensors named '...weight') in saved order."""
    return [(k, v) for k, v in state.items() if k.endswith("weight") and v.ndim in (2, 4)]


def _kind(weight: torch.Tensor) -> str:
    return "a Linear layer" if weight.ndim == 2 else "a convolution"


def _misfit(state: dict[str, torch.Tensor], match: Match, rec) -> str:
    """What does not fit, in words: class count, input size (or the first layer's kind), the first misfit, the keys
    and shapes found."""
    parts = []
    found = _weights(state)
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ref = _weights(build_model(match.name, rec.input_shape, rec.num_classes, **match.options).state_dict())
    if found and ref:
        (last_k, last), (first_k, first), (ref_k, ref_first) = found[-1], found[0], ref[0]
        if last.shape[0] != rec.num_classes:
            parts.append(f"class count: the file's output layer {last_k} has {last.shape[0]} outputs, "
                         f"the data set {rec.name!r} has {rec.num_classes} classes")
        if first.ndim != ref_first.ndim:  # a convolution's input channels are no input size for a Linear layer
            parts.append(f"first layer: the file's {first_k} {tuple(first.shape)} is {_kind(first)}, "
                         f"{match.name}'s first layer is {_kind(ref_first)} ({ref_k} {tuple(ref_first.shape)})")
        elif first.shape[1] != ref_first.shape[1]:
            unit = "inputs per unit" if first.ndim == 2 else "input channels"
            parts.append(f"input size: the file's first layer {first_k} takes {first.shape[1]} {unit}, "
                         f"this data set's inputs {tuple(rec.input_shape)} need {ref_first.shape[1]}")
    parts.append(f"first misfit: {match.mismatch}")
    names = set(state)
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ref_keys = set(build_model(match.name, rec.input_shape, rec.num_classes, **match.options).state_dict())
    if names != ref_keys:
        missing, unexpected = sorted(ref_keys - names), [k for k in state if k not in ref_keys]
        if missing:
            parts.append(f"missing keys (by name): {first_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys (by name): {first_few(unexpected)}")
    shapes = [f"{k} {tuple(v.shape)}" for k, v in state.items() if not k.endswith("num_batches_tracked")]
    parts.append(f"the file holds {len(shapes)} tensors with these shapes: {first_few(shapes, 8)}")
    return "; ".join(parts)


def _options(options: dict) -> str:
    """Build options in words: "hidden widths 64, 32", "channels 16, 32"."""
    words = {"widths": "hidden widths", "channels": "channels"}
    return "; ".join(f"{words.get(k, k)} {', '.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
                     for k, v in options.items())


def _input_mismatch(state: dict[str, torch.Tensor], match: Match, rec) -> str | None:
    """The first layer takes another input size than the data gives, both layers of one kind: in words, else None."""
    found = _weights(state)
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ref = _weights(build_model(match.name, rec.input_shape, rec.num_classes, **match.options).state_dict())
    if not found or not ref or found[0][1].ndim != ref[0][1].ndim or found[0][1].shape[1] == ref[0][1].shape[1]:
        return None
    unit = "inputs per point" if found[0][1].ndim == 2 else "input channels"
    return f"the file's first layer takes {found[0][1].shape[1]} {unit} and this data set gives {ref[0][1].shape[1]}"


def _misfit_fix(match: Match, nearest: Match | None, other: OtherData | None, rec, inputs: str | None = None,
                tried_all: bool = False) -> str:
    """The fix, most certain first: another architecture that fits exactly; the architecture (this one or another)
    fitting the inputs of other data sets; a first layer for another input size (no architecture changes that);
    else the nearest architecture, and the exported-program route."""
    if nearest is not None and nearest.mapping is not None:
        opts = f" ({_options(nearest.options)})" if nearest.options else ""
        return f"it is a {nearest.name!r} state_dict{opts}: choose that architecture"
    if other is not None:
        arch = other.match.name
        theirs = f"inputs of shape {other.input_shape} and {other.num_classes} classes"
        head = (f"these are {arch!r} weights for {theirs}, not for {rec.name!r} (inputs {tuple(rec.input_shape)}, "
                f"{rec.num_classes} classes): choose ")
        head += "" if arch == match.name else f"the architecture {arch!r} and "
        if other.datasets:
            return head + (f"a data set of that shape ({', '.join(repr(d) for d in other.datasets)}), or upload your "
                           "own data of that shape (.npz)")
        return head + "your own data of that shape (upload an .npz)"
    if inputs is not None:
        return (f"{inputs}: choose the data set the weights were trained for (or upload an .npz of points of that "
                "size), or upload weights trained on this data set")
    if tried_all:
        return ("no zoo architecture has these layers: upload the network as an exported program (.pt2), which "
                "needs none (torch.export.export, then torch.export.save), or weights of a zoo architecture")
    near = (f"the nearest zoo architecture is {nearest.name!r} ({nearest.misfits} tensors off: {nearest.mismatch}); "
            if nearest is not None else "")
    return (f"{near}choose the architecture and data set the weights were trained for, or upload the network as "
            "an exported program (.pt2), which needs no zoo architecture (torch.export.export, then torch.export.save)")


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
        model_name: a zoo architecture (models.MODELS), or AUTO ("auto"): the first in the zoo's order that the
            weights fit (the one the file names first); the model's ``zoo_architecture`` says which.
        dataset_record: the DataRecord the model is for.
        max_bytes: size limit.
        model_options: build options (e.g. widths for "mlp").

    Raises:
        UploadError (a ValueError): the message names the problem and the fix.
    """

    what = "weights" if model_name == AUTO else f"weights for {model_name}"
    raw = read_checked(data, max_bytes, what)
    payload = _torch_load_weights_only(raw, what)
    picked = model_name == AUTO
    if picked:
        model_name, _ = fitting_architecture(strip_prefixes(_extract_state_dict(payload, what)), dataset_record,
                                             payload.get("model") if isinstance(payload, dict) else None)
        what = f"weights for {model_name}"
    if isinstance(payload, dict) and isinstance(payload.get("model"), str) and payload["model"] != model_name:
        note = f" (the file says it is for {payload['model']!r})"
    else:
        note = ""
    state = strip_prefixes(_extract_state_dict(payload, what))
    rec = dataset_record
    match, nearest = match_state_dict(state, model_name, rec, model_options)
    if match.mapping is None:
        if picked:  # every architecture was tried: model_name is the nearest, and there is none other to choose
            nearest = None
        other = fits_other_data(state, model_name, rec) if nearest is None or nearest.mapping is None else None
        head = (f"the weights fit no zoo architecture on {rec.name!r}{note}; against the nearest, {model_name}: "
                if picked else f"{what} on {rec.name!r}{note} do not fit: ")
        raise UploadError(head + _misfit(state, match, rec),
                          _misfit_fix(match, nearest, other, rec, _input_mismatch(state, match, rec), picked))
    file_keys = set(state)
    state = {match.mapping[k]: v for k, v in state.items()}
    model = build_model(model_name, rec.input_shape, rec.num_classes, **match.options)
    ref = model.state_dict()
    bad_dtype = [k for k in ref if ref[k].is_floating_point() and not state[k].is_floating_point()]
    if bad_dtype:
        raise UploadError(f"{what}: these tensors should hold floating-point numbers but hold integers or booleans: "
                          f"{first_few(bad_dtype)}; save the trained float weights")
    not_finite = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if not_finite:
        raise UploadError(f"{what}: NaN or infinite values in {first_few(not_finite)}; the training diverged or the file "
                          "is damaged: upload weights from a successful run")
    model.load_state_dict({k: state[k] for k in ref}, strict=True)
    if file_keys != set(ref):
        # The file names its layers its own way ("1.weight", "features.0.weight", "head.weight"): keep those names,
        # so that charts call each layer what the user's code calls it and a pruned state_dict loads back into the
        # user's network. Where no nesting can run the layers in order (a ResNet), the model keeps the zoo's names
        # and remembers the file's, which its pruned state_dict and masks are written under (state_dicts.py).
        model = named_as_file(model, match.mapping) or keep_file_keys(model, match.mapping)
    model.eval()
    check_runs_on(model, rec, f"the uploaded {model_name}")
    model.zoo_architecture = model_name  # what AUTO found, for labels; with the build options read off the tensors
    model.zoo_options = _options(match.options)  # in words ("hidden widths 64, 32"), or ""
    model.zoo_note = note  # " (the file says it is for 'resnet20')" where the file names another architecture
    return model


def fitting_architecture(state: dict[str, torch.Tensor], rec, named: str | None = None) -> tuple[str, bool]:
    """(the zoo architecture these weights fit on rec's inputs, True), or (the nearest, False) when none fits.
    The one the file names (SiPP Studio's checkpoints say which) is tried first; then the zoo's order, so that
    LeNet-300-100's weights are lenet300, not the mlp of the same widths."""
    ranked = ranked_matches(state, rec, named if isinstance(named, str) else None)
    if not ranked:
        return compatible_models(tuple(rec.input_shape))[0], False
    return ranked[0].name, ranked[0].mapping is not None
