"""Sweeps and prune-retrain cascades on Ray: one task per grid point, a chain of tasks per cascade.

    sweep("lenet300", "mnist5k", executor="ray")              # a local Ray with this machine's cores
    RayExecutor(address="head:6379").run_sweep(plan, ...)     # join a running cluster

How a sweep runs:
- Shared once. The trained network and the data set go into Ray's object store once per sweep. Tasks
  receive references to them (inside a list, so Ray hands over the reference, not a copy), and each
  worker process fetches an object the first time it needs it and keeps it (``_SHARED``, a small cache
  keyed by the object's id): a worker that runs 30 points deserialises the network and data once.
- Per seed, one prepare task draws S and computes the sensitivities (``pipeline.prepare_trained``, as
  in-process) and returns two objects: a small info record, which the seed's point tasks take as an
  argument (so Ray starts them only once it exists), and the seed's parts (S, sensitivities, test
  logits), which workers fetch once like the network.
- One task per (method, keep ratio, seed) point, computed by ``sweep_points.point_row`` (the in-process
  executor's function).
- Results stream back: the caller waits on every outstanding task (``ray.wait``) and reports each row
  with its progress as it lands.
- Cancelling (``should_stop()`` is polled every 0.1 s) cancels every outstanding task.
- A worker that dies is retried: point tasks run with Ray's own retries off, and the caller submits a
  point whose worker died again, up to ``retries`` times (default 3) per point; rows already finished
  are kept. Prepare tasks use Ray's retries (the points wait on them).
- Same numbers: every task sets torch's intra-op thread count to the caller's before computing, so a
  row is bit-identical to the in-process executor's on the same CPU.

A cascade is a chain: step k+1 is submitted when step k finishes, with step k's network and masks by
reference (they never pass through the caller), and runs ``retrain.cascade_step``, as in-process. Many
cascades (methods x seeds x networks) run side by side.

Ray is an optional extra (``pip install "sipp-studio[ray]"``); it is imported only when this executor
runs. A local Ray listens on the loopback interface only.
"""
from __future__ import annotations

import copy
import logging
import os
import socket
import threading
import time
from collections import OrderedDict

import torch

from ..errors import BadInput, SippError
from ..io.checkpoints import load_trained
from ..io.data import load_dataset
from ..pipeline import Prepared, prepare_trained
from ..plan.pruning import validate_arguments
from ..runtime import configure_allocator
from ..zoo.train import pick_device
from .executors import CascadeSpec, Executor, SweepPlan
from .isolation import IsolationResult, find_dense, isolation_masks, isolation_result, isolation_run
from .job_progress import JobProgress
from .masked_training import check_common
from .retrain import CascadeResult, cascade_setup, cascade_step, check_schedule
from .sweep_points import point_message, point_row

__all__ = ["RayExecutor", "RETRIES", "ray_module"]

RETRIES = 3  # per point or step: a worker lost three times running the same task is a fault, not bad luck
POLL_S = 0.1  # how often should_stop() is asked while tasks run
_SHARED_MAX = 8  # objects a worker keeps (network, data, per-seed parts of the sweeps it ran last)
_SHARED: OrderedDict = OrderedDict()
_REMOTE: dict = {}
_CONNECT_LOCK = threading.Lock()
_SEED_FIELDS = ("s_index", "s_x", "s_y", "sample_size", "sample_size_formula", "seed", "patch_reduction",
                "sensitivities", "infos", "heldout_x", "test_logits", "timings_s")


def ray_module():
    """The ray package, or a BadInput naming the install command when it is missing."""
    try:
        import ray  # deferred: Ray is an optional extra and takes ~1 s to import
    except ImportError as exc:
        raise BadInput("the Ray executor needs Ray, which is not installed in this environment",
                       'install it with: pip install "sipp-studio[ray]" (or pip install ray), '
                       "or run without --executor ray") from exc
    return ray


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not after Ray's minutes of retries, when nothing listens at host:port."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto" and ray:// client addresses are Ray's to resolve
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise SippError(f"nothing answers at the Ray address {address} ({exc.strerror or exc})",
                        "start the cluster with `ray start --head` and give the address it prints (host:6379), or "
                        "leave the address out to run on a local Ray") from exc


