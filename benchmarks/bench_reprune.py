"""Re-pruning with cached sensitivities: new eps or keep ratio -> masks + accuracy on the 1,000 test digits.

    .venv/bin/python benchmarks/bench_reprune.py [--threads N]

Target (issue: engine): at most 150 ms for LeNet-300-100 on mnist5k on the 2-core CPU.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from sipp_core.plan.measure import end_to_end  # noqa: E402
from sipp_core.pipeline import evaluate_prune, prepare  # noqa: E402
from sipp_core.plan.pruning import prune  # noqa: E402
from sipp_core.runtime import configure_torch  # noqa: E402

CASES = [
    ("sipp-hybrid", "keep_ratio", 0.05), ("sipp-rand", "keep_ratio", 0.05), ("sipp-det", "keep_ratio", 0.05),
    ("sipp-hybrid", "epsilon", 0.5), ("sipp-det", "epsilon", 0.5), ("wt", "keep_ratio", 0.05),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: the app's policy)")
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    else:
        configure_torch()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    p = prepare("lenet300", "mnist5k")
    net, rec = p.model, p.record
    print(f"lenet300 / mnist5k, |S| = {p.sample_size}; prepare: load {p.timings_s['load'] * 1e3:.0f} ms, "
          f"sensitivities {p.timings_s['sensitivity'] * 1e3:.0f} ms (cached afterwards)")
    print(f"{'method':<12}{'mode':<11}{'value':>7}{'median ms':>11}{'max ms':>8}{'full report ms':>16}  target 150 ms")
    for method, mode, base in CASES:
        times = []
        for i in range(args.repeats):
            value = base * (1 + 0.02 * i)  # a new slider position every time: no result cache can help
            t = time.perf_counter()
            r = prune(net, p.s_x, method=method, sensitivities=p.sensitivities, labels=p.s_y, **{mode: value})
            end_to_end(net, r.model, rec.x_test, rec.y_test, before_logits=p.test_logits)
            times.append(time.perf_counter() - t)
        t = time.perf_counter()
        evaluate_prune(p, method=method, **{mode: base * 1.5})  # + layer errors on S and 500 held-out points
        full = time.perf_counter() - t
        med = statistics.median(times) * 1e3
        print(f"{method:<12}{mode:<11}{base:>7g}{med:>11.1f}{max(times) * 1e3:>8.1f}{full * 1e3:>16.0f}  "
              f"{'PASS' if med <= 150 else 'OVER'}")


if __name__ == "__main__":
    main()
