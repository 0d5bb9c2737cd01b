"""In-process against local Ray: 5 methods x 8 keep ratios x 3 seeds of prune-retrain on lenet5 / mnist5k.

    .venv/bin/python benchmarks/bench_distributed.py                       # the whole grid (minutes)
    .venv/bin/python benchmarks/bench_distributed.py --seeds 1 --count 4   # a smaller one

One run times the same cascades on both executors (in-process first, then a local Ray with this machine's
cores), checks that their steps agree bit for bit, and prints the ratio of the wall times. It also measures
what Ray itself costs:
- starting a local Ray (once per process);
- per sweep: a one-point sweep on Ray against the same sweep in-process, on cold workers (the first call
  of a process: workers start and import torch) and warm ones;
- per task: the round trip of an empty task, one at a time and many in flight;
- memory per worker: resident (RSS) and unique (USS) memory of each Ray worker after the grid.
Last, it times one training step and the sensitivities of the CIFAR networks of the zoo on one thread (as a
Ray task runs) and from them estimates the wall time of a paper-sized CIFAR grid on a 64-core cluster.
That last figure is an estimate, not a measurement: see the assumptions it prints.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402
import torch  # noqa: E402

from sipp_core.io.checkpoints import load_trained  # noqa: E402
from sipp_core.jobs.executors import CascadeSpec, InProcessExecutor  # noqa: E402
from sipp_core.jobs.ray_executor import RayExecutor, ray_module  # noqa: E402
from sipp_core.jobs.sweeps import DEFAULT_METHODS, geometric_ratios, sweep  # noqa: E402
from sipp_core.runtime import configure_torch  # noqa: E402
from sipp_core.sensitivity.api import compute_sensitivities  # noqa: E402
from sipp_core.zoo.models import build_model  # noqa: E402

STEP_KEYS = ("keep_ratio", "kept", "accuracy_pruned", "accuracy_finetuned", "agreement_pruned", "accuracy_curve",
             "loss_curve")


def _empty(x):
    return x


def per_task_overhead(ray, n: int = 200) -> tuple[float, float]:
    """(round trip of one empty task at a time, time per task with n in flight), in seconds."""
    f = ray.remote(_empty)
    ray.get(f.remote(0))
    t0 = time.perf_counter()
    for i in range(n // 4):
        ray.get(f.remote(i))
    serial = (time.perf_counter() - t0) / (n // 4)
    t0 = time.perf_counter()
    ray.get([f.remote(i) for i in range(n)])
    return serial, (time.perf_counter() - t0) / n


def worker_memory() -> list[tuple[int, float, float]]:
    """(pid, RSS MiB, USS MiB) of each Ray worker process (their title starts with 'ray::')."""
    out = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if cmd.startswith("ray::"):
            try:
                mem = proc.memory_full_info()
                out.append((proc.pid, mem.rss / 2**20, mem.uss / 2**20))
            except psutil.Error:
                continue
    return out


def one_point(executor) -> float:
    t0 = time.perf_counter()
    sweep("lenet5", "mnist5k", methods=["wt"], ratios=[0.1], seeds=[0], cache=False, executor=executor)
    return time.perf_counter() - t0


def cifar_estimate(nets, methods: int, ratios: int, seeds: int, epochs: int, cores: int, task_overhead_s: float,
                   sweep_overhead_s: float) -> None:
    """Per-step times of the zoo's CIFAR networks on one thread, scaled to a CIFAR-10 epoch; the grid's wall."""
    torch.manual_seed(0)
    x = torch.randn(64, 3, 32, 32)
    y = torch.randint(0, 10, (64,))
    s = torch.randn(183, 3, 32, 32)  # |S| of ResNet20 by the formula (see bench_sensitivity)
    steps_per_epoch = math.ceil(45_000 / 64)  # CIFAR-10's 50,000 minus the S-pool, batch 64 as train_masked
    rows = []
    for name in nets:
        net = build_model(name, (3, 32, 32), 10, seed=0)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        net.train()
        times = []
        for _ in range(4):
            t0 = time.perf_counter()
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
            times.append(time.perf_counter() - t0)
        step = statistics.median(times[1:])
        net.eval()
        t0 = time.perf_counter()
        compute_sensitivities(net, s)
        sens = time.perf_counter() - t0
        epoch = step * steps_per_epoch
        cascade_step = sens + epochs * epoch + task_overhead_s
        rows.append((name, step, epoch, sens, cascade_step))
        print(f"  {name:<9} train step (64 images, 1 thread) {1e3 * step:7.0f} ms -> epoch {epoch / 60:6.1f} min; "
              f"sensitivities {sens:6.1f} s; one cascade step ({epochs} epochs) {cascade_step / 3600:6.2f} h")
    chains = len(nets) * methods * seeds
    work = sum(r[4] for r in rows) * methods * seeds * ratios
    longest = max(r[4] for r in rows) * ratios
    # Chains run side by side; within one the steps wait on each other. With more chains than cores the
    # work spreads; the longest chain bounds the wall from below either way.
    wall = max(longest, work / cores) + sweep_overhead_s
    print(f"  grid: {len(nets)} networks x {methods} methods x {ratios} keep ratios x {seeds} seeds = {chains} "
          f"cascades of {ratios} steps = {chains * ratios} tasks; {work / 3600:.0f} core-hours of work")
    print(f"  ESTIMATE on {cores} cores (one core per task): {wall / 3600:.1f} h wall "
          f"(the longest cascade, {longest / 3600:.1f} h, sets it: {chains} cascades fit on {cores} cores at once)")
    print("  assumptions: per-step times above from this CPU's single core scaled linearly to an epoch; "
          f"{epochs} fine-tuning epochs per step; a cluster core as fast as this one; no GPU; data loading "
          "and evaluation not counted (each adds a few per cent); Ray's overheads as measured here.")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    p.add_argument("--count", type=int, default=8, help="keep ratios (0.5 down to 0.01, geometric)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs per keep ratio")
    p.add_argument("--cifar-epochs", type=int, default=30, help="fine-tuning epochs per step in the CIFAR estimate")
    p.add_argument("--skip-estimate", action="store_true")
    args = p.parse_args(argv)

    threads = configure_torch()
    cores = os.cpu_count() or 1
    methods = args.methods.split(",")
    ratios = geometric_ratios(0.5, 0.01, args.count)
    specs = [CascadeSpec("lenet5", "mnist5k", m, ratios, epochs=args.epochs, seed=s, device="cpu")
             for m in methods for s in range(args.seeds)]
    load_trained("lenet5", "mnist5k")  # warm-up outside the timed region: imports, data and checkpoint
    print(f"bench_distributed: lenet5 / mnist5k, {len(methods)} methods x {len(ratios)} keep ratios x {args.seeds} "
          f"seeds, prune-retrain with {args.epochs} fine-tuning epoch(s) per keep ratio = {len(specs)} cascades, "
          f"{len(specs) * len(ratios)} steps")
    print(f"torch {torch.__version__}, {threads} thread(s) per process, {cores} cores, load average "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}")

    in_one = one_point(InProcessExecutor())
    t0 = time.perf_counter()
    local, _ = InProcessExecutor().run_cascades(specs)
    t_local = time.perf_counter() - t0
    own = psutil.Process().memory_full_info()
    print(f"in-process: {t_local:.1f} s; this process afterwards: RSS {own.rss / 2**20:.0f} MiB, unique "
          f"{own.uss / 2**20:.0f} MiB (for comparison with a worker's)")

    ray = ray_module()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local benchmark cluster: no token file
    t0 = time.perf_counter()
    executor = RayExecutor(num_cpus=cores)
    executor.connect()
    t_start = time.perf_counter() - t0
    cold = one_point(executor)
    warm = one_point(executor)
    serial, pipelined = per_task_overhead(ray)
    t0 = time.perf_counter()
    remote, facts = executor.run_cascades(specs)
    t_ray = time.perf_counter() - t0
    same = all([{k: s[k] for k in STEP_KEYS} for s in a.steps] == [{k: s[k] for k in STEP_KEYS} for s in b.steps]
               for a, b in zip(local, remote))
    mem = worker_memory()
    work = sum(st["prune_s"] + st["finetune_s"] for r in remote for st in r.steps)
    print(f"Ray ({facts['workers']} workers): {t_ray:.1f} s; in-process / Ray = {t_local / t_ray:.2f}x; "
          f"steps identical: {'yes' if same else 'NO'}; {facts['retries']} retries")
    print(f"  compute inside the tasks {work:.1f} s over {facts['tasks']} tasks ({work / facts['tasks']:.2f} s each); "
          f"ideal on {facts['workers']} workers {work / facts['workers']:.1f} s")
    print(f"Ray fixed costs: start {t_start:.1f} s; one-point sweep {cold:.2f} s cold, {warm:.2f} s warm against "
          f"{in_one:.2f} s in-process (per sweep: {cold - in_one:+.2f} s cold, {warm - in_one:+.2f} s warm)")
    print(f"  per task: {1e3 * serial:.1f} ms round trip one at a time, {1e3 * pipelined:.2f} ms each with 200 in "
          f"flight")
    for pid, rss, uss in mem:
        print(f"  worker {pid}: RSS {rss:.0f} MiB, unique {uss:.0f} MiB")
    ray.shutdown()
    if not args.skip_estimate:
        torch.set_num_threads(1)
        print("CIFAR grid estimate (ESTIMATE, from per-step times measured on one thread here):")
        cifar_estimate(["resnet20", "resnet56", "vgg16_bn"], methods=5, ratios=8, seeds=3, epochs=args.cifar_epochs,
                       cores=64, task_overhead_s=serial, sweep_overhead_s=t_start + cold)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
