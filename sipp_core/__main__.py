"""Command line: `sipp {train,prune,sweep,study} ...` or `python -m sipp_core ...` (see --help).

Every anticipated failure prints one message naming the problem and the fix,
never a traceback: exit status 2 for bad arguments or input, 1 for a failure
(an unreadable checkpoint, an offline data set, a full disk). SIPP_DEBUG=1
shows the traceback as well, for reporting a bug.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import sys
import textwrap
import time
import warnings
from pathlib import Path

from .cli_args import add_epochs_argument, epochs_arg
from .console import ProgressPrinter, warning_line
from .errors import BadInput, SippError, StorageError
from .io.byo import AUTO, MODEL_MAX_BYTES, load_exported_upload, load_npz_upload, load_state_dict_upload
from .io.checkpoints import TrainedModel, cache_dir, checkpoint_name, save_checkpoint
from .io.data import load_dataset
from .io.npz import NPZ_MAX_BYTES
from .io.outputs import check_output_file, check_output_folder
from .jobs.study import add_study_parser
from .jobs.sweeps import add_sweep_parser
from .options import METHODS, PREPROCESSING, STRUCTURED_METHODS, STRUCTURED_TARGETS
from .pipeline import evaluate_prune, prepare, prepare_trained
from .plan.pruning import to_json, validate_arguments
from .runtime import configure_torch
from .structured.filters import validate as validate_filter_arguments
from .structured.report import evaluate_filters
from .zoo.layers import left_dense
from .zoo.models import build_model
from .zoo.train import DEFAULT_EPOCHS, pick_device, train_model

SEED_MAX = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit integer


def cmd_train(args) -> int:
    if args.out:  # before the training, which may take hours: a missing, read-only or folder path is said now
        check_output_file(args.out, "--out")
    default_epochs = DEFAULT_EPOCHS.get(args.model, 30)
    if args.epochs is None:  # the checkpoint prune, sweep, study and the app look for
        args.epochs = default_epochs
    record = load_dataset(args.dataset)
    model = build_model(args.model, record.input_shape, record.num_classes, seed=args.seed)
    start = time.perf_counter()
    model, acc = train_model(model, record, epochs=args.epochs, seed=args.seed, device=args.device,
                             progress=ProgressPrinter("train"))
    took = time.perf_counter() - start
    path = args.out or (cache_dir() / checkpoint_name(args.model, args.dataset, args.epochs, args.seed))

    save_checkpoint(Path(path), model, name=args.model, dataset=args.dataset, epochs=args.epochs, seed=args.seed,
                    input_shape=record.input_shape, num_classes=record.num_classes, test_accuracy=acc)
    print(f"{args.model} on {args.dataset}: test accuracy {acc:.4f} ({len(record.x_test)} test points), "
          f"trained in {took:.1f} s; saved to {path}")
    if not args.out and args.seed == 0:  # in the cache, under the name prune and sweep look for
        if args.epochs != default_epochs:
            print(f"note: prune and sweep use this checkpoint with --epochs {args.epochs}; study and the app use the "
                  f"{default_epochs}-epoch one")
    elif args.epochs != default_epochs or args.seed:
        print(f"note: prune, sweep, study and the app use the {default_epochs}-epoch, seed-0 checkpoint of "
              f"{args.model} in the cache" + ("" if args.out else (
                  f"; this one loads in Python with sipp_core.load_trained({args.model!r}, {args.dataset!r}, "
                  f"epochs={args.epochs}, seed={args.seed})")))
    return 0


def _fmt(v, spec=".3g"):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _rate(v) -> str:
    """A failure rate: 0% only when nothing failed (a rate of 6.7e-6 printed with .2% read as 0.00%)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return "0%" if v == 0 else "<0.01%" if v < 1e-4 else format(v, ".2%")


def _own_network(args):
    """(TrainedModel, DataRecord) of a user's --npz data with --weights (a state_dict for --model) or
    --program (an exported .pt2)."""
    record = load_npz_upload(_read_file(args.npz, "--npz", NPZ_MAX_BYTES), name=Path(args.npz).name, seed=args.seed,
                             preprocessing=args.preprocessing, max_bytes=NPZ_MAX_BYTES)
    if args.program:
        model = load_exported_upload(_read_file(args.program, "--program"), record)
        name = Path(args.program).name
    else:
        # without --model, the architecture the weights fit is found (the zoo's order first)
        model = load_state_dict_upload(_read_file(args.weights, "--weights"), args.model or AUTO, record)
        name = model.zoo_architecture
    return TrainedModel(model, name, record.name, 0, 0, math.nan, "upload", ""), record


