"""Results that may differ between CPU kinds are tested on every path, on every machine.

Two things depend on the CPU: the kernels torch picks (AVX-512 and AMX, or
AVX2) and the screened conv engine's bounds (bfloat16 where the CPU multiplies
it natively, float32 elsewhere). Here the numerical tests run again with
torch, oneDNN and MKL capped at AVX2 (what an AVX2-only machine runs) and with
each bounds path forced, so that a machine of one kind also checks the other's
paths (bfloat16 is emulated where it is not native: slower, same results).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import sipp_core.sensitivity.api as sens_mod
from sipp_core.errors import BadInput

ROOT = Path(__file__).resolve().parents[1]
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
NUMERICAL = ["tests/sensitivity/test_sensitivity.py", "tests/sensitivity/test_conv_output.py",
             "tests/smoothness/test_smoothness.py", "tests/sensitivity/test_bench_reference.py",
             "tests/plan/test_bounds.py", "tests/plan/test_sparsify.py"]
PATHS = {
    "native kernels, float32 bounds": {sens_mod.BOUNDS_ENV: "float32"},
    "native kernels, bfloat16 bounds": {sens_mod.BOUNDS_ENV: "bfloat16"},
    "AVX2 kernels, float32 bounds": {**AVX2, sens_mod.BOUNDS_ENV: "float32"},
    "AVX2 kernels, bfloat16 bounds": {**AVX2, sens_mod.BOUNDS_ENV: "bfloat16"},
}


def _env(extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in AVX2 and k != sens_mod.BOUNDS_ENV}
    return {**env, **extra}


@pytest.mark.parametrize("path", list(PATHS))
def test_numerical_tests_pass_on_every_cpu_path(path):
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *NUMERICAL],
                          cwd=ROOT, env=_env(PATHS[path]), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{path}:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"


_PROBE = textwrap.dedent("""
    import hashlib, json, torch
    from torch import nn
    from sipp_core.smoothness.core import make_paths, nonsmoothness
    from sipp_core import compute_sensitivities
    import sipp_core.sensitivity.api as sm
    from sipp_core.structured.filters import prune_filters
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(6, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32, 16), nn.ReLU(),
                        nn.Linear(16, 3)).eval()
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.5, 0.5); net[1].running_var.uniform_(0.5, 2)
    x = torch.randn(24, 1, 8, 8)
    rec = nonsmoothness(net, make_paths(x, torch.arange(24) % 3, count=4, points=300, seed=1), jacobian_points=0)
    sens = compute_sensitivities(net, x.relu()[:16])
    pfp = prune_filters(net, x.relu()[:16], method="pfp", keep_ratio=0.5)
    print(json.dumps({
        "pfp": [[w.in_after, w.out_after] for w in pfp.widths] + [pfp.params["pruned"]],
        "bf16": bool(sm._bf16_bounds(torch.device("cpu"))),
        "logits": hashlib.sha256(rec.logits.numpy().tobytes()).hexdigest(),
        "smp": rec.smp.tolist(), "transitions": rec.region_transitions.tolist(),
        "sens": {k: v.double().flatten().tolist() for k, v in sens.items()},
    }))
""")


def _probe(extra: dict) -> dict:
    proc = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, env=_env(extra), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_same_numbers_on_every_cpu_path():
    """The sweep's signals are bit-identical across CPU kinds (its products are rounded once from
    float64); sensitivities agree to float32 round-off (the layer outputs they divide by are
    float32 products, whose last bits depend on the kernel), and PFP keeps the same channels."""
    runs = {name: _probe(extra) for name, extra in PATHS.items()}
    ref = runs["native kernels, float32 bounds"]
    assert runs["native kernels, bfloat16 bounds"]["bf16"] and not ref["bf16"]
    for name, got in runs.items():
        assert got["logits"] == ref["logits"], name
        assert got["smp"] == ref["smp"] and got["transitions"] == ref["transitions"], name
        assert got["pfp"] == ref["pfp"], name  # filter pruning keeps the same channels on every path
        for layer, values in ref["sens"].items():
            torch.testing.assert_close(torch.tensor(got["sens"][layer]), torch.tensor(values), rtol=1e-5,
                                       atol=0, msg=lambda m: f"{name}, {layer}: {m}")


def test_bounds_path_follows_the_environment(monkeypatch):
    for value, want in (("float32", False), ("bfloat16", True)):
        monkeypatch.setattr(sens_mod, "_BF16_CPU", None)
        monkeypatch.setenv(sens_mod.BOUNDS_ENV, value)
        assert sens_mod._bf16_bounds(torch.device("cpu")) is want
    monkeypatch.setattr(sens_mod, "_BF16_CPU", None)
    monkeypatch.setenv(sens_mod.BOUNDS_ENV, "fast")
    with pytest.raises(BadInput, match="auto, float32 or bfloat16"):
        sens_mod._bf16_bounds(torch.device("cpu"))
    monkeypatch.setattr(sens_mod, "_BF16_CPU", None)
