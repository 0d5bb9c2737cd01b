"""The model zoo: networks built by name for a data set's input shape and classes.

Every block uses its own ``nn.ReLU`` / ``nn.MaxPool2d`` module (no functional
ReLU) so that forward hooks see every nonlinearity: the sensitivity and the
nonsmoothness sweeps both rely on that.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..errors import BadInput


class ModelDataMismatch(BadInput):
    """The chosen model cannot take the chosen data set's inputs."""


def _flat(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


# A module's name in the zoo's sequential models: its kind and its rank among the modules of that kind.
_KIND_NAMES = ((nn.Linear, "fc"), (nn.Conv2d, "conv"), (nn.BatchNorm2d, "bn"), (nn.ReLU, "relu"),
               (nn.MaxPool2d, "pool"), (nn.Flatten, "flatten"))


def named_sequential(*modules: nn.Module) -> nn.Sequential:
    """nn.Sequential whose modules are named by kind and rank ("fc1", "conv2", "relu3"), not by position.

    Why: the name is what every chart, table, CSV and exported state_dict calls a layer ("fc1 · Linear
    784→300", "fc1.weight"); a position ("1", "3", "5") says nothing to a class. Parameters are created in
    the same order as before, so a seed gives the same weights; checkpoints saved with the positional
    names still load (checkpoints.read_checkpoint renames them by position).
    """
    counts: dict[str, int] = {}
    named = []
    for m in modules:
        stem = next((n for t, n in _KIND_NAMES if isinstance(m, t)), type(m).__name__.lower())
        counts[stem] = counts.get(stem, 0) + 1
        named.append((stem if stem == "flatten" and counts[stem] == 1 else f"{stem}{counts[stem]}", m))
    return nn.Sequential(OrderedDict(named))


def positional_names(model: nn.Module) -> dict[str, str]:
    """For a named_sequential model: state_dict key -> the key the same tensor has when the modules are
    numbered by position ("fc1.weight" -> "1.weight"), as the zoo numbered them before. {} for other models."""
    if not isinstance(model, nn.Sequential):
        return {}
    position = {name: str(i) for i, name in enumerate(model._modules)}
    out = {}
    for key in model.state_dict():
        head, _, rest = key.partition(".")
        out[key] = f"{position[head]}.{rest}"
    return out


def mlp(input_shape, num_classes, widths=(64, 64)):
    """Fully connected ReLU net; tiny widths (e.g. (4,)) are meant for teaching."""
    widths = tuple(int(w) for w in widths)
    if not widths or any(w < 1 for w in widths):
        raise ValueError(f"widths must be a non-empty list of positive integers, got {widths}")
    layers: list[nn.Module] = [nn.Flatten()]
    prev = _flat(input_shape)
    for w in widths:
        layers += [nn.Linear(prev, w), nn.ReLU()]
        prev = w
    layers.append(nn.Linear(prev, num_classes))
    return named_sequential(*layers)


def lenet300(input_shape, num_classes):
    """LeNet-300-100 (LeCun et al. 1998): two hidden layers of 300 and 100 units."""
    return mlp(input_shape, num_classes, widths=(300, 100))


def lenet5(input_shape, num_classes):
    """LeNet-5 with ReLU and max pooling (6@5x5 pad 2, 16@5x5, 120, 84)."""
    c, h, w = input_shape
    side = lambda n: ((n // 2) - 4) // 2  # conv5 pad2 keeps n; pool; conv5 -4; pool
    return named_sequential(
        nn.Conv2d(c, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * side(h) * side(w), 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, num_classes),
    )


def cnn(input_shape, num_classes, channels=(16, 32)):
    """A small conv + ReLU + max-pool net: quick to train, easy to look at."""
    c, h, w = input_shape
    layers: list[nn.Module] = []
    prev = c
    for ch in channels:
        layers += [nn.Conv2d(prev, ch, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        prev = ch
        h, w = h // 2, w // 2
    layers += [nn.Flatten(), nn.Linear(prev * h * w, num_classes)]
    return named_sequential(*layers)


class BasicBlock(nn.Module):
    """CIFAR ResNet block (He et al. 2016) with option-A shortcuts (stride + zero channel padding).

    Option A has no parameters in the shortcut, as in the paper's CIFAR ResNets,
    so every prunable layer is a 3x3 convolution (or the final Linear).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu2 = nn.ReLU()
        self.stride = stride
        self.pad = out_ch - in_ch

    def shortcut(self, x):
        if self.stride == 1 and self.pad == 0:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        return nn.functional.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, input_shape, num_classes, depth: int):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(input_shape[0], 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        blocks, in_ch = [], 16
        for stage, ch in enumerate((16, 32, 64)):
            for i in range(n):
                blocks.append(BasicBlock(in_ch, ch, 2 if (stage > 0 and i == 0) else 1))
                in_ch = ch
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.layers(self.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


_VGG_CFG = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
}


def vgg_bn(input_shape, num_classes, depth: int):
    """CIFAR VGG with batch norm: five 2x2 pools take 32x32 to 1x1, then one Linear."""
    layers: list[nn.Module] = []
    prev = input_shape[0]
    for v in _VGG_CFG[depth]:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(prev, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU()]
            prev = v
    side = (input_shape[1] // 32) * (input_shape[2] // 32)
    return named_sequential(*layers, nn.Flatten(), nn.Linear(512 * side, num_classes))


@dataclass(frozen=True)
class ZooEntry:
    description: str
    builder: Callable[..., nn.Module]
    needs_image: bool
    min_side: int  # smallest H and W the architecture accepts


MODELS: dict[str, ZooEntry] = {
    "lenet300": ZooEntry("LeNet-300-100: fully connected 300-100", lenet300, False, 0),
    "lenet5": ZooEntry("LeNet-5: two 5x5 conv + max-pool, three FC layers", lenet5, True, 12),
    "mlp": ZooEntry("MLP with chosen widths (tiny ones for teaching)", mlp, False, 0),
    "cnn": ZooEntry("Small CNN: two 3x3 conv + ReLU + max-pool, one FC layer", cnn, True, 4),
    "resnet20": ZooEntry("CIFAR ResNet-20 (option-A shortcuts)", lambda s, k: CifarResNet(s, k, 20), True, 8),
    "resnet56": ZooEntry("CIFAR ResNet-56 (option-A shortcuts)", lambda s, k: CifarResNet(s, k, 56), True, 8),
    "vgg11_bn": ZooEntry("CIFAR VGG-11 with batch norm", lambda s, k: vgg_bn(s, k, 11), True, 32),
    "vgg16_bn": ZooEntry("CIFAR VGG-16 with batch norm", lambda s, k: vgg_bn(s, k, 16), True, 32),
}


def compatible_models(input_shape: tuple[int, ...]) -> list[str]:
    return [n for n in MODELS if _incompatibility(n, input_shape) is None]


def _incompatibility(name: str, input_shape: tuple[int, ...]) -> str | None:
    entry = MODELS[name]
    if entry.needs_image:
        if len(input_shape) != 3:
            return f"{name} needs image inputs (channels, height, width); this data set has vectors of shape {tuple(input_shape)}"
        if min(input_shape[1:]) < entry.min_side:
            return f"{name} needs images of at least {entry.min_side}x{entry.min_side}; this data set has {input_shape[1]}x{input_shape[2]}"
    return None


def check_compatible(name: str, input_shape: tuple[int, ...]) -> None:
    """Raise a clear error for an unknown model or one that cannot take these inputs."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")
    problem = _incompatibility(name, tuple(input_shape))
    if problem:
        ok = compatible_models(tuple(input_shape))
        raise ModelDataMismatch(problem, f"choose one of the models that fit this data set: {', '.join(ok)}")


def build_model(name: str, input_shape, num_classes: int, *, seed: int | None = None, **options) -> nn.Module:
    """A freshly initialised zoo model for inputs of `input_shape` and `num_classes` classes.

    >>> build_model("lenet300", (1, 28, 28), 10)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])

    Raises:
        ValueError: unknown model, unknown option, or a model/data mismatch (ModelDataMismatch).
    """
    input_shape = tuple(int(d) for d in input_shape)
    check_compatible(name, input_shape)
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    allowed = {"mlp": {"widths"}, "cnn": {"channels"}}.get(name, set())
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(
            f"unknown option(s) {sorted(unknown)} for model {name!r}; it accepts {sorted(allowed) or 'none'}"
        )
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return MODELS[name].builder(input_shape, num_classes, **options)
    return MODELS[name].builder(input_shape, num_classes, **options)
