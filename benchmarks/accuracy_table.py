"""The engine issue's result tables for lenet300 on mnist5k (no retraining).

    .venv/bin/python benchmarks/accuracy_table.py

1. Accuracy after pruning at keep ratios 0.1, 0.05, 0.02 for six methods, with realised keep ratios.
2. Epsilon mode with delta = 1e-6, eps in {0.1, 0.5, 1}: keep ratio, largest bound and largest
   measured held-out error per layer.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sipp_core.pipeline import evaluate_prune, prepare  # noqa: E402
from sipp_core.runtime import configure_torch  # noqa: E402

METHODS = ["sipp-det", "sipp-rand", "sipp-hybrid", "wt", "snip", "random"]


def main() -> None:
    configure_torch()
    p = prepare("lenet300", "mnist5k")
    acc0 = float((p.test_logits.argmax(1) == p.record.y_test).float().mean())
    print(f"lenet300 / mnist5k, |S| = {p.sample_size}, dense test accuracy {acc0:.4f}, delta 1e-16, seed 0\n")
    print("accuracy after pruning (realised keep ratio)")
    print(f"{'method':<13}" + "".join(f"{'keep ' + str(k):>22}" for k in (0.1, 0.05, 0.02)))
    for m in METHODS:
        cells = []
        for k in (0.1, 0.05, 0.02):
            d = evaluate_prune(p, method=m, keep_ratio=k).to_dict()
            cells.append(f"{d['accuracy_after']:.4f} ({d['keep_ratio']:.4f})")
        print(f"{m:<13}" + "".join(f"{c:>22}" for c in cells))
    print("\nepsilon mode, delta = 1e-6: keep ratio; per layer largest row bound / largest measured held-out error")
    for m in ("sipp-det", "sipp-rand", "sipp-hybrid"):
        for eps in (0.1, 0.5, 1.0):
            d = evaluate_prune(p, method=m, epsilon=eps, delta=1e-6).to_dict()
            layers = "  ".join(f"{l['name']}: {l['bound']:.3g} / {l['measured_max_heldout']:.3g}" for l in d["layers"])
            print(f"{m:<12} eps {eps:<4} keep {d['keep_ratio']:.4f} acc {d['accuracy_after']:.4f}   {layers}")


if __name__ == "__main__":
    main()
