"""Retraining as in the SiPP paper's experiments: prune-retrain cascades and training in isolation.

    res = prune_retrain("lenet300", "mnist5k", method="sipp-hybrid", schedule=(0.5, 0.2, 0.1, 0.05, 0.02))
    res.to_frame()      # per step: keep ratio, accuracy after pruning, accuracy after fine-tuning

    iso = train_isolated("lenet300", "mnist5k", method="wt", keep_ratio=0.05, rewind_epoch=0)
    iso.to_frame()      # test accuracy per epoch of the ticket (method's mask) and of a random mask

Prune-retrain cascade (:func:`prune_retrain`): start from the trained network; for each keep ratio of a
decreasing schedule, prune the current network with the method (sensitivities recomputed on the current,
fine-tuned weights with the same batch S), intersect the new mask with the previous one (so a weight once
pruned stays pruned; this matters only for masks that ignore the weights: random, uniform), record test
accuracy right after pruning, fine-tune with the mask fixed, record accuracy again. Keep ratios are over
all prunable weights of the original network.

Training in isolation (:func:`train_isolated`, the lottery-ticket protocol) lives in ``isolation``, and
mask-fixed training (:func:`train_masked`), which both use, in ``masked_training``; this module re-exports them.

Every long call takes ``progress(fraction, message)`` (messages carry a time estimate) and
``should_stop()``; a cancelled run returns what it finished, with ``cancelled=True``. Training runs on
the GPU when one is present (``device="auto"``); pruning and sensitivities run on the CPU.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..errors import BadInput
from ..io.checkpoints import load_trained
from ..io.data import load_dataset
from ..pipeline import Prepared
from ..plan.pruning import validate_arguments
from ..zoo.train import DEFAULT_LR, Progress, accuracy, pick_device, predict
from .isolation import IsolationResult, train_isolated
from .job_progress import JobProgress
from .masked_training import (
    TrainLog,
    apply_masks,
    check_common,
    densities,
    draw_s,
    dumps,
    masks_hold,
    prune_masks,
    random_masks,
    train_masked,
)

__all__ = [
    "TrainLog", "CascadeResult", "IsolationResult", "train_masked", "apply_masks", "masks_hold",
    "random_masks", "prune_retrain", "train_isolated", "DEFAULT_SCHEDULE", "JobProgress",
]

DEFAULT_SCHEDULE = (0.5, 0.2, 0.1, 0.05, 0.02)
FINETUNE_EPOCHS = 5


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
        return dumps(self.to_dict())

    def history_entry(self) -> dict:
        d = self.to_dict()
        results = dict(dense_accuracy=d["dense_accuracy"], steps=d["steps"], cancelled=d["cancelled"],
                       device=d["device"])
        if self.steps:
            last = self.steps[-1]
            results.update(keep_ratio=last["keep_ratio"], accuracy_after=last["accuracy_finetuned"])
        return dict(kind="retrain", settings=d["settings"], results=results, timings=d["timings_s"])


def check_schedule(schedule) -> tuple[float, ...]:
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
    s_x, s_y = draw_s(dense, record, sample_size, seed)
    return CascadeSetup(dense_logits, dense_acc, s_x, s_y)


def cascade_step(current, masks, record, setup: CascadeSetup, *, k, ratio, method, delta, seed, epochs, lr,
                 batch_size, device, progress=None, should_stop=None):
    """Step k of a cascade: prune `current` to `ratio` (masks intersected with the previous step's), then
    fine-tune with the mask fixed. Returns (step dict, or None when cancelled; the pruned network; its masks).

    Every executor runs this same function, so a step does not depend on where it ran."""
    tp = time.perf_counter()
    result = prune_masks(current, setup.s_x, setup.s_y, method=method, keep_ratio=ratio, delta=delta, seed=seed)
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
        layer_density=densities(masks), prune_s=prune_s, finetune_s=log.seconds,
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

    check_common(method, lr, epochs)
    sched = check_schedule(schedule)
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
