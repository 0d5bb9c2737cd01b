"""Speed of the nonsmoothness sweep: P paths x N points, original and 95%-pruned copy.

    .venv/bin/python benchmarks/bench_smoothness.py                 # lenet300 and lenet5, 32 x 1024
    .venv/bin/python benchmarks/bench_smoothness.py --models lenet300 --repeat 3 --threads 2
    .venv/bin/python benchmarks/bench_smoothness.py --models lenet5 --threads 1 --max-units 1024

Target (issue): lenet300, 32 paths x 1024 points, original + pruned, under 5 s
on a 2-core CPU. Random weights and random inputs: timing only. Wall time is
noisy on a shared machine, so CPU time and the load average are printed too;
each model runs with torch's default thread count and with one thread (on a
busy 2-core box one thread is often faster: every op waits for all threads).
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sipp_core.smoothness.core import compare, make_paths  # noqa: E402


def lenet300(num_classes=10):
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                         nn.Linear(100, num_classes))


def lenet5(num_classes=10):
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, num_classes),
    )


def build(name: str) -> tuple[nn.Module, str]:
    """The zoo's model if sipp_core.zoo.models is there, else the local definition."""
    try:
        from sipp_core.zoo.models import build_model

        return build_model(name, (1, 28, 28), 10, seed=0), "sipp_core.zoo.models"
    except Exception:  # noqa: BLE001 - zoo not ready: fall back
        torch.manual_seed(0)
        return {"lenet300": lenet300, "lenet5": lenet5}[name](), "local definition"


def magnitude_pruned(model: nn.Module, sparsity: float = 0.95) -> nn.Module:
    """A copy with the smallest `sparsity` fraction of each Linear/Conv weight set to 0."""
    pruned = copy.deepcopy(model)
    with torch.no_grad():
        for m in pruned.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                w = m.weight
                k = int(sparsity * w.numel())
                if k:
                    cut = w.abs().flatten().kthvalue(k).values
                    w.mul_(w.abs() > cut)
    return pruned


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="lenet300,lenet5")
    ap.add_argument("--paths", type=int, default=32)
    ap.add_argument("--points", type=int, default=1024)
    ap.add_argument("--max-units", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=1, help="runs per model; the best is reported")
    ap.add_argument("--threads", default="0,1",
                    help="comma list of torch intra-op thread counts to run; 0 = torch's default")
    args = ap.parse_args(argv)

    print(f"torch {torch.__version__}, default threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((256, 1, 28, 28), generator=gen)
    y = torch.randint(0, 10, (256,), generator=gen)
    paths = make_paths(x, y, count=args.paths, points=args.points, seed=0)
    print(f"paths: {paths.count} x {paths.points} points ({', '.join(sorted(set(paths.kinds)))})")
    header = f"{'model':10} {'threads':>7} {'source':17} {'wall s':>7} {'cpu s':>7} {'orig s':>7} {'pruned s':>8}  " \
             f"{'SMP orig':>9} {'SMP pruned':>10} {'trans orig':>10} {'trans pruned':>12}  plan"
    print(f"max_units {args.max_units}")
    print(header)
    runs = [(name, int(k)) for name in args.models.split(",") for k in args.threads.split(",")]
    for name, threads in runs:
        threads = threads or torch.get_num_threads()
        model, source = build(name)
        pruned = magnitude_pruned(model)
        best = None
        for _ in range(args.repeat):
            w0, c0 = time.perf_counter(), time.process_time()
            a, b = compare(model, pruned, paths, max_units=args.max_units, jacobian_points=8, threads=threads)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            if best is None or wall < best[0]:
                best = (wall, cpu, a, b)
        wall, cpu, a, b = best
        print(f"{name:10} {threads:7d} {source:17} {wall:7.2f} {cpu:7.2f} {a.timings_s['sweep'] + a.timings_s['jacobian']:7.2f} "
              f"{b.timings_s['sweep'] + b.timings_s['jacobian']:8.2f}  {a.summary()['smp']:9.4f} {b.summary()['smp']:10.4f} "
              f"{a.summary()['region_transitions']:10.1f} {b.summary()['region_transitions']:12.1f}  "
              f"{a.settings['paths_per_group']} paths x {a.settings['points_per_chunk']} points per chunk")
        if name == "lenet300":
            verdict = "PASS" if wall < 5.0 else "OVER"
            print(f"  lenet300 target < 5 s (original + pruned), {threads} thread(s): {verdict} ({wall:.2f} s wall)")


if __name__ == "__main__":
    main()
