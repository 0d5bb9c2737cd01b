"""Command line: `python -m sipp_core {train,prune,sweep} ...` (see --help)."""
from __future__ import annotations

import argparse
import sys
import time


def _progress_printer(prefix: str):
    def show(fraction: float, message: str) -> None:
        bar = "#" * int(30 * fraction)
        print(f"\r{prefix} [{bar:<30}] {100 * fraction:5.1f}% {message[:60]:<60}", end="", file=sys.stderr, flush=True)
        if fraction >= 1.0:
            print(file=sys.stderr)

    return show


def cmd_train(args) -> int:
    from .checkpoints import cache_dir, checkpoint_name, save_checkpoint
    from .data import load_dataset
    from .models import build_model
    from .train import train_model

    record = load_dataset(args.dataset)
    model = build_model(args.model, record.input_shape, record.num_classes, seed=args.seed)
    start = time.perf_counter()
    model, acc = train_model(model, record, epochs=args.epochs, seed=args.seed, device=args.device,
                             progress=_progress_printer("train"))
    took = time.perf_counter() - start
    path = args.out or (cache_dir() / checkpoint_name(args.model, args.dataset, args.epochs, args.seed))
    from pathlib import Path

    save_checkpoint(Path(path), model, name=args.model, dataset=args.dataset, epochs=args.epochs, seed=args.seed,
                    input_shape=record.input_shape, num_classes=record.num_classes, test_accuracy=acc)
    print(f"{args.model} on {args.dataset}: test accuracy {acc:.4f} ({len(record.x_test)} test points), "
          f"trained in {took:.1f} s; saved to {path}")
    return 0


def _fmt(v, spec=".3g"):
    import math

    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def cmd_prune(args) -> int:
    from .pipeline import evaluate_prune, prepare
    from .pruning import to_json, validate_arguments

    # Validate before any expensive work so a typo answers at once.
    validate_arguments(args.method, args.keep_ratio, args.epsilon, args.delta, args.patch_reduction, args.allocation)
    prepared = prepare(args.model, args.dataset, sample_size=args.sample_size, seed=args.seed,
                       patch_reduction=args.patch_reduction, device=args.device)
    report = evaluate_prune(prepared, method=args.method, keep_ratio=args.keep_ratio, epsilon=args.epsilon,
                            delta=args.delta, seed=args.seed, allocation=args.allocation)
    d = report.to_dict()
    print(f"{d['model']} on {d['dataset']}, method {d['method']}, |S| = {d['sample_size']} "
          f"(formula {d['sample_size_formula']}), delta = {d['delta']:g}")
    head = f"{'layer':<16}{'kept':>10}{'total':>10}{'density':>9}{'bound':>11}{'meas. S':>10}{'meas. held':>11}{'fail':>8}"
    print(head)
    print("-" * len(head))
    for l in d["layers"]:
        print(f"{l['name']:<16}{l['kept']:>10}{l['total']:>10}{l['density']:>9.4f}{_fmt(l['bound']):>11}"
              f"{_fmt(l['measured_max_s']):>10}{_fmt(l['measured_max_heldout']):>11}{_fmt(l['failure_rate'], '.2%'):>8}")
    for item in d["dense_layers"]:
        print(f"  left dense: {item['name']} ({item['reason']})")
    print(f"kept {d['kept']} of {d['total']} prunable weights: keep ratio {d['keep_ratio']:.4f}; "
          f"all parameters {d['params_kept']} of {d['params_total']}")
    print(f"accuracy {d['accuracy_before']:.4f} -> {d['accuracy_after']:.4f}, agreement {d['agreement']:.4f}, "
          f"logits relative error {d['logits_rel_error']:.3g}")
    t = d["timings_s"]
    print(f"time: sensitivity {t['sensitivity'] * 1e3:.0f} ms, prune {t['prune'] * 1e3:.0f} ms, "
          f"evaluate {t['evaluate'] * 1e3:.0f} ms")
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(to_json(d))
        print(f"report written to {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .planner import METHODS

    p = argparse.ArgumentParser(prog="python -m sipp_core", description="SiPP Studio engine")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a zoo model and cache its checkpoint")
    t.add_argument("--model", required=True)
    t.add_argument("--dataset", default="mnist5k")
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto, cpu or cuda")
    t.add_argument("--out", help="checkpoint path (default: the checkpoint cache)")
    t.set_defaults(func=cmd_train)
    q = sub.add_parser("prune", help="prune a trained model and print a per-layer table")
    q.add_argument("--model", required=True)
    q.add_argument("--dataset", default="mnist5k")
    q.add_argument("--method", default="sipp-hybrid", help=f"one of {', '.join(METHODS)}")
    mode = q.add_mutually_exclusive_group(required=True)
    mode.add_argument("--keep-ratio", type=float)
    mode.add_argument("--epsilon", type=float)
    q.add_argument("--delta", type=float, default=1e-16)
    q.add_argument("--sample-size", type=int, help="|S| (default: the formula of SPEC section 2.5)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--patch-reduction", default="max", choices=["max", "mean"])
    q.add_argument("--allocation", default="global", choices=["global", "bound-optimal"])
    q.add_argument("--device", default="cpu", help="auto, cpu or cuda")
    q.add_argument("--json", help="write the JSON report here")
    q.set_defaults(func=cmd_prune)
    from .sweeps import add_sweep_parser

    add_sweep_parser(sub)
    return p


def main(argv=None) -> int:
    from .runtime import configure_torch

    args = build_parser().parse_args(argv)
    configure_torch()  # small intra-op pool: measured 5-20x faster than 2 threads on a busy 2-core box
    try:
        return args.func(args)
    except ValueError as exc:  # bad arguments or data: a message, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