def _read_file(path: str, flag: str, max_bytes: int = MODEL_MAX_BYTES) -> bytes:
    """The file's bytes, at most max_bytes + 1 of them (the loader names the limit when there are more)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(max_bytes + 1)
    except OSError as exc:
        raise BadInput(f"{flag} {path}: {exc.strerror or exc}", f"give {flag} the path of an existing file") from exc


def _check_sources(args) -> None:
    """--npz comes with --weights or --program; a zoo model needs --model (--weights finds its own without it)."""
    if args.npz and not (args.weights or args.program):
        raise BadInput("--npz needs the network trained on it", "add --weights FILE.pt or "
                       "--program FILE.pt2")
    if (args.weights or args.program) and not args.npz:
        raise BadInput("--weights and --program need the data they were trained on",
                       "add --npz FILE.npz (x_train, y_train, x_test, y_test)")
    if not args.model and not args.program and not args.weights:
        raise BadInput("no network given", "add --model NAME (a zoo network), or --npz with --weights or --program")
    if args.npz and args.dataset:
        raise BadInput("--dataset names a built-in data set, and --npz is your own data", "leave out --dataset")
    if args.program and args.model:
        raise BadInput("--model names the zoo architecture of --weights, and --program brings its own network",
                       "leave out --model")
    if args.epochs is not None and args.npz:
        raise BadInput("--epochs picks one of the zoo's checkpoints, and --weights or --program is your own network",
                       "leave out --epochs")


def _check_outputs(args) -> None:
    """--json and --export can be written: said before the model is loaded, trained or pruned."""
    if args.json:
        check_output_file(args.json, "--json")
    if args.export:
        check_output_folder(args.export, "--export")


def _prepared(args):
    progress = None if args.quiet else ProgressPrinter("prepare")
    if args.npz:
        trained, record = _own_network(args)
        return prepare_trained(trained, record, sample_size=args.sample_size, seed=args.seed,
                               patch_reduction=args.patch_reduction, progress=progress)
    return prepare(args.model, args.dataset or "mnist5k", sample_size=args.sample_size, seed=args.seed,
                   patch_reduction=args.patch_reduction, device=args.device, progress=progress, epochs=args.epochs)


def cmd_prune(args) -> int:
    # Validate before any expensive work so a typo answers at once.
    if args.method in STRUCTURED_METHODS:
        return cmd_prune_filters(args)
    validate_arguments(args.method, args.keep_ratio, args.epsilon, args.delta, args.patch_reduction, args.allocation)
    _check_sources(args)
    _check_outputs(args)
    prepared = _prepared(args)
    report = evaluate_prune(prepared, method=args.method, keep_ratio=args.keep_ratio, epsilon=args.epsilon,
                            delta=args.delta, seed=args.seed, allocation=args.allocation)
    d = report.to_dict()
    _warn_small_pool(prepared)
    print(f"{d['model']} on {d['dataset']}, method {d['method']}, |S| = {d['sample_size']} "
          f"(formula {d['sample_size_formula']}), delta = {d['delta']:g}")
    w = max([16] + [len(l["label"]) + 2 for l in d["layers"]])  # layers by module name and shape
    head = f"{'layer':<{w}}{'kept':>10}{'total':>10}{'density':>9}{'bound':>11}{'meas. S':>10}{'meas. held':>11}{'fail':>8}"
    print(head)
    print("-" * len(head))
    for l in d["layers"]:
        print(f"{l['label']:<{w}}{l['kept']:>10}{l['total']:>10}{l['density']:>9.4f}{_fmt(l['bound']):>11}"
              f"{_fmt(l['measured_max_s']):>10}{_fmt(l['measured_max_heldout']):>11}{_rate(l['failure_rate']):>8}")
    if d["patch_reduction"] == "mean" and any(l["kind"] != "linear" for l in d["layers"]):
        print("note: --patch-reduction mean (the authors' deterministic variant) carries no bound: the convolutions' "
              "bound column is not a guarantee (docs/sipp.md §8.11)")
    if d["dense_layers"]:
        print(textwrap.fill(left_dense((i["name"], i["reason"]) for i in d["dense_layers"]), width=105,
                            initial_indent="  ", subsequent_indent="    ", break_on_hyphens=False))
    print(f"kept {d['kept']} of {d['total']} prunable weights: keep ratio {d['keep_ratio']:.4f}; "
          f"all parameters {d['params_kept']} of {d['params_total']}")
    print(f"accuracy {d['accuracy_before']:.4f} -> {d['accuracy_after']:.4f}, agreement {d['agreement']:.4f}, "
          f"logits relative error {d['logits_rel_error']:.3g}")
    t = d["timings_s"]
    print(f"time: sensitivity {t['sensitivity'] * 1e3:.0f} ms, prune {t['prune'] * 1e3:.0f} ms, "
          f"evaluate {t['evaluate'] * 1e3:.0f} ms")
    if args.json:
        write_text(args.json, to_json(d))
        print(f"report written to {args.json}")
    if args.export:
        summary = report.result.export(args.export, check_inputs=prepared.record.x_test, report=d)
        files = ", ".join(f"{k} ({v / 1024:.0f} KiB)" for k, v in summary.files.items())
        print(f"exported to {args.export}: {files}; ONNX agrees with PyTorch to {summary.onnx_max_abs_diff:.2g} "
              f"on {summary.onnx_checked_points} test points")
    return 0


def _warn_small_pool(prepared) -> None:
    """|S| below the formula because the S-pool is small (an --npz's is 10% of x_train): said, as prune() says it."""
    n, need, pool = prepared.sample_size, prepared.sample_size_formula, len(prepared.record.x_pool)
    if n < need:
        why = (f"the S-pool holds {pool} points" if n == pool else f"--sample-size {n}")
        warning_line(f"|S| = {n} is below the {need} the guarantee's formula asks for ({why}): the sampled rows' "
                     "δ assumes the formula's |S|; give more training points (the S-pool is 10% of x_train) or "
                     "read the bounds as estimates")


def cmd_prune_filters(args) -> int:
    """prune --method pfp|pfp-rand|filter-l1|filter-random: whole channels, a physically smaller network."""
    validate_filter_arguments(args.method, args.keep_ratio, args.epsilon, args.target, args.delta)
    _check_sources(args)
    _check_outputs(args)
    prepared = _prepared(args)
    _warn_small_pool(prepared)
    report = evaluate_filters(prepared, method=args.method, keep_ratio=args.keep_ratio, epsilon=args.epsilon,
                              target=args.target, delta=args.delta, seed=args.seed,
                              progress=None if args.quiet else ProgressPrinter("prune"))
    d = report.to_dict()
    r = report.result
    goal = f"keep ratio {args.keep_ratio:g} of {args.target}" if args.keep_ratio else f"epsilon {args.epsilon:g}"
    print(f"{d['model']} on {d['dataset']}, method {d['method']}, {goal}, |S| = {d['sample_size']}")
    width = max(len(w["label"]) for w in d["widths"]) + 2
    head = f"{'layer':<{width}}{'in before':>10}{'in after':>9}{'out before':>11}{'out after':>10}  note"
    print(head)
    print("-" * len(head))
    for w in d["widths"]:
        note = ", ".join(x for x in ("gathers its inputs" if w["gathered"] else "",
                                     f"{w['folded']} constants folded" if w["folded"] else "") if x)
        print(f"{w['label']:<{width}}{w['in_before']:>10}{w['in_after']:>9}{w['out_before']:>11}{w['out_after']:>10}  {note}")
    if not r.shrunk:
        print(f"  not made smaller: {r.note}; the masked network is reported")
    p, f = d["params"], d["flops"]
    print(f"parameters {p['original']} -> {p['pruned']} ({p['pruned'] / p['original']:.4f}); "
          f"FLOPs {f['original']} -> {f['pruned']} ({f['pruned'] / f['original']:.4f}); "
          f"{r.dead_on_s} filter(s) removed as silent on all of S")
    if d["latency_ms"]:
        lat = d["latency_ms"]
        print("CPU latency (median ms): " + "; ".join(
            f"batch {b.split('_')[1]}: {lat['original'][b]:.2f} -> {lat['pruned'][b]:.2f}" for b in lat["original"]))
    print(f"accuracy {d['accuracy_before']:.4f} -> {d['accuracy_after']:.4f}, agreement {d['agreement']:.4f}")
    if args.json:
        write_text(args.json, to_json(d))
        print(f"report written to {args.json}")
    if args.export:
        summary = r.export(args.export, check_inputs=prepared.record.x_test, report=d)
        files = ", ".join(f"{k} ({v / 1024:.0f} KiB)" for k, v in summary.files.items())
        print(f"exported the smaller network to {args.export}: {files}; ONNX agrees with PyTorch to "
              f"{summary.onnx_max_abs_diff:.2g} on {summary.onnx_checked_points} test points")
    return 0


def write_text(path: str, text: str) -> None:
    """Write a report; a full or read-only disk is a StorageError naming the file and the fix."""
    try:
        with open(path, "w") as fh:
            fh.write(text)
    except OSError as exc:
        raise StorageError(f"could not write {path} ({exc.strerror or exc})",
                           "choose a writable folder with free space for the report") from exc


def seed_arg(text: str) -> int:
    """argparse type: an integer seed in 0..2**63-1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"{text} is outside 0..{SEED_MAX} (seeds are non-negative 64-bit integers)")
    return value


def device_arg(text: str) -> str:
    """argparse type: auto, cpu, cuda or cuda:N; cuda only where a CUDA GPU is present."""

    try:
        pick_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    prog = "sipp" if os.path.basename(sys.argv[0]) == "sipp" else "python -m sipp_core"
    p = argparse.ArgumentParser(prog=prog, description="SiPP Studio engine")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a zoo model and cache its checkpoint")
    t.add_argument("--model", required=True)
    t.add_argument("--dataset", default="mnist5k")
    t.add_argument("--epochs", type=epochs_arg, help="training epochs (default: the model's own, the checkpoint "
                   f"prune and sweep use: {', '.join(f'{k} {v}' for k, v in DEFAULT_EPOCHS.items())}, others 30)")
    t.add_argument("--seed", type=seed_arg, default=0)
    t.add_argument("--device", type=device_arg, default="auto", help="auto, cpu or cuda")
    t.add_argument("--out", help="checkpoint path (default: the checkpoint cache)")
    t.set_defaults(func=cmd_train)
    q = sub.add_parser("prune", help="prune a trained model and print a per-layer table")
    q.add_argument("--model", help="a zoo network, or the architecture of --weights (without it, or with auto, the "
                   "one the weights fit is found); not with --program")
    q.add_argument("--dataset", help="a built-in data set (default mnist5k); not with --npz, which is the data")
    q.add_argument("--npz", help="your own data set: x_train, y_train, x_test, y_test (with --weights or --program)")
    q.add_argument("--preprocessing", default="as-given", choices=list(PREPROCESSING),
                   help="what is done to --npz inputs first (default: as-given, the values as stored)")
    own = q.add_mutually_exclusive_group()
    own.add_argument("--weights", help="your network's state_dict (.pt) for a zoo architecture, trained on --npz")
    own.add_argument("--program", help="your network as a torch.export program (.pt2), trained on --npz")
    q.add_argument("--method", default="sipp-hybrid",
                   help=f"weights: one of {', '.join(METHODS)}; whole channels: {', '.join(STRUCTURED_METHODS)}")
    q.add_argument("--target", default="params", choices=list(STRUCTURED_TARGETS),
                   help="what a channel method's --keep-ratio counts: parameters (default) or FLOPs")
    mode = q.add_mutually_exclusive_group(required=True)
    mode.add_argument("--keep-ratio", type=float)
    mode.add_argument("--epsilon", type=float)
    q.add_argument("--delta", type=float, default=1e-16)
    q.add_argument("--sample-size", type=int, help="|S| (default: the formula of docs/sipp.md §2.5)")
    q.add_argument("--seed", type=seed_arg, default=0)
    add_epochs_argument(q)
    q.add_argument("--patch-reduction", default="max", choices=["max", "mean"])
    q.add_argument("--allocation", default="global", choices=["global", "bound-optimal"])
    q.add_argument("--device", type=device_arg, default="cpu",
                   help="where a model without a checkpoint is trained: auto, cpu or cuda (sensitivities, "
                        "pruning and evaluation always run on the CPU, where their results are exact)")
    q.add_argument("--json", help="write the JSON report here")
    q.add_argument("--export", metavar="DIR", help="write masks.pt, state_dict.pt, model.pt2, model.onnx and "
                   "report.json (+ report.csv) into DIR")
    q.add_argument("--quiet", action="store_true", help="no progress on stderr (warnings still print)")
    q.set_defaults(func=cmd_prune)

    add_sweep_parser(sub)
    add_study_parser(sub)
    return p


def _show_warning(message, category, filename, lineno, file=None, line=None):
    warning_line(message, file)


# The engine's messages are shared with the library and the app, which name arguments as Python does
# (keep_ratio=0.3, method='pfp-rand') and files as uploads; on the command line they read as its flags.
_CLI_WORDS = (
    (re.compile(r"\bmethod='([\w-]+)'"), r"--method \1"),
    (re.compile(r"\b(keep_ratio|epsilon|delta|sample_size|seed|target)=([^\s,;)]+)"),
     lambda m: f"--{m.group(1).replace('_', '-')} {m.group(2)}"),
    (re.compile(r"\b(keep_ratio|sample_size|patch_reduction)\b"), lambda m: f"--{m.group(1).replace('_', '-')}"),
    (re.compile(r"\bgive (epsilon|delta)\b"), r"give --\1"),
    (re.compile(r"'\|S\| from the formula' in the app"), "leave out --sample-size"),
    (re.compile(r"load it again with download=True"), "run the command again"),
    (re.compile(r" or data_dir\b"), ""),
    (re.compile(r"\bupload it as a state_dict and choose its architecture"), "give it with --weights and its --model"),
    (re.compile(r"\bupload it as an exported program"), "give it with --program"),
    (re.compile(r"\bupload it in the model box, and the data as"),
     "give it with --weights or --program, and the data with --npz, saved with"),
    (re.compile(r"\bupload the network as an exported program \(\.pt2\)"),
     "give the network as an exported program (--program FILE.pt2)"),
    (re.compile(r"\bupload data sets as a data set"), "give data sets with --npz"),
    # weights for another data set (io.state_dicts.fits_other_data): the command line takes a user's weights with
    # their own data only
    (re.compile(r"choose (?:the architecture '([\w-]+)' and )?(?:a data set of that shape \([^)]*\), or upload your "
                r"own data of that shape \(\.npz\)|your own data of that shape \(upload an \.npz\))"),
     lambda m: f"give {'--model ' + m.group(1) + ' and ' if m.group(1) else ''}--npz data of that shape"),
    (re.compile(r"\bthe uploaded (\w)"), r"the \1"),
    (re.compile(r"\bupload\b"), "give"),
    (re.compile(r"\bUpload\b"), "Give"),
)


def cli_words(text: str) -> str:
    """An engine message as the command line says it: its flags instead of Python's argument names."""
    for pattern, repl in _CLI_WORDS:
        text = pattern.sub(repl, text)
    return text


def report_error(exc: BaseException) -> int:
    """Print one message (problem, then fix) for an error; return the exit status."""
    if isinstance(exc, SippError):
        words = (lambda t: t) if exc.own_words else cli_words
        print(f"error: {words(exc.problem)}", file=sys.stderr)
        if exc.fix:
            print(f"fix: {words(exc.fix)}", file=sys.stderr)
        return exc.exit_code
    if isinstance(exc, (ValueError, TypeError)):  # the engine's argument checks name the argument and range
        print(f"error: {cli_words(str(exc))}", file=sys.stderr)
        return BadInput.exit_code
    if isinstance(exc, MemoryError):
        print("error: out of memory\nfix: choose a smaller model, data set or --sample-size", file=sys.stderr)
        return 1
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: a file could not be read or written{where}: {exc.strerror or exc}\n"
              "fix: check that the folder exists, is writable and has free space", file=sys.stderr)
        return 1
    print(f"error: unexpected {type(exc).__name__}: {exc}\n"
          "fix: this is a bug; run again with SIPP_DEBUG=1 and report the traceback", file=sys.stderr)
    return 1


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    configure_torch()  # small intra-op pool: measured 5-20x faster than 2 threads on a busy 2-core box
    warnings.showwarning = _show_warning
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one message, not a traceback (SIPP_DEBUG=1 shows it)
        if os.environ.get("SIPP_DEBUG"):
            raise
        return report_error(exc)


if __name__ == "__main__":
    sys.exit(main())
