"""Which prunable layer feeds which: the links along which a removed filter can really disappear.

A *link* joins a producer layer P (Linear or Conv2d, groups=1) to the one consumer layer C that reads
its output, when everything between them works channel by channel (batch norm, elementwise
activations, pooling, dropout, a flatten: as modules, functions or tensor methods) and nothing else reads
any tensor on the way. Along a link,
P's filter j and C's input channel j (or, after a flatten, C's block of input features j*spread ...
(j+1)*spread - 1) are one and the same channel, so both can be deleted together.

A layer whose output also goes elsewhere (a residual stream, a concatenation, a second consumer)
has no link: its filters are kept at full width, and its consumers gather the input channels they
still read. The graph is read with torch.fx; a model torch.fx cannot trace has no links at all.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import fx, nn

from ..zoo.layers import is_prunable, prunable_layers

# modules that act on each channel separately: channel j out depends only on channel j in
CHANNELWISE = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid,
    nn.Tanh, nn.Hardtanh, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Dropout,
    nn.Dropout2d, nn.Identity,
)
F = torch.nn.functional
# the same as functions and tensor methods, as a forward written with them calls them (F.relu(x), x.relu()); their
# other arguments must be plain values (a kernel size, a probability), not tensors
CHANNELWISE_FUNCTIONS = (
    torch.relu, F.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, torch.sigmoid, F.sigmoid, torch.tanh, F.tanh,
    F.hardtanh, F.max_pool2d, torch.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d,
    F.adaptive_max_pool2d, F.dropout, F.dropout2d,
)
CHANNELWISE_METHODS = ("relu", "sigmoid", "tanh")
SHAPE_QUERIES = ("size", "dim")  # x.size(0) beside x.view(x.size(0), -1) reads x's shape, not its values


@dataclass(frozen=True)
class Link:
    producer: str  # the layer whose filters are the channels
    consumer: str  # the one layer that reads them
    between: tuple[str, ...]  # modules in between, in order (batch norms among them are sliced with the filters)
    flattened: bool  # a flatten sits in between: each channel is `spread` consecutive input features of the consumer
    spread: int  # consumer input features per producer channel (1 without a flatten)


@dataclass(frozen=True)
class Structure:
    links: dict[str, Link]  # by consumer name
    traced: bool
    reason: str = ""  # why the graph could not be read (when not traced)

    def producer_link(self, producer: str) -> Link | None:
        for link in self.links.values():
            if link.producer == producer:
                return link
        return None


def _is_flatten(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """nn.Flatten(), torch.flatten(x, 1), x.flatten(1), x.view(x.size(0), -1), x.reshape(x.shape[0], -1)."""
    if node.op == "call_module" and isinstance(modules[node.target], nn.Flatten):
        m = modules[node.target]
        return m.start_dim == 1 and m.end_dim == -1
    if (node.op == "call_function" and node.target is torch.flatten) or (
            node.op == "call_method" and node.target == "flatten"):
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
        return start == 1 and end == -1
    if node.op == "call_method" and node.target in ("view", "reshape") and not node.kwargs:
        shape = node.args[1:]
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        # (batch, -1) only: LeNet's classic x.view(-1, 16 * 5 * 5) names the width in the user's code, which a
        # network with fewer channels would still ask for, so its producer keeps its channels
        return len(shape) == 2 and shape[1] == -1 and shape[0] != -1
    return False


def _plain_arguments(node: fx.Node) -> bool:
    """No tensor among a call's arguments besides its input (a shape query of the input is no tensor)."""
    rest = list(node.args[1:]) + list(node.kwargs.values())
    return not any(isinstance(a, fx.Node) for a in rest)


def _is_channelwise(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], CHANNELWISE)
    if node.op == "call_function":
        return node.target in CHANNELWISE_FUNCTIONS and _plain_arguments(node)
    return node.op == "call_method" and node.target in CHANNELWISE_METHODS and _plain_arguments(node)


def _readers(node: fx.Node) -> list[fx.Node]:
    """The nodes that read a node's values (its shape queries left out)."""
    return [u for u in node.users if not (u.op == "call_method" and u.target in SHAPE_QUERIES)
            and not (u.op == "call_function" and u.target is getattr and u.args[1:] == ("shape",))]


def find_links(model: nn.Module) -> Structure:
    """The links of `model` (see the module docstring); a model torch.fx cannot trace gets none."""
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as exc:  # any tracing failure only means: no physical removal for this model
        return Structure(links={}, traced=False, reason=f"its forward could not be traced ({type(exc).__name__})")
    modules = dict(model.named_modules())
    prunable = set(prunable_layers(model))
    links = {}
    for node in graph.nodes:
        if node.op != "call_module" or node.target not in prunable or not node.args:
            continue
        between, flattened = [], False
        current = node.args[0]
        while isinstance(current, fx.Node) and len(_readers(current)) == 1:
            if current.op == "call_module" and current.target in prunable:
                producer = modules[current.target]
                spread = _spread(producer, modules[node.target], flattened)
                if spread:
                    links[node.target] = Link(current.target, node.target, tuple(reversed(between)), flattened, spread)
                break
            if _is_flatten(current, modules):
                if flattened:
                    break
                flattened = True
            elif not _is_channelwise(current, modules):
                break
            if current.op == "call_module":
                between.append(current.target)
            current = current.args[0] if current.args else None
    return Structure(links=links, traced=True)


def _spread(producer: nn.Module, consumer: nn.Module, flattened: bool) -> int:
    """Consumer input features per producer channel, or 0 when the shapes do not line up channel by channel."""
    if not is_prunable(producer) or not is_prunable(consumer):
        return 0
    filters = producer.weight.shape[0]
    inputs = consumer.weight.shape[1]
    if not flattened:
        return 1 if inputs == filters else 0
    if isinstance(consumer, nn.Linear) and inputs % filters == 0:
        return inputs // filters
    return 0
