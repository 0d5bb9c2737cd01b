"""Where a sweep's points and a study's prune-retrain cascades run: in this process (the default) or on Ray.

    sweep("lenet300", "mnist5k", executor="ray")                          # a local Ray with this machine's cores
    sweep("lenet300", "mnist5k", executor="ray", ray_address="head:6379")  # join a running cluster

An executor takes a plan (what to compute) and reports results back through callbacks as they finish;
the caller (``sweeps.sweep``, ``study.run_study``) keeps validation, the cache and the result objects, so
every executor returns the same rows. Both executors compute a row with the same function
(``sweep_points.point_row``) and a cascade step with the same function (``retrain.cascade_step``), on the
same torch thread count, which is why their numbers agree bit for bit on one CPU.

The in-process executor runs points one after another in grid order (seed, method, keep ratio) exactly as
sweeps always have. The Ray executor (``ray_executor.RayExecutor``) runs one task per point.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable

from ..errors import BadInput
from ..pipeline import prepare
from .isolation import train_isolated
from .job_progress import JobProgress
from .retrain import CascadeResult, prune_retrain
from .sweep_points import point_message, point_row

__all__ = ["SweepPlan", "CascadeSpec", "Executor", "InProcessExecutor", "get_executor", "executor_from_env",
           "EXECUTORS", "RAY_ADDRESS_ENV"]

EXECUTORS = ("in-process", "ray")
RAY_ADDRESS_ENV = "SIPP_RAY_ADDRESS"


@dataclass(frozen=True)
class SweepPlan:
    """The points of one sweep still to compute. `done` holds the (seed, method, keep ratio) of rows already
    finished (read back from an interrupted run), which no executor computes again."""

    model_name: str
    dataset: str
    methods: tuple
    grid: tuple
    seeds: tuple
    sample_size: int | None
    delta: float
    allocation: str
    measure_errors: bool
    measure_latency: bool = False
    prepare_fn: Callable | None = None  # (seed, progress) -> Prepared; None: pipeline.prepare
    done: frozenset = frozenset()
    epochs: int | None = None  # which checkpoint of model_name (None: the model's own count)

    def todo(self, seed) -> list[tuple[str, float]]:
        return [(m, r) for m in self.methods for r in self.grid if (seed, m, r) not in self.done]

    def prepare(self, seed, progress=None):
        if self.prepare_fn is not None:
            return self.prepare_fn(seed, progress)
        return prepare(self.model_name, self.dataset, sample_size=self.sample_size, seed=seed, progress=progress,
                       epochs=self.epochs)

    def point(self, prepared, method, ratio, seed) -> dict:
        return point_row(prepared, method, ratio, seed, self.delta, self.allocation, self.measure_errors,
                         self.measure_latency)


@dataclass(frozen=True)
class CascadeSpec:
    """One prune-retrain cascade (see ``retrain.prune_retrain`` for the meaning of each field)."""

    model: str
    dataset: str
    method: str
    schedule: tuple
    epochs: int
    seed: int = 0
    lr: float = 1e-3
    batch_size: int = 64
    sample_size: int | None = None
    delta: float = 1e-16
    device: str = "cpu"
    tag: dict = field(default_factory=dict, compare=False)  # caller's labels (e.g. the study's network name)

    def kwargs(self) -> dict:
        return dict(method=self.method, schedule=self.schedule, epochs=self.epochs, lr=self.lr,
                    batch_size=self.batch_size, seed=self.seed, sample_size=self.sample_size, delta=self.delta,
                    device=self.device)


class Executor:
    """Runs a sweep plan or a list of cascades and reports each result as it finishes."""

    name = "executor"

    def workers(self) -> int:
        """How many points can run at once."""
        raise NotImplementedError

    def run_sweep(self, plan: SweepPlan, *, on_row: Callable[[dict], None], on_seed: Callable[[int, dict], None],
                  job: JobProgress, should_stop: Callable[[], bool] | None = None) -> dict:
        """Compute every point of ``plan`` not in ``plan.done``; call ``on_seed(seed, info)`` once a seed's
        sensitivities are ready (info: sample_size_used, sensitivity_s, prepare_s) and ``on_row(row)`` for
        every finished row. Returns run facts: cancelled (bool), workers, retries."""
        raise NotImplementedError

    def run_cascades(self, specs: list[CascadeSpec], *, on_step: Callable[[int, dict], None] | None = None,
                     progress=None, should_stop: Callable[[], bool] | None = None,
                     keep_models: bool = False) -> tuple[list[CascadeResult], dict]:
        """Run every cascade; ``on_step(index, step)`` for each finished step. Returns (one CascadeResult per
        spec, in order; run facts as for run_sweep)."""
        raise NotImplementedError

    def run_isolated(self, model_name: str, dataset: str, **kwargs):
        """``isolation.train_isolated(model_name, dataset, **kwargs)`` on this executor; an IsolationResult."""
        raise NotImplementedError


class InProcessExecutor(Executor):
    """Everything in this process, one point after another (the default)."""

    name = "in-process"

    def workers(self) -> int:
        return 1

    def run_sweep(self, plan, *, on_row, on_seed, job, should_stop=None) -> dict:
        points = len(plan.methods) * len(plan.grid)
        prep_units = max(2.0, points / 8)  # sensitivities weigh about this many points on the progress bar
        per_seed = prep_units + points
        total_units = per_seed * len(plan.seeds)
        cancelled = False
        for si, seed in enumerate(plan.seeds):
            todo = plan.todo(seed)
            if not todo:
                continue
            if should_stop is not None and should_stop():
                cancelled = True
                break
            base = si * per_seed
            job.report(base / total_units, f"seed {seed}: sensitivities")
            tp = time.perf_counter()
            prepared = plan.prepare(seed, job.stage(base / total_units, (base + prep_units) / total_units,
                                                    f"seed {seed}: "))
            on_seed(seed, dict(sample_size_used=int(prepared.sample_size), prepare_s=time.perf_counter() - tp,
                               sensitivity_s=float(prepared.timings_s.get("sensitivity", float("nan")))))
            k = points - len(todo)
            for method, ratio in todo:
                if should_stop is not None and should_stop():
                    cancelled = True
                    break
                row = plan.point(prepared, method, ratio, seed)
                on_row(row)
                k += 1
                job.report((base + prep_units + k) / total_units, point_message(row))
            if cancelled:
                break
        return dict(cancelled=cancelled, workers=1, retries=0, executor=self.name)

    def run_cascades(self, specs, *, on_step=None, progress=None, should_stop=None, keep_models=False):
        job = JobProgress(progress)
        out = []
        n = len(specs)
        for i, spec in enumerate(specs):
            if should_stop is not None and should_stop():
                break
            res = prune_retrain(spec.model, spec.dataset, **spec.kwargs(),
                                progress=job.stage(i / n, (i + 1) / n, f"cascade {i + 1}/{n} ({spec.model}, "
                                                   f"{spec.method}, seed {spec.seed}): "),
                                should_stop=should_stop)
            if not keep_models:
                res = _without_models(res)
            for step in res.steps:
                if on_step is not None:
                    on_step(i, step)
            out.append(res)
            if res.cancelled:
                break
        cancelled = len(out) < n or any(r.cancelled for r in out)
        return out, dict(cancelled=cancelled, workers=1, retries=0, executor=self.name)

    def run_isolated(self, model_name, dataset, **kwargs):
        return train_isolated(model_name, dataset, **kwargs)


def _without_models(res: CascadeResult) -> CascadeResult:
    return CascadeResult(settings=res.settings, dense_accuracy=res.dense_accuracy, steps=res.steps,
                         cancelled=res.cancelled, timings_s=res.timings_s, device=res.device)


def get_executor(executor=None, *, ray_address: str | None = None) -> Executor:
    """An Executor from a name ("in-process", "ray"), an Executor instance, or None (in-process).

    ``ray_address`` joins a running Ray cluster (host:port, or "auto"); without it "ray" starts a local
    Ray with this machine's cores.
    """
    if isinstance(executor, Executor):
        if ray_address:
            raise BadInput("ray_address is given with an executor object", "give the address to the executor itself")
        return executor
    name = "in-process" if executor is None else str(executor).strip().lower()
    if name == "in-process":
        if ray_address:
            raise BadInput(f"a Ray address ({ray_address}) is given but the executor is in-process",
                           "choose the Ray executor (--executor ray), or leave the address out")
        return InProcessExecutor()
    if name == "ray":
        from .ray_executor import RayExecutor  # deferred: that module builds on this one (a cycle at import)

        return RayExecutor(address=ray_address)
    raise BadInput(f"unknown executor {executor!r}", f"choose one of: {', '.join(EXECUTORS)}")


def executor_from_env() -> Executor:
    """Ray on the cluster named by SIPP_RAY_ADDRESS when it is set, else in-process (the app's choice)."""
    address = os.environ.get(RAY_ADDRESS_ENV, "").strip()
    return get_executor("ray", ray_address=address) if address else InProcessExecutor()
