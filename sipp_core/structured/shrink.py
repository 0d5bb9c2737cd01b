"""Make the masked network physically smaller: real Conv2d, BatchNorm and Linear modules with fewer channels,
computing what the masked network computes, to float32 round-off.

Per layer (see graph.py for links):
- a linked producer loses its all-zero filters, with their bias and batch-norm entries;
- a layer keeps only the input channels it still reads; when the channels that reach it are more than
  it reads (a residual stream, the image's colour channels, features after a flatten), it gathers the
  subset it needs (an index_select in front of the layer);
- a removed filter still leaves a constant behind (its bias, through batch norm and the activation).
  Where a consumer reads that constant, its contribution is folded into the consumer's bias. With zero
  padding a convolution's border positions see fewer taps of it, so there the contribution is a fixed
  map over output positions (a buffer added after the convolution), not one number per filter.
Filters of layers without a link (a residual stream, the classifier) are kept at full width.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ..zoo.layers import capture_inputs, layer_label, prunable_layers
from .graph import Structure


class ShrunkConv2d(nn.Conv2d):
    """A Conv2d that may first gather a subset of its input channels and add a fixed map of folded constants."""

    def __init__(self, *args, in_index: torch.Tensor | None = None, bias_map: torch.Tensor | None = None, **kw):
        super().__init__(*args, **kw)
        self.register_buffer("in_index", in_index)
        self.register_buffer("bias_map", bias_map)

    def forward(self, x):
        if self.in_index is not None:
            x = x.index_select(1, self.in_index)
        y = super().forward(x)
        return y if self.bias_map is None else y + self.bias_map


class ShrunkLinear(nn.Linear):
    """A Linear that may first gather a subset of its input features."""

    def __init__(self, *args, in_index: torch.Tensor | None = None, **kw):
        super().__init__(*args, **kw)
        self.register_buffer("in_index", in_index)

    def forward(self, x):
        if self.in_index is not None:
            x = x.index_select(-1, self.in_index)
        return super().forward(x)


@dataclass(frozen=True)
class Widths:
    """One layer's shape before and after: input channels (features for Linear) and filters."""

    name: str
    kind: str
    in_before: int
    in_after: int
    out_before: int
    out_after: int
    gathered: bool  # reads a subset of the channels that reach it
    folded: int  # removed channels whose constant went into this layer's bias
    weight_shape: tuple[int, ...] = ()  # the original weight's shape
    file_name: str = ""  # the uploaded file's name for the layer, where it differs (zoo.layers.LayerInfo.file_name)

    @property
    def label(self) -> str:
        """"conv2 · Conv2d 6→16, 5x5": the layer as it was before pruning (named as LayerInfo.label names it)."""
        return layer_label(self.file_name or self.name, self.kind, self.weight_shape)


def _nonzero_rows(w: torch.Tensor) -> torch.Tensor:
    return (w.reshape(w.shape[0], -1) != 0).any(dim=1)


def _nonzero_columns(w: torch.Tensor) -> torch.Tensor:
    return (w.transpose(0, 1).reshape(w.shape[1], -1) != 0).any(dim=1)


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _slice_norm(norm: nn.Module, keep: torch.Tensor) -> nn.Module:
    new = copy.deepcopy(norm)
    with torch.no_grad():
        for attr in ("weight", "bias"):
            p = getattr(norm, attr, None)
            if p is not None:
                setattr(new, attr, nn.Parameter(p.detach()[keep].clone(), requires_grad=p.requires_grad))
        for attr in ("running_mean", "running_var"):
            b = getattr(norm, attr, None)
            if b is not None:
                setattr(new, attr, b[keep].clone())
    new.num_features = int(keep.numel())
    return new


def _folded(layer: nn.Module, x_one: torch.Tensor, fold: torch.Tensor) -> torch.Tensor:
    """The contribution of the input channels `fold` (their constant values, from one point) to the layer's
    output, without bias: (F,) for a Linear, (F, H_out, W_out) for a convolution."""
    x = torch.zeros_like(x_one)
    x[:, fold] = x_one[:, fold]
    with torch.no_grad():
        if isinstance(layer, nn.Linear):
            return nn.functional.linear(x, layer.weight)[0]
        return layer._conv_forward(x, layer.weight, None)[0]