def _start_local(ray, num_cpus: int) -> None:
    """A local Ray on the loopback interface. Ray gives its node 30 s to start (fixed in Ray) and raises a
    bare Exception past that, which happens on a heavily loaded machine; one more try, then a clear error."""
    for attempt in (1, 2):
        try:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                     log_to_driver=False, logging_level=logging.ERROR)
            return
        except ConnectionError:
            raise
        except Exception as exc:  # noqa: BLE001 - Ray's start-up timeout is a plain Exception
            ray.shutdown()
            if attempt == 2:
                raise SippError(f"a local Ray did not start ({exc})",
                                "the machine may be too busy to start Ray's processes in time: try again, or run "
                                "in-process (leave out --executor ray)") from exc


def _lost_worker_errors(ray) -> tuple:
    """Failures of the machinery (a worker or node died, an object was lost), as opposed to the task's own."""
    ex = ray.exceptions
    return (ex.WorkerCrashedError, ex.NodeDiedError, ex.ObjectLostError, ex.LocalRayletDiedError,
            ex.OutOfMemoryError)


# ---------------------------------------------------------------------------------------------------
# in the worker


def _configure(threads: int) -> None:
    configure_allocator()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _shared(box) -> tuple[object, int]:
    """The object behind the reference in ``box`` (a one-item list), fetched once per worker; and 1 when it
    was fetched now, 0 when it was already here."""
    ray = ray_module()
    ref = box[0]
    key = ref.hex()
    if key in _SHARED:
        _SHARED.move_to_end(key)
        return _SHARED[key], 0
    value = ray.get(ref)
    _SHARED[key] = value
    while len(_SHARED) > _SHARED_MAX:
        _SHARED.popitem(last=False)
    return value, 1


def _prepare_task(box_trained, box_record, sample_size, seed, threads):
    _configure(threads)
    t0 = time.perf_counter()
    (trained, f1), (record, f2) = _shared(box_trained), _shared(box_record)
    prepared = prepare_trained(trained, record, sample_size=sample_size, seed=seed)
    info = dict(sample_size_used=int(prepared.sample_size), prepare_s=time.perf_counter() - t0,
                sensitivity_s=float(prepared.timings_s.get("sensitivity", float("nan"))), pid=os.getpid(),
                fetched=f1 + f2)
    return info, {f: getattr(prepared, f) for f in _SEED_FIELDS}


def _point_task(_ready, box_trained, box_record, box_parts, method, ratio, seed, delta, allocation,
                measure_errors, measure_latency, threads):
    _configure(threads)
    (trained, f1), (record, f2), (parts, f3) = _shared(box_trained), _shared(box_record), _shared(box_parts)
    prepared = Prepared(trained=trained, record=record, **parts)
    row = point_row(prepared, method, ratio, seed, delta, allocation, measure_errors, measure_latency)
    return row, dict(pid=os.getpid(), fetched=f1 + f2 + f3)


def _cascade_task(state, box_trained, box_record, box_setup, k, ratio, kwargs, threads):
    _configure(threads)
    (trained, f1), (record, f2), (setup, f3) = _shared(box_trained), _shared(box_record), _shared(box_setup)
    if state is None:
        current, masks = copy.deepcopy(trained.model).eval(), None  # the cached network stays untouched
    else:
        current, masks = state
    step, pruned, masks = cascade_step(current, masks, record, setup, k=k, ratio=ratio, **kwargs)
    meta = dict(pid=os.getpid(), fetched=f1 + f2 + f3, device=str(next(pruned.parameters()).device))
    return (step, meta), (pruned, masks)


def _isolation_masks_task(box_record, trained, model_name, dataset, kwargs, threads):
    _configure(threads)
    record, _ = _shared(box_record)
    return isolation_masks(model_name, dataset, record, trained=trained, job=JobProgress(None), **kwargs)


def _isolation_run_task(plan, box_record, run, kwargs, threads):
    _configure(threads)
    record, _ = _shared(box_record)
    out, net, _ = isolation_run(plan, run, record, **kwargs)
    return out, (net if run == "ticket" else None), os.getpid()


