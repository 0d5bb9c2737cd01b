"""Retraining as in the SiPP paper's experiments: prune-retrain cascades and training in isolation.

    res = prune_retrain("lenet300", "mnist5k", method="sipp-hybrid", schedule=(0.5, 0.2, 0.1, 0.05, 0.02))
    res.to_frame()      # per step: keep ratio, accuracy after pruning, accuracy after fine-tuning

    iso = train_isolated("lenet300", "mnist5k", method="wt", keep_ratio=0.05, rewind_epoch=0)
    iso.to_frame()      # test accuracy per epoch of the ticket (method's mask) and of a random mask

Mask-fixed training (:func:`train_masked`). Pruned weights must stay exactly zero while the rest
trains. Two guards, both needed: a gradient hook multiplies each masked weight's gradient by the mask
(so Adam's moment estimates of pruned weights stay zero), and after every optimizer step the weight is
multiplied by the mask again (weight decay, or moments left over from earlier dense training, would
otherwise revive pruned weights). Each result records that check (``pruned_weights_zero``).

Prune-retrain cascade (:func:`prune_retrain`): start from the trained network; for each keep ratio of a
decreasing schedule, prune the current network with the method (sensitivities recomputed on the current,
fine-tuned weights with the same batch S), intersect the new mask with the previous one (so a weight once
pruned stays pruned; this matters only for masks that ignore the weights: random, uniform), record test
accuracy right after pruning, fine-tune with the mask fixed, record accuracy again. Keep ratios are over
all prunable weights of the original network.

Training in isolation (:func:`train_isolated`), the lottery-ticket protocol: from the initial weights
theta_0 (``build_model(name, ..., seed=seed)``, exactly the initialisation the shipped and cached
checkpoints were trained from), train dense (or reuse that checkpoint), optionally keeping theta_k after
``rewind_epoch`` epochs; prune the trained network (``prune_at="trained"``) or the initial one
(``prune_at="init"``, pruning at initialisation) with the method at keep ratio kappa; reset the kept
weights to theta_k (theta_0 when ``rewind_epoch=0``; the method's reweighting of sampled weights is
discarded, only the mask is kept) and train the masked network. The comparison is a random mask trained
the same way: same rewound weights, same epochs, seed, learning rate and batch order. Its ratio is
``random_scope="layerwise"`` (default: exactly the ticket's kept count in every layer, so only *which*
weights are kept differs) or ``"global"`` (one uniformly random mask over all prunable weights at the
ticket's overall ratio). theta_k for k > 0 comes from re-running the dense training for k epochs of the
same schedule and seed; on the CPU that reproduces the checkpoint's own trajectory.

Every long call takes ``progress(fraction, message)`` (messages carry a time estimate) and
``should_stop()``; a cancelled run returns what it finished, with ``cancelled=True``. Training runs on
the GPU when one is present (``device="auto"``); pruning and sensitivities run on the CPU.
"""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..errors import BadInput
from ..io.checkpoints import cache_checkpoint, cache_dir, checkpoint_name, load_trained
from ..io.data import load_dataset
from ..options import DELTA_S, METHODS
from ..pipeline import Prepared
from ..plan.bounds import draw_sample
from ..plan.bounds import sample_size as sample_size_formula
from ..plan.pruning import prune, validate_arguments
from ..zoo.models import build_model
from ..zoo.train import DEFAULT_EPOCHS, DEFAULT_LR, Progress, accuracy, pick_device, predict, run_epoch
from .history import to_jsonable

__all__ = [
    "TrainLog", "CascadeResult", "IsolationResult", "train_masked", "apply_masks", "masks_hold",
    "random_masks", "prune_retrain", "train_isolated", "DEFAULT_SCHEDULE", "JobProgress",
]

DEFAULT_SCHEDULE = (0.5, 0.2, 0.1, 0.05, 0.02)
FINETUNE_EPOCHS = 5


# ---------------------------------------------------------------------------------------------------
# progress with a time estimate over a whole job


class JobProgress:
    """Maps a stage's own 0..1 progress into the job's range and adds a time estimate."""

    def __init__(self, progress: Progress | None):
        self.progress = progress
        self.start = time.perf_counter()
        self.last = 0.0

    def report(self, fraction: float, message: str) -> None:
        if self.progress is None:
            return
        # Monotone: a stage's own sub-steps (e.g. loading, then sensitivities) may each run 0..1.
        fraction = min(max(fraction, self.last, 0.0), 1.0)
        self.last = fraction
        elapsed = time.perf_counter() - self.start
        if 0.02 < fraction < 1.0:
            left = elapsed / fraction * (1 - fraction)
            message = f"{message} (about {_fmt_s(left)} left)"
        elif fraction >= 1.0:
            message = f"{message} (took {_fmt_s(elapsed)})"
        self.progress(fraction, message)

    def stage(self, lo: float, hi: float, prefix: str = "") -> Progress:
        def sub(f: float, message: str) -> None:
            self.report(lo + (hi - lo) * f, f"{prefix}{message}")

        return sub


