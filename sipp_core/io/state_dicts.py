"""A user's state_dict matched to a zoo architecture: widths and depth from the tensors' shapes, key names
from the layout they were saved in.

    model, state, note = match_state_dict(state, "mlp", record)   # model built to fit, state renamed to it

Accepted layouts, for any architecture the zoo can express (MLPs of any widths and depth, the small CNN
with any channel counts, LeNets, ResNet20/56, VGG11/16-bn):

- the zoo's own names (``fc1.weight``, ``conv2.weight``, or ResNet's ``layer1.0.conv1.weight``);
- ``nn.Sequential`` indices (``1.weight``), as the zoo numbered its layers before it named them;
- other names for the same layers in the same order: ``fc1/fc2/fc3`` of a class-style MLP,
  ``features.N`` / ``classifier.N`` of a VGG-style net, ``conv1``/``fc1`` of a LeNet class;
- any of these under a ``module.`` (DataParallel), ``_orig_mod.`` (torch.compile) or ``model.`` prefix.

Names are matched by position: the file's layers (a key's part before its last dot) are paired in
saved order with the zoo model's, and each pair must hold the same tensors (weight, bias, running
statistics) of the same shapes. torch.save keeps a state_dict's order, which is the order the layers
were created in, so a network defined layer by layer matches whatever its attribute names.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from ..zoo.layers import FILE_KEYS, file_layer_names
from ..zoo.models import MODELS, build_model, compatible_models
from .data import dataset_shapes, datasets_shaped

__all__ = ["Match", "OtherData", "file_layer_names", "file_masks", "file_state", "fits_other_data", "infer_options",
           "keep_file_keys", "match_state_dict", "named_as_file", "strip_prefixes"]

_PREFIXES = ("module.", "_orig_mod.", "model.")


@dataclass(frozen=True)
class Match:
    """How well a zoo architecture fits a state_dict: the mapping (file key -> zoo key) when it fits."""

    name: str
    options: dict
    mapping: dict[str, str] | None
    mismatch: str  # the first tensor that does not fit, in words ("" when it fits)
    misfits: int  # tensors that do not fit (a ranking of near misses)


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Unwrap 'module.', '_orig_mod.' and 'model.' while every key carries the same one."""
    changed = True
    while changed and state:
        changed = False
        for prefix in _PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return state


def infer_options(name: str, state: dict[str, torch.Tensor]) -> dict:
    """Build options read off the tensors: an MLP's hidden widths, a CNN's channel counts."""
    if name == "mlp":
        outs = [int(v.shape[0]) for k, v in state.items() if k.endswith("weight") and v.ndim == 2]
        return {"widths": tuple(outs[:-1])} if len(outs) >= 2 else {}
    if name == "cnn":
        chans = [int(v.shape[0]) for k, v in state.items() if k.endswith("weight") and v.ndim == 4]
        return {"channels": tuple(chans)} if chans else {}
    return {}


def _norm_note(groups: list[tuple[str, list[str]]]) -> str:
    """" (3 of them batch norms)": a ResNet's file holds a batch norm beside every convolution, and a count of
    "layers with tensors" that includes them reads as far more layers than the network has."""
    norms = sum("running_mean" in leaves for _, leaves in groups)
    return f" ({norms} of them batch norms)" if norms else ""


def _groups(keys) -> list[tuple[str, list[str]]]:
    """[(layer path, [key suffixes in order])] in the keys' order."""
    out: list[tuple[str, list[str]]] = []
    index: dict[str, int] = {}
    for k in keys:
        path, _, leaf = k.rpartition(".")
        if path not in index:
            index[path] = len(out)
            out.append((path, []))
        out[index[path]][1].append(leaf)
    return out


