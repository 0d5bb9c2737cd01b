"""The Learn page's numbers: SiPP on a tiny MLP (e.g. 2-4-2 on moons), every step explicit (no streamlit).

The step-by-step numbers are recomputed by plain loops straight from docs/sipp.md
§2-3: pseudo-points, z+ / z- and g by the per-point loops of
sipp_core.sensitivity.reference, then s, T and the row bounds here; the engine's own
results (compute_sensitivities, prune, measure_layer_errors) are computed beside them
so the page can show that both agree.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch

from sipp_core.io.data import load_dataset
from sipp_core.plan.measure import end_to_end, measure_layer_errors
from sipp_core.plan.pruning import prune
from sipp_core.sensitivity.api import compute_sensitivities
from sipp_core.sensitivity.reference import point_inputs, point_ratios, pseudo_points
from sipp_core.zoo.layers import capture_inputs, prunable_layers
from sipp_core.zoo.models import build_model
from sipp_core.zoo.train import train_model
from ui import formulas as fx

NO_SIGNAL = 1.1920929e-07
TOY_DATASETS = {"moons": "two half-moons (2 classes)", "spirals": "three spiral arms (3 classes)"}
STEPS = ["1 · Network", "2 · Activations", "3 · z⁺ and z⁻", "4 · g per edge", "5 · s = max over S",
         "6 · Row bounds", "7 · What each method keeps", "8 · Resulting error"]
STEP_SENSITIVITY = STEPS[4]  # the step a lesson link opens on (ui/lessons.py)


@dataclass(frozen=True, eq=False)
class Toy:
    model: torch.nn.Module  # trained tiny MLP, eval mode (shared: never mutate)
    record: object  # DataRecord
    accuracy: float
    widths: tuple[int, ...]
    layer_names: tuple[str, ...]  # prunable layers, forward order


def train_toy(dataset: str = "moons", hidden: int = 4, seed: int = 0, epochs: int = 80) -> Toy:
    """A tiny MLP trained in about a second on a 2-D toy data set."""

    rec = load_dataset(dataset)
    net = build_model("mlp", rec.input_shape, rec.num_classes, widths=(hidden,), seed=seed)
    net, acc = train_model(net, rec, epochs=epochs, lr=0.03, batch_size=128, seed=seed, device="cpu")
    return Toy(net.eval(), rec, acc, (hidden,), tuple(prunable_layers(net)))


@dataclass(frozen=True, eq=False)
class Walk:
    """Every number of the walk-through for one layer of the toy net (arrays are numpy)."""

    layer: str
    W: np.ndarray  # (F, J)
    s_index: np.ndarray  # indices of S in the pool
    a: np.ndarray  # (N, J) the layer's raw input on S
    signed: bool
    a_pseudo: np.ndarray  # (N', J) non-negative pseudo-points (N' = 2N when signed)
    pseudo_of: np.ndarray  # (N',) which point of S each pseudo-point comes from
    pseudo_kind: list  # "a" | "a+" | "a-"
    z_pos: np.ndarray  # (N', F)
    z_neg: np.ndarray  # (N', F)
    g: np.ndarray  # (N', F, J)
    s: np.ndarray  # (F, J) max over pseudo-points of g
    s_arg: np.ndarray  # (F, J) which pseudo-point attains it
    s_engine: np.ndarray  # (F, J) the engine's compute_sensitivities
    T: np.ndarray  # (F, 2)
    nnz: np.ndarray  # (F, 2)
    P: int
    k: int


def walk_layer(toy: Toy, layer: str, s_size: int = 8, seed: int = 0) -> Walk:


    net = copy.deepcopy(toy.model)  # hooks go on a private copy: the shared model is never touched
    rec = toy.record
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(rec.x_pool), generator=gen)[:s_size]
    xs = rec.x_pool[idx]
    with torch.no_grad(), capture_inputs(net, [layer]) as got:
        net(xs)
    a = got[layer].reshape(len(xs), -1).double().numpy()
    module = prunable_layers(net)[layer]
    W = module.weight.detach().double().numpy()
    signed = bool((a < 0).any())
    ap = pseudo_points(a)  # (N', J)
    if signed:
        of = np.concatenate([np.arange(len(a)), np.arange(len(a))])
        kind = ["a+"] * len(a) + ["a-"] * len(a)
    else:
        of, kind = np.arange(len(a)), ["a"] * len(a)
    F, J = W.shape
    Np = ap.shape[0]
    z_pos, z_neg = np.zeros((Np, F)), np.zeros((Np, F))
    g = np.zeros((Np, F, J))
    for n in range(Np):  # the plain per-point loops of docs/sipp.md §2, on purpose (P = 1: a Linear layer)
        zp, zn, gn = point_ratios(W, point_inputs(module, ap[n]), no_signal=NO_SIGNAL)
        z_pos[n], z_neg[n], g[n] = zp[:, 0], zn[:, 0], gn[:, :, 0]
    s = g.max(axis=0)
    s_arg = g.argmax(axis=0)
    sens = compute_sensitivities(net, xs, patch_reduction="max")
    s_engine = sens[layer].reshape(F, J).double().numpy()
    T = np.stack([(s * (W > 0)).sum(1), (s * (W < 0)).sum(1)], axis=1)
    nnz = np.stack([((s > 0) & (W > 0)).sum(1), ((s > 0) & (W < 0)).sum(1)], axis=1)
    return Walk(layer, W, idx.numpy(), a, signed, ap, of, kind, z_pos, z_neg, g, s, s_arg, s_engine, T, nnz, 1, 1)


def row_table(walk: Walk, m: int, delta: float, c_prime: float = 3.0) -> list[dict]:
    """Per (unit, sign) row: T, nnz, L_l, and for a budget of m weights eps_det, eps_rand and hybrid's pick."""
    L = fx.log_term_value(walk.P, walk.k, delta)
    out = []
    for f in range(walk.W.shape[0]):
        for c, sel in ((0, walk.W[f] > 0), (1, walk.W[f] < 0)):
            row_s = walk.s[f][sel]
            T, nnz = float(row_s.sum()), int((row_s > 0).sum())
            mm = min(m, nnz)
            e_det = fx.eps_det_value(row_s, mm)
            e_rand = fx.eps_rand_value(mm, T, L) if T > 0 else 0.0
            whole = mm >= nnz
            pick = "kept whole" if whole or T == 0 else ("sampled" if c_prime * e_det > e_rand else "deterministic")
            out.append(dict(unit=f, sign="+" if c == 0 else "-", weights=int(sel.sum()), T=T, nnz=nnz, m=mm, L=L,
                            eps_det=e_det, c_eps_det=c_prime * e_det, eps_rand=e_rand if not whole else 0.0,
                            hybrid=pick))
    return out


def method_results(toy: Toy, walk_s_index: np.ndarray, keep_ratio: float, delta: float, seed: int,
                   methods=("sipp-det", "sipp-rand", "sipp-hybrid", "wt", "random")) -> dict:
    """prune() with each method at one keep ratio on the same S; plus measured errors and accuracy."""


    net = copy.deepcopy(toy.model)
    rec = toy.record
    xs, ys = rec.x_pool[torch.as_tensor(walk_s_index)], rec.y_pool[torch.as_tensor(walk_s_index)]
    sens = compute_sensitivities(net, xs, patch_reduction="max")
    out = {}
    for m in methods:
        r = prune(net, xs, method=m, keep_ratio=keep_ratio, delta=delta, seed=seed, sensitivities=sens, labels=ys)
        err_s = measure_layer_errors(net, r.plans, xs)
        err_h = measure_layer_errors(net, r.plans, rec.x_test[:300])
        e2e = end_to_end(net, r.model, rec.x_test, rec.y_test)
        out[m] = dict(result=r, errors_s=err_s, errors_heldout=err_h, end_to_end=e2e)
    return out


def fmt(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    return f"{v:.4g}"