def _remote(fn, **options):
    key = (fn.__name__, tuple(sorted(options.items())))
    if key not in _REMOTE:
        _REMOTE[key] = ray_module().remote(**options)(fn)
    return _REMOTE[key]


# ---------------------------------------------------------------------------------------------------
# in the caller


class RayExecutor(Executor):
    """Runs sweeps and cascades as Ray tasks (see the module docstring).

    Args:
        address: a running cluster to join ("host:port" or "auto"); None starts a local Ray on the
            loopback interface with ``num_cpus`` (default: this machine's cores). When Ray is already
            started in this process (``ray.init`` called by the user), that Ray is used as it is.
        retries: how many times a point or cascade step is submitted again after its worker died.
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None, retries: int = RETRIES):
        if num_cpus is not None and (not isinstance(num_cpus, int) or num_cpus < 1):
            raise BadInput(f"num_cpus must be a positive integer; got {num_cpus!r}", "give the cores Ray may use")
        if not isinstance(retries, int) or retries < 0:
            raise BadInput(f"retries must be an integer >= 0; got {retries!r}", "give how often a lost task reruns")
        self.address = (address or "").strip() or None
        self.num_cpus = num_cpus
        self.retries = retries
        self.ray = ray_module()

    # -- cluster ------------------------------------------------------------------------------------

    def connect(self):
        ray = self.ray
        with _CONNECT_LOCK:  # the app's sessions may start jobs at the same moment
            if ray.is_initialized():
                return ray
            try:
                if self.address:
                    _check_reachable(self.address)
                    ray.init(address=self.address, log_to_driver=False, logging_level=logging.ERROR)
                else:  # "local": a new Ray of our own, never a cluster `ray start` left running on this machine
                    _start_local(ray, self.num_cpus or os.cpu_count() or 1)
            except ConnectionError as exc:
                raise SippError(f"could not join the Ray cluster at {self.address} ({exc})",
                                "if the cluster asks for a token (`ray start` does by default), set "
                                "RAY_AUTH_MODE=token here too, with the cluster's token in ~/.ray/auth_token or "
                                "RAY_AUTH_TOKEN; else "
                                "check the address `ray start --head` printed (host:6379), or leave the address out "
                                "to run on a local Ray") from exc
        return ray

    def workers(self) -> int:
        return int(self.connect().cluster_resources().get("CPU", 0))

    # -- waiting ------------------------------------------------------------------------------------

    def _ready(self, pending: dict, should_stop) -> list | None:
        """Refs finished now (at least one), or None when should_stop() asked to stop."""
        ray = self.ray
        refs = list(pending)
        while True:
            if should_stop is not None and should_stop():
                return None
            ready, rest = ray.wait(refs, num_returns=1, timeout=POLL_S)
            if ready:
                more, _ = ray.wait(rest, num_returns=len(rest), timeout=0) if rest else ([], [])
                return ready + more

    def _cancel(self, refs) -> None:
        for ref in refs:
            try:
                self.ray.cancel(ref)
            except (ValueError, TypeError):  # already finished, or not a task's return
                pass

    def _get(self, ref, pending, what: str, attempt: int):
        """(value, lost): the task's value; or lost=True when its worker died and it may run again."""
        ray = self.ray
        try:
            return ray.get(ref), False
        except ray.exceptions.RayTaskError as exc:  # the task's own error: the same as in-process
            self._cancel(pending)
            cause = getattr(exc, "cause", None)
            raise (cause if isinstance(cause, Exception) else exc) from None
        except _lost_worker_errors(ray) as exc:
            if attempt >= self.retries:
                self._cancel(pending)
                raise SippError(f"a Ray worker died {attempt + 1} times running {what} ({type(exc).__name__})",
                                "check the workers' memory and logs (ray logs), or run with fewer tasks at "
                                "once") from exc
            return None, True

    # -- sweeps -------------------------------------------------------------------------------------

    def run_sweep(self, plan: SweepPlan, *, on_row, on_seed, job: JobProgress, should_stop=None) -> dict:
        ray = self.connect()
        threads = torch.get_num_threads()
        workers = int(ray.cluster_resources().get("CPU", 0))
        seeds = [s for s in plan.seeds if plan.todo(s)]
        n_points = sum(len(plan.todo(s)) for s in seeds)
        prep_units = max(2.0, len(plan.methods) * len(plan.grid) / 8)
        total = n_points + prep_units * len(seeds)
        facts = dict(cancelled=False, workers=workers, retries=0, executor=self.name, shared_fetches=0,
                     tasks=0, worker_processes=0)
        if not seeds:
            return facts
        job.report(0.0, f"Ray: {workers} workers; sharing the network and data")
        prepare_task = _remote(_prepare_task, num_returns=2, max_retries=self.retries)
        point_task = _remote(_point_task, max_retries=0)
        pending: dict = {}
        pids: set = set()
        seed_refs: dict = {}  # seed -> (what its points wait for, (network, data) boxes, parts box)
        def submit(seed, method, ratio, attempt):
            ready, boxes, box_parts = seed_refs[seed]
            ref = point_task.remote(ready, *boxes, box_parts, method, ratio, seed, plan.delta, plan.allocation,
                                    plan.measure_errors, plan.measure_latency, threads)
            pending[ref] = ("point", seed, method, ratio, attempt)

        if plan.prepare_fn is None:
            record = load_dataset(plan.dataset)
            trained = load_trained(plan.model_name, plan.dataset, progress=job.stage(0.0, 0.02, "loading: "),
                                   device="cpu")
            shared = [ray.put(trained)], [ray.put(record)]
            for seed in seeds:
                info_ref, parts_ref = prepare_task.remote(*shared, plan.sample_size, seed, threads)
                seed_refs[seed] = (info_ref, shared, [parts_ref])
                pending[info_ref] = ("seed", seed)
                for method, ratio in plan.todo(seed):
                    submit(seed, method, ratio, 0)
        else:  # the caller's own prepare (e.g. the app's cache) runs here, seed by seed while earlier seeds'
            puts: dict = {}  # points run; its results are shared once
            for seed in seeds:
                if should_stop is not None and should_stop():
                    break
                tp = time.perf_counter()
                prepared = plan.prepare(seed, None)
                for obj in (prepared.trained, prepared.record):
                    if id(obj) not in puts:
                        puts[id(obj)] = (ray.put(obj), obj)  # obj kept alive so its id is not reused
                shared = [puts[id(prepared.trained)][0]], [puts[id(prepared.record)][0]]
                on_seed(seed, dict(sample_size_used=int(prepared.sample_size), prepare_s=time.perf_counter() - tp,
                                   sensitivity_s=float(prepared.timings_s.get("sensitivity", float("nan")))))
                seed_refs[seed] = (True, shared, [ray.put({f: getattr(prepared, f) for f in _SEED_FIELDS})])
                for method, ratio in plan.todo(seed):
                    submit(seed, method, ratio, 0)
        if should_stop is not None and should_stop():
            self._cancel(pending)
            pending.clear()
            facts["cancelled"] = True
        done = 0.0
        while pending:
            ready = self._ready(pending, should_stop)
            if ready is None:
                self._cancel(pending)
                facts["cancelled"] = True
                break
            for ref in ready:
                meta = pending.pop(ref)
                if meta[0] == "seed":
                    info, _ = self._get(ref, pending, f"the sensitivities of seed {meta[1]}", self.retries)
                    facts["shared_fetches"] += info.pop("fetched")
                    pids.add(info.pop("pid"))
                    on_seed(meta[1], info)
                    done += prep_units
                    job.report(done / total, f"seed {meta[1]}: sensitivities ready")
                    continue
                _, seed, method, ratio, attempt = meta
                value, lost = self._get(ref, pending, f"{method} at keep ratio {ratio:g} (seed {seed})", attempt)
                if lost:
                    facts["retries"] += 1
                    submit(seed, method, ratio, attempt + 1)
                    job.report(done / total, f"a worker died running {method} at {ratio:g} (seed {seed}); "
                                             f"running it again ({attempt + 1}/{self.retries})")
                    continue
                row, task = value
                facts["tasks"] += 1
                facts["shared_fetches"] += task["fetched"]
                pids.add(task["pid"])
                on_row(row)
                done += 1
                job.report(done / total, f"{point_message(row)} ({facts['tasks']}/{n_points} points, "
                                         f"{workers} workers)")
        facts["worker_processes"] = len(pids)
        return facts

    # -- cascades -----------------------------------------------------------------------------------

    def run_cascades(self, specs: list[CascadeSpec], *, on_step=None, progress=None, should_stop=None,
                     keep_models: bool = False) -> tuple[list[CascadeResult], dict]:
        for spec in specs:  # every check before any work, as prune_retrain does
            check_common(spec.method, spec.lr, spec.epochs)
            validate_arguments(spec.method, check_schedule(spec.schedule)[0], None, spec.delta)
        ray = self.connect()
        threads = torch.get_num_threads()
        workers = int(ray.cluster_resources().get("CPU", 0))
        job = JobProgress(progress)
        t0 = time.perf_counter()
        cascade_task = _remote(_cascade_task, num_returns=2, max_retries=0)
        nets, setups = {}, {}
        for spec in specs:
            key = (spec.model, spec.dataset)
            if key not in nets:
                record = load_dataset(spec.dataset)
                trained = load_trained(spec.model, spec.dataset, device=spec.device)
                nets[key] = (trained, record, [ray.put(trained)], [ray.put(record)])
            skey = key + (spec.seed, spec.sample_size)
            if skey not in setups:
                trained, record = nets[key][:2]
                setup = cascade_setup(trained, record, spec.sample_size, spec.seed)
                setups[skey] = (setup, [ray.put(setup)])
        load_s = time.perf_counter() - t0
        job.report(0.0, f"Ray: {workers} workers; {len(specs)} cascades")
        steps: list[list] = [[] for _ in specs]
        state: list = [None] * len(specs)
        devices: list = [None] * len(specs)
        pending: dict = {}
        facts = dict(cancelled=False, workers=workers, retries=0, executor=self.name, shared_fetches=0, tasks=0,
                     worker_processes=0)
        pids: set = set()
        n_steps = sum(len(s.schedule) for s in specs)

        def submit(i, k, attempt):
            spec = specs[i]
            _, _, box_trained, box_record = nets[(spec.model, spec.dataset)]
            box_setup = setups[(spec.model, spec.dataset, spec.seed, spec.sample_size)][1]
            kwargs = dict(method=spec.method, delta=spec.delta, seed=spec.seed, epochs=spec.epochs, lr=spec.lr,
                          batch_size=spec.batch_size, device=spec.device)
            step_ref, state_ref = cascade_task.remote(state[i], box_trained, box_record, box_setup, k,
                                                      float(spec.schedule[k]), kwargs, threads)
            pending[step_ref] = (i, k, attempt, state_ref)

        for i in range(len(specs)):
            submit(i, 0, 0)
        while pending:
            ready = self._ready(pending, should_stop)
            if ready is None:
                self._cancel(pending)
                facts["cancelled"] = True
                break
            for ref in ready:
                i, k, attempt, state_ref = pending.pop(ref)
                spec = specs[i]
                what = f"step {k + 1} of the {spec.method} cascade on {spec.model} (seed {spec.seed})"
                value, lost = self._get(ref, pending, what, attempt)
                if lost:
                    facts["retries"] += 1
                    submit(i, k, attempt + 1)
                    job.report(facts["tasks"] / n_steps, f"a worker died running {what}; running it again")
                    continue
                step, meta = value
                facts["tasks"] += 1
                facts["shared_fetches"] += meta["fetched"]
                pids.add(meta["pid"])
                devices[i] = meta["device"]
                steps[i].append(step)
                state[i] = state_ref
                if on_step is not None:
                    on_step(i, step)
                job.report(facts["tasks"] / n_steps,
                           f"{spec.model} {spec.method} seed {spec.seed}: keep {step['keep_ratio_requested']:g} -> "
                           f"{step['accuracy_finetuned']:.4f} ({facts['tasks']}/{n_steps} steps, {workers} workers)")
                if k + 1 < len(spec.schedule):
                    submit(i, k + 1, 0)
        facts["worker_processes"] = len(pids)
        total_s = time.perf_counter() - t0
        results = []
        for i, spec in enumerate(specs):
            trained = nets[(spec.model, spec.dataset)][0]
            setup = setups[(spec.model, spec.dataset, spec.seed, spec.sample_size)][0]
            model = masks = None
            if keep_models and steps[i]:
                model, masks = ray.get(state[i])
            settings = dict(model=spec.model, dataset=spec.dataset, method=spec.method,
                            schedule=[float(r) for r in spec.schedule], epochs=spec.epochs, lr=spec.lr,
                            batch_size=spec.batch_size, seed=spec.seed, sample_size=len(setup.s_x), delta=spec.delta,
                            checkpoint=trained.path, checkpoint_epochs=trained.epochs)
            results.append(CascadeResult(
                settings=settings, dense_accuracy=setup.dense_accuracy, steps=tuple(steps[i]),
                cancelled=len(steps[i]) < len(spec.schedule), timings_s=dict(load=load_s, total=total_s),
                device=devices[i] or str(spec.device), model=model, masks=masks))
        job.report(1.0, "cancelled" if facts["cancelled"] else f"{len(specs)} cascades finished")
        return results, facts

    # -- training in isolation ------------------------------------------------------------------------

    def run_isolated(self, model_name, dataset, *, method, keep_ratio, epochs, rewind_epoch, prune_at, random_scope,
                     lr, batch_size, seed, sample_size, delta, device, model_options=None, progress=None,
                     should_stop=None) -> IsolationResult:
        """train_isolated as a chain: one task for the dense part and both masks, then the ticket's and the
        random mask's trainings as two tasks side by side (both wait on the first). The caller checked the
        arguments (isolation.train_isolated); these tasks use Ray's own retries."""
        ray = self.connect()
        threads = torch.get_num_threads()
        job = JobProgress(progress)
        t0 = time.perf_counter()
        opts = model_options or {}
        record = load_dataset(dataset)
        trained = find_dense(model_name, dataset, epochs, seed, opts)
        box_record = [ray.put(record)]
        masks_task = _remote(_isolation_masks_task, max_retries=self.retries)
        run_task = _remote(_isolation_run_task, max_retries=self.retries)
        kwargs = dict(method=method, keep_ratio=keep_ratio, epochs=epochs, rewind_epoch=rewind_epoch,
                      prune_at=prune_at, random_scope=random_scope, lr=lr, batch_size=batch_size, seed=seed,
                      sample_size=sample_size, delta=delta, device=device, opts=opts)
        plan_ref = masks_task.remote(box_record, trained, model_name, dataset, kwargs, threads)
        train = dict(epochs=epochs, lr=lr, batch_size=batch_size, device=device)
        pending = {plan_ref: "masks"}
        for run in ("ticket", "random"):
            pending[run_task.remote(plan_ref, box_record, run, train, threads)] = run
        job.report(0.0, f"Ray: {int(ray.cluster_resources().get('CPU', 0))} workers; dense part and masks")
        got: dict = {}
        cancelled = False
        while pending:
            ready = self._ready(pending, should_stop)
            if ready is None:
                self._cancel(pending)
                cancelled = True
                break
            for ref in ready:
                what = pending.pop(ref)
                got[what], _ = self._get(ref, pending, f"the {what} part of a run in isolation", self.retries)
                done = len(got) / 3
                if what == "masks":
                    job.report(done, "masks ready: training the ticket and the random mask side by side")
                else:
                    job.report(done, f"{what} mask trained: test accuracy {got[what][0]['accuracy']:.4f}")
        plan = got.get("masks")
        if plan is None:
            job.report(1.0, "cancelled")
            return IsolationResult(dict(model=model_name, dataset=dataset, method=method, keep_ratio=keep_ratio,
                                        seed=seed), float("nan"), {}, {}, True, {}, str(device))
        timings = dict(plan.timings)
        out = {}
        for run in ("ticket", "random"):
            if run in got:
                out[run] = got[run][0]
                timings[run] = out[run]["seconds"]
        # a run lost with its worker counts as cancelled: the result holds what finished
        return isolation_result(plan, out, timings, t0, job, cancelled or len(out) < 2, pick_device(device),
                                got["ticket"][1] if "ticket" in got else None)
