"""The nonsmoothness issue's table: SMP and region transitions before and after pruning.

    .venv/bin/python benchmarks/smoothness_table.py [--keep-ratio 0.05] [--paths 32] [--points 1024]

lenet300 and lenet5 on mnist5k (shipped checkpoints), sipp-hybrid and wt, the same paths for
every model (mixed kinds between held-out test digits, seed 0).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sipp_core.pipeline import evaluate_prune, prepare  # noqa: E402
from sipp_core.runtime import configure_torch  # noqa: E402
from sipp_core.smoothness.core import compare, make_paths  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep-ratio", type=float, default=0.05)
    ap.add_argument("--paths", type=int, default=32)
    ap.add_argument("--points", type=int, default=1024)
    ap.add_argument("--max-units", type=int, default=1024)
    args = ap.parse_args()
    configure_torch()
    print(f"{'model':<10}{'method':<13}{'acc after':>10}{'SMP before':>12}{'SMP after':>11}"
          f"{'trans. before':>15}{'trans. after':>14}{'time s':>8}")
    for model in ("lenet300", "lenet5"):
        p = prepare(model, "mnist5k")
        paths = make_paths(p.record.x_test, p.record.y_test, count=args.paths, points=args.points, seed=0)
        for method in ("sipp-hybrid", "wt"):
            rep = evaluate_prune(p, method=method, keep_ratio=args.keep_ratio)
            t = time.perf_counter()
            c = compare(p.model, rep.result.model, paths, max_units=args.max_units, threads=1)
            took = time.perf_counter() - t
            o, q = c.original, c.pruned
            print(f"{model:<10}{method:<13}{rep.end_to_end.accuracy_after:>10.4f}{float(o.smp.mean()):>12.4g}"
                  f"{float(q.smp.mean()):>11.4g}{float(o.region_transitions.float().mean()):>15.1f}"
                  f"{float(q.region_transitions.float().mean()):>14.1f}{took:>8.1f}")
    print(f"(means over {args.paths} paths x {args.points} points; SMP of the logits summed over classes, "
          f"as computed here; keep ratio {args.keep_ratio})")


if __name__ == "__main__":
    main()
