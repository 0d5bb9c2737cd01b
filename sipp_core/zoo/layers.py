"""Which layers SiPP can prune, and what it needs to know about each.

A prunable layer is an ``nn.Linear`` or an ``nn.Conv2d`` with ``groups == 1``
(docs/sipp.md §1). Every other module that owns a weight is reported as
left dense, so nothing is silently mis-pruned. Layers are keyed by their
qualified module name ("features.0"), never by position.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .models import ModelDataMismatch


@dataclass(frozen=True)
class LayerInfo:
    """Shape facts of one prunable layer (docs/sipp.md §1 and §3)."""

    name: str
    kind: str  # "linear" or "conv2d"
    weight_shape: tuple[int, ...]
    out_units: int  # F: neurons or filters
    fan_in: int  # J: in_features, or C_in * kh * kw in F.unfold order
    kernel_size: int  # k_l = kh * kw (1 for Linear)
    patches: int  # P_l = H_out * W_out (1 for Linear)
    file_name: str = ""  # the uploaded file's name for the layer, where it differs from the module's (file_layer_names)

    @property
    def num_weights(self) -> int:
        return self.out_units * self.fan_in

    @property
    def label(self) -> str:
        """What charts, tables, CSV and JSON call the layer: "fc1 · Linear 784→300"; the file's name for it where
        the network runs under the app's names but was uploaded under others (the user knows it by those)."""
        return layer_label(self.file_name or self.name, self.kind, self.weight_shape)


FILE_KEYS = "sipp_file_keys"  # a model's attribute: zoo key -> the uploaded file's key (io.state_dicts.keep_file_keys)


def file_layer_names(model: nn.Module) -> dict[str, str]:
    """Layer name -> the uploaded file's name for it (its weight's key, less ".weight"), for a model that runs under
    the zoo's names and remembers the file's (io.state_dicts.keep_file_keys); {} for any other model."""
    keys = getattr(model, FILE_KEYS, None) or {}
    return {zoo.rsplit(".", 1)[0]: file.rsplit(".", 1)[0] for zoo, file in keys.items() if zoo.endswith(".weight")}


ROOT_NAME = "(whole model)"  # a model that is itself one Linear has the empty qualified name


def layer_label(name: str, kind: str, weight_shape: tuple[int, ...]) -> str:
    """Module name and shape in one string: "fc1 · Linear 784→300", "conv2 · Conv2d 6→16, 5x5".

    kind is "linear" or "conv2d" (LayerInfo.kind); weight_shape is the module's weight shape
    (F, J) or (F, C_in, kh, kw). A layer always keeps its qualified module name (for a Sequential
    "features.3"), so a label never loses what the layer is called in the user's own code.
    """
    shape = tuple(int(v) for v in weight_shape)
    name = name or ROOT_NAME
    if kind == "linear" and len(shape) == 2:
        return f"{name} · Linear {shape[1]}→{shape[0]}"
    if kind == "conv2d" and len(shape) == 4:
        return f"{name} · Conv2d {shape[1]}→{shape[0]}, {shape[2]}x{shape[3]}"
    return f"{name} · {kind} {'x'.join(map(str, shape))}"


def module_label(name: str, module: nn.Module) -> str:
    """layer_label for a prunable module as it sits in the model."""
    kind = "linear" if isinstance(module, nn.Linear) else "conv2d"
    return layer_label(name, kind, tuple(module.weight.shape))


def is_prunable(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    return isinstance(module, nn.Conv2d) and module.groups == 1


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Qualified name -> module for every layer SiPP prunes, in forward order of definition."""
    return {name: m for name, m in model.named_modules() if is_prunable(m)}


def left_dense(pairs) -> str:
    """The layers left dense in one sentence, one clause per reason in first-seen order: "Left dense
    (normalisation parameters are not pruned): bn1, layers.0.bn1, …" (a ResNet20's 19 batch norms would otherwise
    repeat the same reason 19 times). pairs: (layer name, reason), as dense_layers gives them."""
    by_reason: dict[str, list[str]] = {}
    for name, why in pairs:
        by_reason.setdefault(why, []).append(name)
    return "Left dense " + "; ".join(f"({why}): {', '.join(names)}" for why, names in by_reason.items()) + "."


def dense_layers(model: nn.Module) -> list[tuple[str, str]]:
    """(name, reason) for modules that own parameters but are left dense; named as the uploaded file names them,
    for a network that runs under the zoo's names but was uploaded under others (as LayerInfo.label does)."""
    in_file = file_layer_names(model)
    out = []
    for name, m in model.named_modules():
        if is_prunable(m):
            continue
        own = [n for n, _ in m.named_parameters(recurse=False)]
        if not own:
            continue
        if isinstance(m, nn.Conv2d):
            reason = f"grouped convolution (groups={m.groups}) is not supported; left dense"
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)):
            reason = "normalisation parameters are not pruned"
        else:
            # an exported program's parameters sit on plain holders that remember the exported module's type
            kind = getattr(m, "exported_type", None) or type(m).__name__
            if "Norm" in kind.rpartition(".")[2]:
                reason = f"{kind}: normalisation parameters are not pruned"
            else:
                reason = f"{kind} is not a supported layer (Linear, Conv2d groups=1); left dense"
        if not name:  # the model's own parameters (x @ self.w in its forward): named, not listed under ""
            kind = type(m).__name__
            reason = (f"parameters of {kind} itself, used by its forward, not a supported layer (Linear, Conv2d "
                      "groups=1); left dense")
            name = ", ".join(own)
        out.append((in_file.get(name, name), reason))
    return out