def align(state: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> tuple[dict[str, str] | None, str, int]:
    """(file key -> ref key, '', 0) when the layers pair up in order; else (None, first misfit, misfit count)."""
    if set(state) == set(ref) and all(tuple(state[k].shape) == tuple(ref[k].shape) for k in ref):
        return {k: k for k in ref}, "", 0
    mine, theirs = _groups(state), _groups(ref)
    mapping: dict[str, str] = {}
    first, misfits = "", abs(len(mine) - len(theirs))
    if len(mine) != len(theirs):
        first = (f"the file holds {len(mine)} layer{'s' if len(mine) != 1 else ''} with tensors{_norm_note(mine)}, "
                 f"the architecture {len(theirs)}{_norm_note(theirs)}")
    for (mp, ms), (tp, ts) in zip(mine, theirs):
        for leaf in dict.fromkeys(ms + ts):
            fk, rk = f"{mp}.{leaf}" if mp else leaf, f"{tp}.{leaf}" if tp else leaf
            if leaf not in ms or leaf not in ts:
                misfits += 1
                first = first or (f"{fk} has no counterpart in the architecture" if leaf in ms
                                  else f"the architecture's {rk} is missing from the file")
            elif tuple(state[fk].shape) != tuple(ref[rk].shape):
                misfits += 1
                first = first or (f"{fk} is {tuple(state[fk].shape)} in the file, but its place in the "
                                  f"architecture ({rk}) takes {tuple(ref[rk].shape)}")
            else:
                mapping[fk] = rk
    if misfits:
        return None, first, misfits
    return mapping, "", 0


def _try(name: str, state: dict[str, torch.Tensor], record, options: dict | None) -> Match:
    opts = infer_options(name, state) if options is None else dict(options)
    try:
        # shapes only: nothing is allocated (and widths read off another network's tensors may be 0: no warning)
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            ref = build_model(name, record.input_shape, record.num_classes, **opts).state_dict()
    except (ValueError, TypeError, RuntimeError) as exc:
        return Match(name, opts, None, f"{name} cannot be built for these shapes ({exc})", 10**9)
    mapping, first, misfits = align(state, ref)
    return Match(name, opts, mapping, first, misfits)


def match_state_dict(state: dict[str, torch.Tensor], model_name: str, record,
                     model_options: dict | None = None) -> tuple[Match, Match | None]:
    """(the match for model_name, the nearest other zoo architecture when model_name does not fit).

    model_options, when given, fix the build options; otherwise they are read off the tensors."""
    state = strip_prefixes(state)
    chosen = _try(model_name, state, record, model_options)
    if chosen.mapping is not None:
        return chosen, None
    others = [m for m in ranked_matches(state, record) if m.name != model_name]
    return chosen, (others[0] if others else None)


def ranked_matches(state: dict[str, torch.Tensor], record, first: str | None = None) -> list[Match]:
    """Every zoo architecture that takes record's inputs, matched against the state_dict, nearest first: those that
    fit (first, when given, before the zoo's order), then those whose first layer is of the file's kind (a
    convolution or a Linear layer: a ResNet-32's weights are nearer a ResNet-20 than LeNet-300-100, although fewer
    tensors are off in the latter), then by the difference in depth (layers and batch norms), then by the count of
    tensors off."""
    state = strip_prefixes(state)
    weights, norms = _layer_weights(state), _norms(state)
    conv = bool(weights) and weights[0].ndim == 4
    names = compatible_models(tuple(record.input_shape))
    matches = [m for m in (_try(n, state, record, None) for n in names) if m.misfits < 10**9]
    order = {n: (n != first, i) for i, n in enumerate(names)}

    def distance(m: Match) -> tuple:
        if m.mapping is not None:
            return (0, order[m.name])
        # then the depth, layers and batch norms: a count of tensors off favours the shallow architectures, which
        # have few tensors to be off, and the mlp and cnn take as many layers as the file has
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            ref = build_model(m.name, record.input_shape, record.num_classes, **m.options).state_dict()
        depth = abs(len(_layer_weights(ref)) - len(weights)) + abs(_norms(ref) - norms)
        return (1, MODELS[m.name].needs_image != conv, depth, m.misfits, order[m.name])

    return sorted(matches, key=distance)


def _norms(state: dict[str, torch.Tensor]) -> int:
    return sum(k.endswith("running_mean") for k in state)


def _layer_weights(state: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """The layers' weights (2-D and 4-D tensors named '...weight'), in saved order."""
    return [v for k, v in state.items() if k.endswith("weight") and v.ndim in (2, 4)]


class _Shapes(NamedTuple):  # what _try reads of a data set
    input_shape: tuple[int, ...]
    num_classes: int


@dataclass(frozen=True)
class OtherData:
    """A state_dict that fits a zoo architecture on the inputs of other data sets than the one chosen."""

    match: Match
    input_shape: tuple[int, ...]
    num_classes: int
    datasets: list[str]  # the built-in data sets of that shape and class count (none: only a user's own data)


def fits_other_data(state: dict[str, torch.Tensor], model_name: str, record) -> OtherData | None:
    """The architecture (model_name first, then the zoo's order) and the built-in input shape that the file fits,
    with its own output count as the class count, when it fits nothing on `record`: weights trained on 28x28 digits
    and given with the 8x8 ones are for another data set, not another architecture."""
    state = strip_prefixes(state)
    weights = _layer_weights(state)
    if not weights:
        return None
    classes = int(weights[-1].shape[0])
    for name in [model_name] + [n for n in MODELS if n != model_name]:
        for shape in dataset_shapes():
            if (shape, classes) == (tuple(record.input_shape), record.num_classes):
                continue  # what match_state_dict tried
            if name not in compatible_models(shape):
                continue
            match = _try(name, state, _Shapes(shape, classes), None)
            if match.mapping is not None:
                return OtherData(match, shape, classes, datasets_shaped(shape, classes))
    return None


def build_matched(match: Match, state: dict[str, torch.Tensor], record) -> nn.Module:
    """The zoo model of a fitting match, its weights loaded from the (prefix-stripped) state."""
    state = strip_prefixes(state)
    model = build_model(match.name, record.input_shape, record.num_classes, **match.options)
    model.load_state_dict({match.mapping[k]: v for k, v in state.items() if k in match.mapping}, strict=True)
    return model


def named_as_file(model: nn.Module, mapping: dict[str, str]) -> nn.Module | None:
    """The same layer objects, run in the same order, under the file's own names, or None when that cannot be done.

    Why: a pruned state_dict downloaded for an upload should load into the user's own network, and charts should
    call its layers what the user's code calls them (``features.0``, ``head``, ``1``), not the zoo's ``conv1``.
    A dotted name becomes nested ``nn.Sequential`` containers (``features`` holding ``0``), which run in the
    order they were added. Layers without weights (ReLU, pooling, flatten) carry no key, so they keep the zoo's
    name in the container of the layer before them.

    None: the zoo model is not one flat sequence of layers (a ResNet: the file's names are then already the
    zoo's), or the file's containers interleave (``a.0``, ``b.0``, ``a.1``), which no nesting can run in order.
    mapping: file key -> zoo key (Match.mapping), covering every tensor of the model.
    """
    if type(model) is not nn.Sequential or any(len(list(m.children())) for m in model.children()):
        return None
    prefix_of = {}  # zoo layer name -> the file's name for it
    for file_key, zoo_key in mapping.items():
        zoo_layer, file_layer = zoo_key.rsplit(".", 1)[0], file_key.rsplit(".", 1)[0]
        if prefix_of.setdefault(zoo_layer, file_layer) != file_layer:
            return None
    root = nn.Sequential()
    here = root  # the container of the last layer placed
    for name, layer in model.named_children():
        if name not in prefix_of:  # no weights: beside the layer before it, under its zoo name
            if name in here._modules:
                return None
            here.add_module(name, layer)
            continue
        *path, leaf = prefix_of[name].split(".")
        box = root
        for part in path:
            inner = box._modules.get(part)
            if inner is None:
                inner = nn.Sequential()
                box.add_module(part, inner)
            elif not isinstance(inner, nn.Sequential) or next(reversed(box._modules)) != part:
                return None  # a container left earlier, or a layer's own name: it cannot run in this order
            box = inner
        if leaf in box._modules:
            return None
        box.add_module(leaf, layer)
        here = box
    if set(root.state_dict()) != set(mapping):
        return None
    return root


def keep_file_keys(model: nn.Module, mapping: dict[str, str]) -> nn.Module:
    """The model, remembering the uploaded file's own key for each of its tensors (mapping: file key -> zoo key).

    For a model that has to run under the zoo's names (a ResNet saved under other names: named_as_file cannot
    rebuild it), so that its pruned state_dict and masks are still written under the file's keys (file_state,
    file_masks) and load into the user's own network. Copies of the model (the pruned one) keep it."""
    setattr(model, FILE_KEYS, {zoo: file for file, zoo in mapping.items()})
    return model


def file_state(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` (the model's keys) under the uploaded file's keys where the model remembers them; else as it is."""
    keys = getattr(model, FILE_KEYS, None)
    return {keys.get(k, k): v for k, v in state.items()} if keys else state


def file_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Masks keyed by layer name, under the file's layer names (its key for the layer's weight, less ".weight")."""
    keys = getattr(model, FILE_KEYS, None)
    if not keys:
        return masks
    return {keys.get(f"{name}.weight", f"{name}.weight").rsplit(".", 1)[0]: m for name, m in masks.items()}

