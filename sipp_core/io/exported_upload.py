"""(b) An exported program (.pt2) uploaded by a user, checked (pt2_scan) and made prunable.

``ExportedProgram.module()`` is a flat graph in which Linear and Conv2d layers are function calls
(``aten.linear`` / ``aten.conv2d``), not modules, so SiPP (which finds layers by module type and hooks their
inputs) would see no prunable layer. :func:`load_exported_upload` rebuilds each such call whose weight is a
parameter used by that call only into a real ``nn.Linear`` / ``nn.Conv2d`` (same parameter objects, same qualified
names, e.g. "1.weight"), and ReLU / max-pool calls into ``nn.ReLU`` / ``nn.MaxPool2d`` modules; everything else
(batch norm, additions, matrix products from decomposed graphs) runs as exported and is left dense.
``byo.describe_model`` reports both lists. The result is a plain ``torch.fx.GraphModule`` (export's own module
refuses ``.eval()``); batch norm inside it stays in the mode it was exported in, so use exported programs for
pruning and evaluation, not retraining. A program exported for a fixed batch size runs in pieces of that size
(PerBatch).
"""
from __future__ import annotations

import io
import re
from typing import Any

import torch
from torch import nn

from ..errors import UploadError
from .pt2_scan import EXPORT_HINT, scan_pt2
from .state_dicts import keep_file_keys
from .uploads import MODEL_MAX_BYTES, check_runs_on, read_checked, safe_load_message

__all__ = ["PerBatch", "exported_types", "load_exported_upload"]


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


def _input_shapes(ep) -> list[tuple[str, ...]] | None:
    """Each user input's shape as the program fixed it ("N" for a dimension left free); None when unreadable."""
    try:
        user = [n for n in ep.graph.nodes if n.op == "placeholder" and n.name in set(ep.graph_signature.user_inputs)]
        return [tuple("N" if re.fullmatch(r"s\d+", str(d)) else str(d) for d in n.meta["val"].shape) for n in user]
    except Exception:
        return None


def _expected_input(ep) -> str:
    shapes = _input_shapes(ep)
    return "unknown" if shapes is None else ", ".join("(" + ", ".join(s) + ")" for s in shapes)


def _shape_differs(ep, input_shape: tuple[int, ...]) -> bool:
    """True when the program's one input has a fixed shape (past the batch) that is not the data set's: that alone
    explains the failure, and torch's own words for it ("Guard failed: x.size()[2] == 8") would only puzzle."""
    shapes = _input_shapes(ep)
    if not shapes or len(shapes) != 1:
        return False
    rest = shapes[0][1:]
    if len(rest) != len(input_shape):
        return True
    return any(d != "N" and d != str(v) for d, v in zip(rest, input_shape))


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
    raw = read_checked(data, max_bytes, what)
    scan_pt2(raw)
    try:
        ep = torch.export.load(io.BytesIO(raw))
    except Exception as exc:
        raise UploadError(f"{what}: could not be loaded by torch.export.load with PyTorch {torch.__version__} "
                          f"({type(exc).__name__}: {safe_load_message(exc)})",
                          f"re-export it with this version: {EXPORT_HINT}") from exc
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
    for owner, module_type in exported_types(gm).items():  # plain holders keep the type they were exported as
        holder = _getattr_path(gm, owner) if owner else gm
        if type(holder) is nn.Module:
            holder.exported_type = module_type  # named by zoo.layers.dense_layers
    rec = dataset_record
    fixed = _fixed_batch(ep)
    model = gm if fixed is None else PerBatch(gm, fixed)
    if fixed is not None:
        # The wrapper runs the program under "program."; tables, charts, the pruned state_dict and the masks use the
        # program's own names ("fc1", not "program.fc1"), so the downloads load into the user's network
        keep_file_keys(model, {k[len("program."):]: k for k in model.state_dict()})
    for n in sorted({1, 2, (fixed or 1) + 1}):
        try:
            with torch.no_grad():
                out = model(rec.x_test[:n])
        except Exception as exc:
            text = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            why = "" if _shape_differs(ep, tuple(rec.input_shape)) else f" ({text})"
            raise UploadError(f"{what} expects inputs shaped {expected}, but the data set {rec.name!r} gives "
                              f"(batch, {', '.join(str(d) for d in rec.input_shape)}){why}",
                              "choose the data set the program was exported for") from exc
        if isinstance(out, torch.Tensor) and out.ndim == 2 and out.shape[0] != n:
            raise UploadError(f"{what}: returned {out.shape[0]} rows for a batch of {n}", EXPORT_HINT)
    gm = model
    check_runs_on(gm, rec, f"the {what}")
    for p in gm.parameters():
        p.requires_grad_(True)
    return gm.eval()


def _short_type(module_type: Any) -> str:
    """'torch.nn.modules.conv.Conv1d' -> 'torch.nn.Conv1d'; other types as exported."""
    if not isinstance(module_type, str):
        module_type = f"{module_type.__module__}.{module_type.__qualname__}"
    cls = module_type.rpartition(".")[2]
    if module_type.startswith("torch.nn.modules.") and getattr(nn, cls, None) is not None:
        return f"torch.nn.{cls}"
    return module_type


def exported_types(gm: torch.fx.GraphModule) -> dict[str, str]:
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