def _fmt_s(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"


# ---------------------------------------------------------------------------------------------------
# masks


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """Zero the masked-out weights in place (masks: layer name -> bool tensor shaped like the weight)."""
    modules = dict(model.named_modules())
    missing = [n for n in masks if n not in modules or not hasattr(modules[n], "weight")]
    if missing:
        raise ValueError(f"masks name layers the model does not have: {missing[:5]}")
    with torch.no_grad():
        for n, mask in masks.items():
            w = modules[n].weight
            if tuple(mask.shape) != tuple(w.shape):
                raise ValueError(f"mask of {n} is shaped {tuple(mask.shape)}, its weight {tuple(w.shape)}")
            w.mul_(mask.to(device=w.device, dtype=w.dtype))
    return model


def masks_hold(model: nn.Module, masks: dict[str, torch.Tensor]) -> bool:
    """True when every masked-out weight is exactly zero."""
    modules = dict(model.named_modules())
    return all(
        bool((modules[n].weight.detach()[~m.to(modules[n].weight.device, torch.bool)] == 0).all())
        for n, m in masks.items()
    )


def random_masks(
    reference: dict[str, torch.Tensor], *, scope: str = "layerwise", seed: int = 0
) -> dict[str, torch.Tensor]:
    """Random masks with the same kept counts as `reference`: per layer ("layerwise") or in total ("global")."""
    if scope not in ("layerwise", "global"):
        raise ValueError(f"random_scope must be 'layerwise' or 'global'; got {scope!r}")
    gen = torch.Generator().manual_seed(seed)
    if scope == "layerwise":
        out = {}
        for n, m in reference.items():
            flat = torch.zeros(m.numel(), dtype=torch.bool)
            flat[torch.randperm(m.numel(), generator=gen)[: int(m.sum())]] = True
            out[n] = flat.reshape(m.shape)
        return out
    sizes = [m.numel() for m in reference.values()]
    flat = torch.zeros(sum(sizes), dtype=torch.bool)
    flat[torch.randperm(sum(sizes), generator=gen)[: sum(int(m.sum()) for m in reference.values())]] = True
    return {n: part.reshape(m.shape) for (n, m), part in zip(reference.items(), torch.split(flat, sizes))}


def _ratio(masks: dict[str, torch.Tensor]) -> float:
    total = sum(m.numel() for m in masks.values())
    return sum(int(m.sum()) for m in masks.values()) / total if total else 0.0


def _densities(masks: dict[str, torch.Tensor]) -> dict[str, float]:
    return {n: float(m.float().mean()) for n, m in masks.items()}


# ---------------------------------------------------------------------------------------------------
# training with a fixed mask


@dataclass
class TrainLog:
    """What one training run did. ``test_accuracy[i]`` is measured after epoch i + 1."""

    epochs_done: int = 0
    loss: list = field(default_factory=list)
    test_accuracy: list = field(default_factory=list)
    snapshots: dict = field(default_factory=dict)  # epoch -> state_dict (CPU copies), for rewinding
    cancelled: bool = False
    seconds: float = 0.0
    pruned_weights_zero: bool | None = None  # checked after training when a mask was given

    def to_dict(self) -> dict:
        return dict(epochs_done=self.epochs_done, loss=list(self.loss), test_accuracy=list(self.test_accuracy),
                    cancelled=self.cancelled, seconds=self.seconds, pruned_weights_zero=self.pruned_weights_zero)


def train_masked(
    model: nn.Module,
    masks: dict[str, torch.Tensor] | None,
    record,
    *,
    epochs: int,
    schedule_epochs: int | None = None,
    lr: float = DEFAULT_LR,
    batch_size: int = 64,
    weight_decay: float = 0.0,
    seed: int = 0,
    device: str | None = "auto",
    snapshot_epochs=(),
    track_accuracy: bool = True,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainLog:
    """Train `model` in place on record's train split with the masked-out weights held at exactly zero.

    Same algorithm as ``train.train_model`` (Adam, cosine decay per step, seeded shuffling); with
    ``masks=None`` and equal arguments it reproduces train_model's weights. The model ends on the CPU
    in eval mode.

    Args:
        masks: layer name -> bool tensor shaped like the weight (True = kept), or None for dense training.
        epochs: epochs to run now.
        schedule_epochs: length of the cosine schedule (default `epochs`); run fewer epochs than the
            schedule to stop early on the same trajectory (e.g. to get theta_k for rewinding).
        snapshot_epochs: epochs after which a CPU copy of the state_dict is kept (0 = before training).
        track_accuracy: measure test accuracy after every epoch.
        should_stop: polled after every batch; when it returns True the run stops (cancelled=True).
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    schedule_epochs = int(schedule_epochs or epochs or 1)
    if schedule_epochs < epochs:
        raise ValueError(f"schedule_epochs ({schedule_epochs}) must be >= epochs ({epochs})")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr}")
    dev = pick_device(device)
    log = TrainLog()
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.to(dev).train()
    modules = dict(model.named_modules())
    hooks = []
    dev_masks = {}
    if masks:
        apply_masks(model, masks)
        for n, m in masks.items():
            w = modules[n].weight
            mf = m.to(device=dev, dtype=w.dtype)
            dev_masks[n] = mf
            hooks.append(w.register_hook(lambda g, mf=mf: g * mf))
    @torch.no_grad()
    def rezero():  # Adam's momentum would otherwise revive pruned weights
        for name, mf in dev_masks.items():
            modules[name].weight.mul_(mf)

    snapshot_epochs = set(int(e) for e in snapshot_epochs)
    if 0 in snapshot_epochs:
        log.snapshots[0] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    x, y = record.x_train, record.y_train
    steps_per_epoch = math.ceil(len(x) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=schedule_epochs * steps_per_epoch)
    try:
        for epoch in range(epochs):
            order = torch.randperm(len(x), generator=gen)
            total, n, log.cancelled = run_epoch(model, opt, sched, x, y, order, batch_size, dev,
                                                after_step=rezero if dev_masks else None, should_stop=should_stop)
            if log.cancelled:
                break
            log.epochs_done = epoch + 1
            log.loss.append(total / max(n, 1))
            if track_accuracy:
                log.test_accuracy.append(accuracy(model, record.x_test, record.y_test))
            if epoch + 1 in snapshot_epochs:
                log.snapshots[epoch + 1] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            if progress is not None:
                acc = f", test accuracy {log.test_accuracy[-1]:.4f}" if track_accuracy else ""
                progress((epoch + 1) / epochs, f"epoch {epoch + 1}/{epochs}: loss {log.loss[-1]:.4f}{acc}")
    finally:
        for h in hooks:
            h.remove()
        model.to("cpu").eval()
    if masks:
        log.pruned_weights_zero = masks_hold(model, masks)
    log.seconds = time.perf_counter() - start
    return log


# ---------------------------------------------------------------------------------------------------
# shared setup


def _draw_s(net: nn.Module, record, sample_size: int | None, seed: int):
    """The batch S exactly as pipeline.prepare draws it: the |S| formula (capped at the pool) or a given size."""

    n_pool = len(record.x_pool)
    size = sample_size_formula(net, record.input_shape, DELTA_S) if sample_size is None else int(sample_size)
    if sample_size is None:
        size = min(size, n_pool)
    idx = draw_sample(n_pool, size, seed)
    return record.x_pool[idx], record.y_pool[idx]


def _prune_masks(net, s_x, s_y, *, method, keep_ratio, delta, seed, sensitivities=None):
    return prune(net, s_x, method=method, keep_ratio=keep_ratio, delta=delta, seed=seed, labels=s_y,
                 sensitivities=sensitivities)


def _check_common(method: str, lr: float, epochs: int) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number; got {lr!r}")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer; got {epochs!r}")


def _dumps(obj) -> str:
    return json.dumps(to_jsonable(obj), indent=2)


# ---------------------------------------------------------------------------------------------------
# prune-retrain cascade


@dataclass(frozen=True, eq=False)
class CascadeResult:
    settings: dict
    dense_accuracy: float
    steps: tuple  # of dicts, one per finished step (see prune_retrain)
    cancelled: bool
    timings_s: dict
    device: str
    model: nn.Module | None = None  # the last fine-tuned, masked network (CPU)
    masks: dict | None = None

    def to_frame(self):
        import pandas as pd  # deferred: only frames need pandas (~0.5 s to import)

        cols = ["step", "keep_ratio_requested", "keep_ratio", "accuracy_pruned", "accuracy_finetuned",
                "accuracy_drop", "agreement_pruned", "epochs", "pruned_weights_zero", "prune_s", "finetune_s"]
        return pd.DataFrame([{k: s.get(k) for k in cols} for s in self.steps], columns=cols)

    def to_dict(self) -> dict:
        return dict(kind="retrain", settings=dict(self.settings), dense_accuracy=self.dense_accuracy,
                    steps=[dict(s) for s in self.steps], cancelled=self.cancelled, timings_s=dict(self.timings_s),
                    device=self.device)

    def to_json(self) -> str:
        return _dumps(self.to_dict())

    def history_entry(self) -> dict:
        d = self.to_dict()
        results = dict(dense_accuracy=d["dense_accuracy"], steps=d["steps"], cancelled=d["cancelled"],
                       device=d["device"])
        if self.steps:
            last = self.steps[-1]
            results.update(keep_ratio=last["keep_ratio"], accuracy_after=last["accuracy_finetuned"])
        return dict(kind="retrain", settings=d["settings"], results=results, timings=d["timings_s"])


def _check_schedule(schedule) -> tuple[float, ...]:
    try:
        sched = tuple(float(r) for r in schedule)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"schedule must be a list of keep ratios in (0, 1]; got {schedule!r}") from exc
    if not sched or any(not (0 < r <= 1) or math.isnan(r) for r in sched):
        raise ValueError(f"schedule must be a non-empty list of keep ratios in (0, 1]; got {list(sched)}")
    if any(b >= a for a, b in zip(sched, sched[1:])):
        raise ValueError(f"schedule must be strictly decreasing (prune further at each step); got {list(sched)}")
    return sched


@dataclass(frozen=True, eq=False)
class CascadeSetup:
    """What every step of one cascade shares: the dense network's test logits and accuracy, and S."""

    dense_logits: torch.Tensor
    dense_accuracy: float
    s_x: torch.Tensor
    s_y: torch.Tensor


def cascade_setup(trained, record, sample_size: int | None, seed: int) -> CascadeSetup:
    dense = trained.model
    dense_logits = predict(dense, record.x_test)
    dense_acc = float((dense_logits.argmax(1) == record.y_test).float().mean())
    s_x, s_y = _draw_s(dense, record, sample_size, seed)
    return CascadeSetup(dense_logits, dense_acc, s_x, s_y)


def cascade_step(current, masks, record, setup: CascadeSetup, *, k, ratio, method, delta, seed, epochs, lr,
                 batch_size, device, progress=None, should_stop=None):
    """Step k of a cascade: prune `current` to `ratio` (masks intersected with the previous step's), then
    fine-tune with the mask fixed. Returns (step dict, or None when cancelled; the pruned network; its masks).

    Every executor runs this same function, so a step does not depend on where it ran."""
    tp = time.perf_counter()
    result = _prune_masks(current, setup.s_x, setup.s_y, method=method, keep_ratio=ratio, delta=delta, seed=seed)
    new_masks = {name: m.clone() for name, m in result.masks.items()}
    pruned = result.model
    if masks is not None:
        for name in new_masks:
            new_masks[name] &= masks[name]
        apply_masks(pruned, new_masks)
    masks = new_masks
    logits = predict(pruned, record.x_test)
    acc_pruned = float((logits.argmax(1) == record.y_test).float().mean())
    agree = float((logits.argmax(1) == setup.dense_logits.argmax(1)).float().mean())
    prune_s = time.perf_counter() - tp
    log = train_masked(pruned, masks, record, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed + k,
                       device=device, progress=progress, should_stop=should_stop)
    if log.cancelled:
        return None, pruned, masks
    total = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    acc_ft = log.test_accuracy[-1] if log.test_accuracy else accuracy(pruned, record.x_test, record.y_test)
    step = dict(
        step=k + 1, keep_ratio_requested=ratio, keep_ratio=kept / total, kept=kept, total=total,
        accuracy_pruned=acc_pruned, accuracy_finetuned=acc_ft, accuracy_drop=setup.dense_accuracy - acc_ft,
        agreement_pruned=agree, epochs=log.epochs_done, accuracy_curve=list(log.test_accuracy),
        loss_curve=list(log.loss), pruned_weights_zero=bool(log.pruned_weights_zero),
        layer_density=_densities(masks), prune_s=prune_s, finetune_s=log.seconds,
    )
    return step, pruned, masks


def prune_retrain(
    model_name: str | Prepared,
    dataset: str | None = None,
    *,
    method: str = "sipp-hybrid",
    schedule=DEFAULT_SCHEDULE,
    epochs: int = FINETUNE_EPOCHS,
    lr: float = DEFAULT_LR,
    batch_size: int = 64,
    seed: int = 0,
    sample_size: int | None = None,
    delta: float = 1e-16,
    device: str | None = "auto",
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    executor=None,
    ray_address: str | None = None,
) -> CascadeResult:
    """Prune-retrain cascade down a decreasing keep-ratio schedule (see the module docstring).

    Args:
        model_name, dataset: the trained network (shipped, cached, or trained now) and its data; or a
            ``pipeline.Prepared`` (a model in hand) and no dataset: its model, data and |S|.
        method: a planner method (sipp-hybrid, sipp-det, sipp-rand, wt, layerwise, snip, uniform, random).
        schedule: strictly decreasing keep ratios in (0, 1].
        epochs: fine-tuning epochs per step (cosine schedule restarted at each step).
        lr: fine-tuning learning rate (Adam).
        seed: draws S, seeds sampling and the fine-tuning batch order.
        sample_size: |S| (default: the formula, capped at the S-pool).
        device: "auto" (GPU when present), "cpu" or "cuda" for fine-tuning.
        executor: None / "in-process" (default) or "ray": the cascade as a chain of Ray tasks, one per
            step (the same steps); ray_address joins a running cluster. A model in hand (Prepared) runs
            in-process only.

    Returns:
        CascadeResult; each step dict has step, keep_ratio_requested, keep_ratio (realised), kept, total,
        accuracy_pruned (after pruning, before fine-tuning), accuracy_finetuned, accuracy_drop (dense minus
        fine-tuned), agreement_pruned (top-1 agreement with the dense network right after pruning), epochs,
        accuracy_curve (after each fine-tuning epoch), pruned_weights_zero, layer_density, prune_s, finetune_s.
    """

    _check_common(method, lr, epochs)
    sched = _check_schedule(schedule)
    validate_arguments(method, sched[0], None, delta)
    if executor is not None and getattr(executor, "name", executor) != "in-process":
        from .executors import CascadeSpec, get_executor  # deferred: executors builds on this module (a cycle)

        if not isinstance(model_name, str) or not isinstance(dataset, str):
            raise BadInput("a cascade on Ray needs the network and data set by name",
                           "name a zoo network and data set, or run a model in hand in-process (executor=None)")
        spec = CascadeSpec(model_name, dataset, method, sched, epochs=epochs, seed=seed, lr=lr, batch_size=batch_size,
                           sample_size=sample_size, delta=delta, device=device)
        results, _ = get_executor(executor, ray_address=ray_address).run_cascades(
            [spec], progress=progress, should_stop=should_stop, keep_models=True)
        return results[0]
    dev = pick_device(device)
    job = JobProgress(progress)
    t0 = time.perf_counter()
    if isinstance(model_name, Prepared):
        record, trained = model_name.record, model_name.trained
        sample_size = model_name.sample_size if sample_size is None else sample_size
        model_name, dataset = trained.name, record.name
    elif isinstance(dataset, str):
        record = load_dataset(dataset)
        trained = load_trained(model_name, dataset, progress=job.stage(0.0, 0.02, "loading: "), device=device)
    else:
        raise ValueError("prune_retrain(model_name, dataset): name the data set, or pass a pipeline.Prepared instead")
    setup = cascade_setup(trained, record, sample_size, seed)
    timings = dict(load=time.perf_counter() - t0)
    current = copy.deepcopy(trained.model).eval()
    masks: dict[str, torch.Tensor] | None = None
    steps = []
    cancelled = False
    n = len(sched)
    # Work units: pruning a step ~ one epoch (sensitivities); used only for the progress bar.
    unit = 1.0 / (n * (epochs + 1))
    for k, ratio in enumerate(sched):
        if should_stop is not None and should_stop():
            cancelled = True
            break
        base = 0.02 + 0.98 * k * (epochs + 1) * unit
        job.report(base, f"step {k + 1}/{n}: pruning to keep ratio {ratio:g}")
        step, pruned, masks_k = cascade_step(
            current, masks, record, setup, k=k, ratio=ratio, method=method, delta=delta, seed=seed, epochs=epochs,
            lr=lr, batch_size=batch_size, device=device,
            progress=job.stage(base + 0.98 * unit, base + 0.98 * (epochs + 1) * unit,
                               f"step {k + 1}/{n} (keep {ratio:g}) fine-tuning: "),
            should_stop=should_stop)
        if step is None:
            cancelled = True
            break
        steps.append(step)
        current, masks = pruned, masks_k
    dense_acc, s_x = setup.dense_accuracy, setup.s_x
    timings["total"] = time.perf_counter() - t0
    job.report(1.0, "cancelled" if cancelled else f"cascade finished: {len(steps)} steps")
    settings = dict(model=model_name, dataset=dataset, method=method, schedule=list(sched), epochs=epochs, lr=lr,
                    batch_size=batch_size, seed=seed, sample_size=len(s_x), delta=delta,
                    checkpoint=trained.path, checkpoint_epochs=trained.epochs)
    return CascadeResult(settings=settings, dense_accuracy=dense_acc, steps=tuple(steps), cancelled=cancelled,
                         timings_s=timings, device=str(dev), model=current if steps else None,
                         masks=masks if steps else None)


# ---------------------------------------------------------------------------------------------------
# training in isolation (lottery tickets)


@dataclass(frozen=True, eq=False)
class IsolationResult:
    settings: dict
    dense_accuracy: float
    ticket: dict  # the method's mask: keep_ratio, accuracy_init, accuracy, accuracy_curve, layer_density, ...
    random: dict  # the random mask, same fields
    cancelled: bool
    timings_s: dict
    device: str
    ticket_model: nn.Module | None = None
    ticket_masks: dict | None = None

    def to_frame(self):
        """Test accuracy per epoch, long form: run ("ticket" / "random"), epoch, accuracy."""
        import pandas as pd  # deferred: only frames need pandas (~0.5 s to import)

        rows = []
        for run, d in (("ticket", self.ticket), ("random", self.random)):
            if not d:
                continue
            rows.append(dict(run=run, epoch=0, accuracy=d.get("accuracy_init")))
            rows += [dict(run=run, epoch=i + 1, accuracy=a) for i, a in enumerate(d.get("accuracy_curve", []))]
        return pd.DataFrame(rows, columns=["run", "epoch", "accuracy"])

    def summary(self) -> dict:
        return dict(dense_accuracy=self.dense_accuracy,
                    ticket_accuracy=self.ticket.get("accuracy"), random_accuracy=self.random.get("accuracy"),
                    keep_ratio=self.ticket.get("keep_ratio"), random_keep_ratio=self.random.get("keep_ratio"))

    def to_dict(self) -> dict:
        return dict(kind="isolation", settings=dict(self.settings), dense_accuracy=self.dense_accuracy,
                    ticket=dict(self.ticket), random=dict(self.random), cancelled=self.cancelled,
                    timings_s=dict(self.timings_s), device=self.device)

    def to_json(self) -> str:
        return _dumps(self.to_dict())

    def history_entry(self) -> dict:
        d = self.to_dict()
        results = dict(self.summary(), ticket=d["ticket"], random=d["random"], cancelled=d["cancelled"],
                       device=d["device"], accuracy_after=self.ticket.get("accuracy"))
        return dict(kind="isolation", settings=d["settings"], results=results, timings=d["timings_s"])


def train_isolated(
    model_name: str,
    dataset: str,
    *,
    method: str = "wt",
    keep_ratio: float = 0.1,
    epochs: int | None = None,
    rewind_epoch: int = 0,
    prune_at: str = "trained",
    random_scope: str = "layerwise",
    lr: float = DEFAULT_LR,
    batch_size: int = 64,
    seed: int = 0,
    sample_size: int | None = None,
    delta: float = 1e-16,
    device: str | None = "auto",
    model_options: dict | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    executor=None,
    ray_address: str | None = None,
) -> IsolationResult:
    """Train a pruned network in isolation from its (rewound) initial weights, against a random mask.

    Args:
        method, keep_ratio: how the mask is chosen (any planner method).
        epochs: dense training and both masked trainings (default: the model's DEFAULT_EPOCHS, which
            matches the shipped checkpoints, so the dense network is loaded instead of trained).
        rewind_epoch: 0 resets kept weights to theta_0; k > 0 to the weights after k dense epochs.
        prune_at: "trained" (lottery ticket: mask from the trained network) or "init" (prune at
            initialisation: mask from theta_0 itself; rewind_epoch must then be 0).
        random_scope: "layerwise" (same kept count per layer as the ticket) or "global" (same total).
        seed: initialisation (build_model seed), S, sampling, random mask and batch order.
        executor: None / "in-process" (default) or "ray": a chain of Ray tasks (the dense part and the
            masks, then both masked trainings side by side); ray_address joins a running cluster.

    Returns: IsolationResult; ``ticket`` and ``random`` each hold keep_ratio, kept, accuracy_init
    (masked, before training), accuracy (after training), accuracy_curve, loss_curve, layer_density,
    pruned_weights_zero, seconds.
    """

    epochs = int(epochs if epochs is not None else DEFAULT_EPOCHS.get(model_name, 30))
    _check_common(method, lr, epochs)
    validate_arguments(method, keep_ratio, None, delta)
    if prune_at not in ("trained", "init"):
        raise ValueError(f"prune_at must be 'trained' or 'init'; got {prune_at!r}")
    if not isinstance(rewind_epoch, int) or not (0 <= rewind_epoch < epochs):
        raise ValueError(f"rewind_epoch must be an integer in [0, epochs) = [0, {epochs}); got {rewind_epoch!r}")
    if prune_at == "init" and rewind_epoch:
        raise ValueError("prune_at='init' prunes theta_0 itself; rewind_epoch must be 0")
    if random_scope not in ("layerwise", "global"):
        raise ValueError(f"random_scope must be 'layerwise' or 'global'; got {random_scope!r}")
    if executor is not None and getattr(executor, "name", executor) != "in-process":
        from .executors import get_executor  # deferred: executors builds on this module (a cycle at import)

        return get_executor(executor, ray_address=ray_address).run_isolated(
            model_name, dataset, method=method, keep_ratio=keep_ratio, epochs=epochs, rewind_epoch=rewind_epoch,
            prune_at=prune_at, random_scope=random_scope, lr=lr, batch_size=batch_size, seed=seed,
            sample_size=sample_size, delta=delta, device=device, model_options=model_options, progress=progress,
            should_stop=should_stop)
    dev = pick_device(device)
    job = JobProgress(progress)
    t0 = time.perf_counter()
    record = load_dataset(dataset)
    opts = model_options or {}
    plan = isolation_masks(model_name, dataset, record, method=method, keep_ratio=keep_ratio, epochs=epochs,
                           rewind_epoch=rewind_epoch, prune_at=prune_at, random_scope=random_scope, lr=lr,
                           batch_size=batch_size, seed=seed, sample_size=sample_size, delta=delta, device=device,
                           opts=opts, job=job, should_stop=should_stop)
    timings = plan.timings
    if plan.cancelled:
        job.report(1.0, "cancelled")
        return IsolationResult(plan.settings, plan.dense_accuracy, {}, {}, True, timings, str(dev))
    out = {}
    final_models = {}
    cancelled = False
    span = (1.0 - plan.dense_hi) / 2
    for j, run in enumerate(("ticket", "random")):
        lo = plan.dense_hi + j * span
        out[run], final_models[run], run_cancelled = isolation_run(
            plan, run, record, epochs=epochs, lr=lr, batch_size=batch_size, device=device,
            progress=job.stage(lo, lo + span, f"{run} mask training: "), should_stop=should_stop)
        timings[run] = out[run]["seconds"]
        if run_cancelled:
            cancelled = True
            break
    if "ticket" in out:
        out["ticket"]["realised_by_method"] = plan.realised_by_method
    timings["total"] = time.perf_counter() - t0
    job.report(1.0, "cancelled" if cancelled else "training in isolation finished")
    return IsolationResult(
        settings=plan.settings, dense_accuracy=plan.dense_accuracy, ticket=out.get("ticket", {}),
        random=out.get("random", {}), cancelled=cancelled, timings_s=timings, device=str(dev),
        ticket_model=final_models.get("ticket"), ticket_masks=plan.ticket_masks,
    )


def find_dense(model_name, dataset, epochs, seed, opts):
    """The dense checkpoint trained from theta_0 with this recipe, or None (never trains)."""
    if opts:
        return None
    try:
        return load_trained(model_name, dataset, epochs=epochs, seed=seed, allow_training=False)
    except FileNotFoundError:
        return None


@dataclass(frozen=True, eq=False)
class IsolationPlan:
    """What both masked trainings of a run in isolation start from (see train_isolated)."""

    model_name: str
    settings: dict
    dense_accuracy: float
    theta_rewind: dict | None
    ticket_masks: dict | None
    random_masks: dict | None
    realised_by_method: float
    timings: dict
    cancelled: bool
    dense_hi: float  # the share of the progress bar the dense part took
    opts: dict


def isolation_masks(model_name, dataset, record, *, method, keep_ratio, epochs, rewind_epoch, prune_at, random_scope,
                    lr, batch_size, seed, sample_size, delta, device, opts, job, should_stop=None,
                    trained="look up") -> IsolationPlan:
    """The dense part of a run in isolation (theta_0, the dense network, theta_k) and the two masks.

    ``trained``: the dense checkpoint trained from theta_0 (a TrainedModel), None when there is none, or
    "look up" (default) to find it here; a caller that looked it up already passes it on (to a Ray worker,
    whose disk may not hold it)."""
    net0 = build_model(model_name, record.input_shape, record.num_classes, seed=seed, **opts)
    theta0 = {k: v.detach().clone() for k, v in net0.state_dict().items()}
    timings: dict = {}
    cancelled = False
    # Dense reference: the checkpoint trained from theta_0 when there is one, else trained here (and cached)
    # when the mask needs it; pruning at initialisation without a checkpoint skips it (dense_accuracy nan).
    dense_hi = 0.02
    theta_rewind = theta0
    trained_net = None
    dense_acc = float("nan")
    tr = find_dense(model_name, dataset, epochs, seed, opts) if isinstance(trained, str) else trained
    if tr is not None:
        trained_net, dense_acc = tr.model, tr.test_accuracy
        if rewind_epoch:
            dense_hi = 0.02 + 0.3 * rewind_epoch / epochs
            net = build_model(model_name, record.input_shape, record.num_classes, seed=seed, **opts)
            log = train_masked(net, None, record, epochs=rewind_epoch, schedule_epochs=epochs, lr=lr,
                               batch_size=batch_size, seed=seed, device=device, track_accuracy=False,
                               snapshot_epochs=(rewind_epoch,),
                               progress=job.stage(0.0, dense_hi, "dense epochs up to the rewind point: "),
                               should_stop=should_stop)
            cancelled = log.cancelled
            theta_rewind = log.snapshots.get(rewind_epoch, theta0)
            timings["dense"] = log.seconds
    elif prune_at == "trained":
        dense_hi = 0.3
        net = build_model(model_name, record.input_shape, record.num_classes, seed=seed, **opts)
        log = train_masked(net, None, record, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                           device=device, track_accuracy=False, snapshot_epochs=(rewind_epoch,),
                           progress=job.stage(0.0, dense_hi, "dense training: "), should_stop=should_stop)
        cancelled = log.cancelled
        timings["dense"] = log.seconds
        if not cancelled:
            trained_net = net
            dense_acc = accuracy(net, record.x_test, record.y_test)
            theta_rewind = log.snapshots[rewind_epoch]
            if not opts and lr == DEFAULT_LR and batch_size == 64:  # exactly train_model's recipe: cache it
                cache_checkpoint(cache_dir() / checkpoint_name(model_name, dataset, epochs, seed), net,
                                 name=model_name, dataset=dataset, epochs=epochs, seed=seed,
                                 input_shape=record.input_shape, num_classes=record.num_classes,
                                 test_accuracy=dense_acc)  # a read-only cache warns; the run goes on
    settings = dict(model=model_name, dataset=dataset, method=method, keep_ratio=keep_ratio, epochs=epochs,
                    rewind_epoch=rewind_epoch, prune_at=prune_at, random_scope=random_scope, lr=lr,
                    batch_size=batch_size, seed=seed, delta=delta, model_options=opts)
    if cancelled:
        return IsolationPlan(model_name, settings, dense_acc, None, None, None, float("nan"), timings, True, dense_hi,
                             opts)

    # The mask.
    job.report(dense_hi, f"pruning with {method} to keep ratio {keep_ratio:g}")
    tp = time.perf_counter()
    source = trained_net if prune_at == "trained" else net0.eval()
    s_x, s_y = _draw_s(source, record, sample_size, seed)
    settings["sample_size"] = len(s_x)
    result = _prune_masks(source, s_x, s_y, method=method, keep_ratio=keep_ratio, delta=delta, seed=seed)
    ticket_masks = {n: m.clone() for n, m in result.masks.items()}
    rand_masks = random_masks(ticket_masks, scope=random_scope, seed=seed + 1)
    timings["prune"] = time.perf_counter() - tp

    return IsolationPlan(model_name, settings, dense_acc, theta_rewind, ticket_masks, rand_masks,
                         float(result.keep_ratio), timings, False, dense_hi, opts)


def isolation_run(plan: IsolationPlan, run: str, record, *, epochs, lr, batch_size, device, progress=None,
                  should_stop=None):
    """Train the network of one mask ("ticket" or "random") from the rewound weights.
    Returns (the run's dict, the trained network, whether it was cancelled)."""
    masks = plan.ticket_masks if run == "ticket" else plan.random_masks
    seed = plan.settings["seed"]
    net = build_model(plan.model_name, record.input_shape, record.num_classes, seed=seed, **plan.opts)
    net.load_state_dict(plan.theta_rewind)
    apply_masks(net, masks)
    acc_init = accuracy(net, record.x_test, record.y_test)
    log = train_masked(net, masks, record, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, device=device,
                       progress=progress, should_stop=should_stop)
    kept = sum(int(m.sum()) for m in masks.values())
    out = dict(
        keep_ratio=_ratio(masks), kept=kept, accuracy_init=acc_init,
        accuracy=log.test_accuracy[-1] if log.test_accuracy else float("nan"),
        accuracy_curve=list(log.test_accuracy), loss_curve=list(log.loss), epochs=log.epochs_done,
        layer_density=_densities(masks), pruned_weights_zero=log.pruned_weights_zero, seconds=log.seconds,
    )
    return out, net, log.cancelled
