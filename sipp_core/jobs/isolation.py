"""Training in isolation, the lottery-ticket protocol (the SiPP paper's experiments).

    iso = train_isolated("lenet300", "mnist5k", method="wt", keep_ratio=0.05, rewind_epoch=0)
    iso.to_frame()      # test accuracy per epoch of the ticket (method's mask) and of a random mask

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

Progress reports, stopping and the device are as for the prune-retrain cascade (``retrain``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from torch import nn

from ..io.checkpoints import cache_checkpoint, cache_dir, checkpoint_name, load_trained
from ..io.data import load_dataset
from ..plan.pruning import validate_arguments
from ..zoo.models import build_model
from ..zoo.train import DEFAULT_EPOCHS, DEFAULT_LR, Progress, accuracy, pick_device
from .job_progress import JobProgress
from .masked_training import (
    apply_masks,
    check_common,
    densities,
    draw_s,
    dumps,
    mask_ratio,
    prune_masks,
    random_masks,
    train_masked,
)

__all__ = ["IsolationResult", "train_isolated"]


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
        return dumps(self.to_dict())

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
    check_common(method, lr, epochs)
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
    return isolation_result(plan, out, timings, t0, job, cancelled, dev, final_models.get("ticket"))


def isolation_result(plan: IsolationPlan, out: dict, timings: dict, t0: float, job: JobProgress, cancelled: bool,
                     device, ticket_model) -> IsolationResult:
    """The result of a run in isolation from its two trainings (out: "ticket", "random"), in-process or on Ray."""
    if "ticket" in out:
        out["ticket"]["realised_by_method"] = plan.realised_by_method
    timings["total"] = time.perf_counter() - t0
    job.report(1.0, "cancelled" if cancelled else "training in isolation finished")
    return IsolationResult(
        settings=plan.settings, dense_accuracy=plan.dense_accuracy, ticket=out.get("ticket", {}),
        random=out.get("random", {}), cancelled=cancelled, timings_s=timings, device=str(device),
        ticket_model=ticket_model, ticket_masks=plan.ticket_masks,
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
    s_x, s_y = draw_s(source, record, sample_size, seed)
    settings["sample_size"] = len(s_x)
    result = prune_masks(source, s_x, s_y, method=method, keep_ratio=keep_ratio, delta=delta, seed=seed)
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
        keep_ratio=mask_ratio(masks), kept=kept, accuracy_init=acc_init,
        accuracy=log.test_accuracy[-1] if log.test_accuracy else float("nan"),
        accuracy_curve=list(log.test_accuracy), loss_curve=list(log.loss), epochs=log.epochs_done,
        layer_density=densities(masks), pruned_weights_zero=log.pruned_weights_zero, seconds=log.seconds,
    )
    return out, net, log.cancelled