def shrink(masked: nn.Module, structure: Structure, example: torch.Tensor) -> tuple[nn.Module, list[Widths]]:
    """(smaller network, widths per layer). `example` holds at least one input point (to read the constants)."""
    layers = prunable_layers(masked)
    names = list(layers)
    kept_out = {}
    for n, m in layers.items():
        link = structure.producer_link(n)
        rows = _nonzero_rows(m.weight.detach())
        if link is None or not rows.any():
            kept_out[n] = torch.arange(m.weight.shape[0])
        else:
            kept_out[n] = torch.nonzero(rows).flatten()
    with capture_inputs(masked, names) as seen:
        masked.eval()(example[:1])
    new = copy.deepcopy(masked)
    widths = []
    for n in names:
        m = layers[n]
        w = m.weight.detach()
        link = structure.links.get(n)
        c_in = w.shape[1]
        if link is not None:
            channels = kept_out[link.producer]
            avail = (channels[:, None] * link.spread + torch.arange(link.spread)[None, :]).flatten()
        else:
            avail = torch.arange(c_in)
        needed = _nonzero_columns(w)
        present = torch.zeros(c_in, dtype=torch.bool)
        present[avail] = True
        fold = needed & ~present
        use = needed & present
        if not use.any():  # keep one channel: a layer with no input at all cannot be built
            use[avail[0]] = True
        use_idx = torch.nonzero(use).flatten()
        position = torch.full((c_in,), -1, dtype=torch.long)
        position[avail] = torch.arange(len(avail))
        gather = None if len(use_idx) == len(avail) else position[use_idx]
        rows = kept_out[n]
        weight = w[rows][:, use_idx].clone()
        bias = None if m.bias is None else m.bias.detach()[rows].clone()
        bias_map = None
        if fold.any():
            extra = _folded(m, seen[n].reshape(1, *seen[n].shape[1:]), torch.nonzero(fold).flatten())[rows]
            flat = extra.reshape(extra.shape[0], -1)
            if (flat == flat[:, :1]).all():
                bias = flat[:, 0].clone() if bias is None else bias + flat[:, 0]
            else:
                bias_map = extra.clone()
        # A new layer draws random initial weights (overwritten below): from a forked generator, so that pruning
        # leaves the caller's random state as it found it (a notebook's next cell draws what it would have drawn)
        with torch.random.fork_rng(devices=[]):
            if isinstance(m, nn.Linear):
                small = ShrunkLinear(len(use_idx), len(rows), bias=bias is not None, in_index=gather)
            else:
                small = ShrunkConv2d(len(use_idx), len(rows), m.kernel_size, stride=m.stride, padding=m.padding,
                                     dilation=m.dilation, bias=bias is not None, padding_mode=m.padding_mode,
                                     in_index=gather, bias_map=bias_map)
        with torch.no_grad():
            small.weight.copy_(weight)
            if bias is not None:
                small.bias.copy_(bias)
        small = small.to(dtype=w.dtype, device=w.device)
        _set_module(new, n, small)
        link_out = structure.producer_link(n)
        if link_out is not None:
            for between in link_out.between:
                norm = masked.get_submodule(between)
                if not isinstance(norm, (nn.BatchNorm1d, nn.BatchNorm2d)):
                    continue
                if norm.num_features == w.shape[0]:
                    _set_module(new, between, _slice_norm(norm, rows))
                else:  # a batch norm after the flatten: one entry per feature
                    spread = link_out.spread
                    _set_module(new, between, _slice_norm(norm, (rows[:, None] * spread + torch.arange(spread)).flatten()))
        widths.append(Widths(n, "linear" if isinstance(m, nn.Linear) else "conv2d", c_in, len(use_idx),
                             w.shape[0], len(rows), gather is not None, int(fold.sum()), tuple(w.shape)))
    return new.eval(), widths