def conv_padded(module: nn.Conv2d, a: torch.Tensor) -> tuple[torch.Tensor, object]:
    """(input, padding) to give F.unfold / F.conv2d so they match module's own forward.

    String padding ('same', 'valid') and non-zero padding modes are applied explicitly,
    the way nn.Conv2d does it, so every consumer sees the same patches as the layer.
    """
    if module.padding_mode != "zeros":
        return F.pad(a, module._reversed_padding_repeated_twice, mode=module.padding_mode), 0
    if isinstance(module.padding, str):
        return F.pad(a, module._reversed_padding_repeated_twice), 0
    return a, module.padding


def unfold_input(module: nn.Module, a: torch.Tensor) -> torch.Tensor:
    """The layer's input as (B, J, P): J in weight.view(F, -1) order, P patches.

    A Linear layer applied to (B, ..., J) inputs sees every middle position as a patch.
    """
    if isinstance(module, nn.Linear):
        return a.reshape(a.shape[0], -1, a.shape[-1]).transpose(1, 2)  # (B, J, P)
    a, padding = conv_padded(module, a)
    return F.unfold(
        a, module.kernel_size, dilation=module.dilation, padding=padding, stride=module.stride
    )  # (B, C_in*kh*kw, H_out*W_out)


def weight_matrix(module: nn.Module) -> torch.Tensor:
    """The weight viewed as F x J (docs/sipp.md §1)."""
    return module.weight.reshape(module.weight.shape[0], -1)


class capture_inputs:
    """Context manager recording the input of the named layers during forward passes.

    A module called several times in one forward keeps its last input (no zoo model
    does this). Only forward passes run by the thread that entered the context are recorded, so
    two threads (two app sessions) hooking one shared model never see each other's inputs.

    >>> with capture_inputs(model, ["fc1"]) as inputs:
    ...     model(x)
    >>> inputs["fc1"]  # (B, in_features)
    """

    def __init__(self, model: nn.Module, names, detach: bool = True):
        self.model = model
        self.names = list(names)
        self.detach = detach
        self.inputs: dict[str, torch.Tensor] = {}
        self._handles = []

    def __enter__(self):
        modules = dict(self.model.named_modules())
        owner = threading.get_ident()
        for name in self.names:
            def hook(mod, args, name=name):
                if threading.get_ident() != owner:
                    return
                x = args[0]
                self.inputs[name] = x.detach() if self.detach else x
            self._handles.append(modules[name].register_forward_pre_hook(hook))
        return self.inputs

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()
        return False


def layer_infos(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, LayerInfo]:
    """LayerInfo for every prunable layer, using one dummy forward pass to learn P_l."""
    layers = prunable_layers(model)
    if not layers:
        return {}
    param = next(iter(layers.values())).weight
    x = torch.zeros((1, *input_shape), dtype=param.dtype, device=param.device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), capture_inputs(model, layers) as inputs:
            model(x)
    except Exception as err:  # noqa: BLE001 - any failure of this forward means the inputs do not fit the model
        text = str(err).splitlines()[0][:200] if str(err) else ""
        raise ModelDataMismatch(
            f"inputs of shape (batch, {', '.join(str(d) for d in input_shape)}) do not fit the model: "
            f"{type(err).__name__}: {text}",
            "give the model inputs of the shape it was trained on (for a Linear first layer, as many values per "
            "point as it has inputs), or the model that fits this data") from err
    finally:
        model.train(was_training)
    in_file = file_layer_names(model)
    infos = {}
    for name, m in layers.items():
        if name not in inputs:
            continue  # never called in forward: nothing to prune against
        unfolded = unfold_input(m, inputs[name])
        w = weight_matrix(m)
        k = 1 if isinstance(m, nn.Linear) else int(m.kernel_size[0] * m.kernel_size[1])
        infos[name] = LayerInfo(
            name=name,
            kind="linear" if isinstance(m, nn.Linear) else "conv2d",
            weight_shape=tuple(m.weight.shape),
            out_units=w.shape[0],
            fan_in=w.shape[1],
            kernel_size=k,
            patches=int(unfolded.shape[2]),
            file_name=in_file[name] if in_file.get(name, name) != name else "",
        )
    return infos
