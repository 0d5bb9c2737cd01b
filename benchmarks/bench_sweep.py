"""Speed of a trade-off sweep: 8 keep ratios x 5 methods on lenet300 / mnist5k (one seed).

    .venv/bin/python benchmarks/bench_sweep.py
    .venv/bin/python benchmarks/bench_sweep.py --measure-errors --seeds 2

Target (issue): under 60 s on a 2-core CPU, sensitivities included. The result cache is bypassed
(cache=False) so every run computes. Wall time is noisy on a shared machine, so CPU time and the load
average are printed too, with a per-stage breakdown (sensitivities per seed, mean time per point per method).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sipp_core.jobs.sweeps import DEFAULT_METHODS, format_table, geometric_ratios, sweep  # noqa: E402

TARGET_S = 60.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="lenet300")
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    p.add_argument("--count", type=int, default=8)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--measure-errors", action="store_true")
    p.add_argument("--table", action="store_true", help="print the sweep table too")
    args = p.parse_args(argv)

    import torch

    ratios = geometric_ratios(0.5, 0.01, args.count)
    methods = args.methods.split(",")
    # Warm-up outside the timed region: imports and the data set load once per process in the app too.
    from sipp_core.io.checkpoints import load_trained

    load_trained(args.model, args.dataset)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    res = sweep(args.model, args.dataset, methods=methods, ratios=ratios, seeds=args.seeds,
                measure_errors=args.measure_errors, cache=False)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    df = res.to_frame()
    print(f"bench_sweep: {args.model} / {args.dataset}, {len(methods)} methods x {len(ratios)} ratios x "
          f"{args.seeds} seed(s) = {len(df)} points, measure_errors={args.measure_errors}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    sens = res.timings_s["sensitivity"]
    prep = res.timings_s["prepare"]
    print(f"  prepare per seed (load + S + sensitivities): {', '.join(f'{v:.2f} s' for v in prep.values())}"
          f" (sensitivities {', '.join(f'{v:.2f} s' for v in sens.values())})")
    per = df.groupby("method", sort=False)["time_s"].agg(["mean", "max"])
    for m, r in per.iterrows():
        print(f"  {m:<12} per point: mean {1e3 * r['mean']:7.0f} ms, max {1e3 * r['max']:7.0f} ms")
    failed = int(df["error"].notna().sum())
    print(f"  points total {res.timings_s['points']:.2f} s; failed points: {failed}")
    verdict = "PASS" if wall < TARGET_S else "FAIL"
    print(f"wall {wall:.2f} s, CPU {cpu:.2f} s; target < {TARGET_S:.0f} s: {verdict}")
    if args.table:
        print(format_table(res))
    return 0 if wall < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
