"""Your own network: the time from an upload to the first result, and the export of the pruned network.

    .venv/bin/python benchmarks/bench_upload.py [--repeat 3]

For an 8x8-digits MLP trained on the raw stored values and for a ResNet20 (random weights, 500 random
32x32 RGB points: timing only), the steps a Bring-your-own upload runs, each timed: read the .npz
(preprocessing as given), check and load the state_dict, draw S and compute sensitivities, prune
(sipp-hybrid, keep ratio 0.1) and evaluate; then the export (masks, state_dict, .pt2, ONNX checked
with onnxruntime on the test split). Prints the median of --repeat runs and the ONNX agreement, and
the digits MLP's accuracy beside plain PyTorch's on the same test split.
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from rawdigits import raw_digits_files  # noqa: E402
from sipp_core.io.byo import load_npz_upload, load_state_dict_upload  # noqa: E402
from sipp_core.io.checkpoints import TrainedModel  # noqa: E402
from sipp_core.pipeline import evaluate_prune, prepare_trained  # noqa: E402
from sipp_core.runtime import configure_torch  # noqa: E402
from sipp_core.zoo.models import build_model  # noqa: E402


def resnet20_files() -> tuple[bytes, bytes]:
    rng = np.random.default_rng(0)
    x = rng.random((500, 32, 32, 3), dtype=np.float32)
    y = np.arange(500) % 10
    data, weights = io.BytesIO(), io.BytesIO()
    np.savez(data, x_train=x[:400], y_train=y[:400], x_test=x[400:], y_test=y[400:])
    torch.save(build_model("resnet20", (3, 32, 32), 10, seed=0).state_dict(), weights)
    return data.getvalue(), weights.getvalue()


def run_once(data: bytes, weights: bytes, arch: str) -> tuple[dict, float, float]:
    t = {}
    t0 = time.perf_counter()
    record = load_npz_upload(data, name=f"bench-{time.perf_counter_ns()}")  # a new name: no cached record
    t["read .npz"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = load_state_dict_upload(weights, arch, record)
    t["check + load weights"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    trained = TrainedModel(model, arch, record.name, 0, 0, float("nan"), "upload", "")
    prepared = prepare_trained(trained, record, seed=0)
    t["S + sensitivities"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = evaluate_prune(prepared, method="sipp-hybrid", keep_ratio=0.1)
    t["prune + evaluate"] = time.perf_counter() - t0
    t["first result (sum)"] = sum(t.values())
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        summary = report.result.export(tmp, check_inputs=record.x_test, report=report.to_dict())
    t["export (pt2 + ONNX + check)"] = time.perf_counter() - t0
    return t, summary.onnx_max_abs_diff, report.end_to_end.accuracy_before


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    configure_torch()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {args.repeat} runs")
    digits, digits_w, plain = raw_digits_files()
    cases = [("digits MLP 64-32 (raw inputs)", digits, digits_w, "mlp"),
             ("ResNet20 (random weights, 500 random 32x32 points)", *resnet20_files(), "resnet20")]
    for title, data, weights, arch in cases:
        runs = [run_once(data, weights, arch) for _ in range(args.repeat)]
        print(f"\n{title}")
        for step in runs[0][0]:
            print(f"  {step:<30}{statistics.median(r[0][step] for r in runs) * 1e3:9.0f} ms")
        print(f"  ONNX vs PyTorch, largest |logit difference| on the test split: {max(r[1] for r in runs):.2g}")
        if arch == "mlp":
            print(f"  accuracy before pruning: {runs[0][2]:.6f} (plain PyTorch on the same split: {plain:.6f})")


if __name__ == "__main__":
    main()
