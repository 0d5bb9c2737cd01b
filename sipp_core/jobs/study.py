"""A paper-style study from one TOML file: networks x methods x keep ratios x seeds, with or without
prune-retrain, on either executor.

    python -m sipp_core study studies/sipp_mnist.toml --executor ray --out results/

    res = run_study(load_config("studies/sipp_mnist.toml"), executor="ray")
    res.rows        # tidy: one row per (network, method, seed, keep ratio)
    res.summary     # mean and std over seeds per (network, method, keep ratio)

The file (every key but ``networks`` optional; unknown keys are refused, so a typo cannot pass silently):

    name = "sipp-mnist"
    methods = ["sipp-det", "sipp-rand", "sipp-hybrid", "wt", "snip"]
    ratios = [0.5, 0.3, 0.2, 0.1, 0.05]     # or "0.5:0.01:8": 8 keep ratios on a geometric grid
    seeds = 3                               # or a list of seeds
    sample_size = 500                       # |S|; leave out for the formula (capped at the S-pool)
    delta = 1e-16

    [[networks]]
    model = "lenet300"
    dataset = "mnist"                       # used when its files are on disk,
    fallback = "mnist5k"                    # else this one (offline)

    [retrain]                               # leave the table out for prune-only curves
    epochs = 3                              # fine-tuning epochs at each keep ratio
    lr = 1e-3
    batch_size = 64
    device = "cpu"                          # "auto" trains on a GPU when there is one

Without ``[retrain]`` each network is one sweep (``sweeps.sweep``: cached and resumable by its settings);
with it, every (network, method, seed) is a prune-retrain cascade down the keep ratios
(``retrain.prune_retrain``), kept once finished, so an interrupted study reruns only the cascades it had
not finished (``--no-cache`` recomputes everything). ShrinkBench's protocol asks for at least 3 seeds and at least 5 keep ratios
per curve; a study with fewer runs, and its output says so.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..console import ProgressPrinter
from ..errors import BadInput, SippError, StorageError, fix_of
from ..io.checkpoints import cache_dir
from ..io.data_files import missing_files
from ..io.outputs import check_output_folder
from ..options import METHODS, STRUCTURED_METHODS
from ..zoo.models import MODELS
from ..zoo.train import DEFAULT_LR
from .executors import CascadeSpec, get_executor
from .job_progress import JobProgress
from .retrain import CascadeResult
from .sweeps import (
    _check_methods,
    _check_ratios,
    _check_seeds,
    _checkpoint_identity,
    add_executor_arguments,
    parse_ratios,
    sweep,
)

__all__ = ["StudyConfig", "StudyResult", "load_config", "run_study", "add_study_parser", "cmd_study",
           "MIN_SEEDS", "MIN_RATIOS"]

MIN_SEEDS, MIN_RATIOS = 3, 5  # ShrinkBench's protocol
_TOP_KEYS = {"name", "methods", "ratios", "seeds", "sample_size", "delta", "networks", "retrain"}
_NET_KEYS = {"model", "dataset", "fallback"}
_RETRAIN_KEYS = {"epochs", "lr", "batch_size", "device"}
GROUP = ["network", "dataset", "method", "keep_ratio_requested"]
CASCADE_CACHE_VERSION = 1  # bump when a cached cascade's steps change meaning


@dataclass(frozen=True)
class StudyConfig:
    name: str
    networks: tuple  # of (model, dataset, fallback or None)
    methods: tuple
    ratios: tuple  # decreasing
    seeds: tuple
    sample_size: int | None = None
    delta: float = 1e-16
    retrain: dict | None = None  # epochs, lr, batch_size, device
    source: str = ""

    def protocol_notes(self) -> list[str]:
        notes = []
        if len(self.seeds) < MIN_SEEDS:
            notes.append(f"{len(self.seeds)} seed(s): ShrinkBench's protocol asks for at least {MIN_SEEDS}")
        if len(self.ratios) < MIN_RATIOS:
            notes.append(f"{len(self.ratios)} keep ratios per curve: ShrinkBench's protocol asks for at least "
                         f"{MIN_RATIOS}")
        return notes


class StudyFileError(BadInput):
    """A study file's key or value, said in the file's own words (sample_size, not --sample-size)."""

    own_words = True


def _bad(where: str, problem: str, fix: str) -> BadInput:
    return StudyFileError(f"{where}: {problem}", fix)


def _checked(where: str, check, fix: str | None = None):
    """check()'s value; its refusal as the study file's, with `fix` (else the refusal's own)."""
    try:
        return check()
    except (ValueError, TypeError) as exc:
        problem = exc.problem if isinstance(exc, SippError) else str(exc)
        raise _bad(where, problem, fix or fix_of(exc) or "see studies/*.toml for the form of each key") from exc


def _unknown(where: str, got: dict, allowed: set) -> None:
    extra = sorted(set(got) - allowed)
    if extra:
        raise _bad(where, f"unknown key {extra[0]!r}", f"use only: {', '.join(sorted(allowed))}")


def load_config(path: str | Path) -> StudyConfig:
    """Read and check a study file (see the module docstring); every problem names the key and the fix."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise BadInput(f"the study file {path} cannot be read ({exc.strerror or exc})",
                       "give the path of a .toml study file, e.g. studies/sipp_mnist.toml") from exc
    except tomllib.TOMLDecodeError as exc:
        raise StudyFileError(f"{path} is not valid TOML ({exc})", "fix the line named; strings need quotes") from exc
    except UnicodeDecodeError as exc:  # a binary file (an .npz, a checkpoint) given as the study
        raise StudyFileError(f"{path} is not a text file, so not a study file",
                             "give the path of a .toml study file, e.g. studies/sipp_mnist.toml") from exc
    return config_from_dict(data, source=str(path))


def config_from_dict(data: dict, source: str = "study") -> StudyConfig:
    _unknown(source, data, _TOP_KEYS)
    valid = ", ".join(f'"{m}"' for m in METHODS + STRUCTURED_METHODS)
    methods = _checked(source, lambda: _check_methods(data.get("methods", ["sipp-det", "sipp-rand", "sipp-hybrid",
                                                                           "wt", "snip"])),
                       f'write methods = ["sipp-hybrid", "wt"], from {valid}')
    raw = data.get("ratios", "0.5:0.01:8")
    # a text is read as on the command line, and its refusal's own fix fits; a list gets the file's words
    ratios = _checked(source, lambda: parse_ratios(raw)) if isinstance(raw, str) else _checked(
        source, lambda: _check_ratios(raw), 'write ratios = [0.5, 0.1, 0.02], or a grid: ratios = "0.5:0.01:8"')
    seeds = _checked(source, lambda: _check_seeds(data.get("seeds", MIN_SEEDS)),
                     "write seeds = 3 (seeds 0, 1, 2) or seeds = [0, 1, 7]")
    sample_size = data.get("sample_size")
    if sample_size is not None and (isinstance(sample_size, bool) or not isinstance(sample_size, int)
                                    or sample_size < 1):
        raise _bad(source, f"sample_size must be a positive integer; got {sample_size!r}",
                   "give |S| as a whole number, or leave it out for the formula")
    delta = data.get("delta", 1e-16)
    if not isinstance(delta, (int, float)) or not 0 < delta < 1:
        raise _bad(source, f"delta must lie in (0, 1); got {delta!r}", "e.g. delta = 1e-16")
    nets = data.get("networks")
    if not isinstance(nets, list) or not nets:
        raise _bad(source, "no [[networks]] table", 'add one: [[networks]] model = "lenet300" dataset = "mnist5k"')
    networks = []
    for i, net in enumerate(nets):
        where = f"{source}, networks #{i + 1}"
        if not isinstance(net, dict):
            raise _bad(where, "is not a table", "write it as [[networks]] with model = ... and dataset = ...")
        _unknown(where, net, _NET_KEYS)
        model, dataset = net.get("model"), net.get("dataset", "mnist5k")
        if model not in MODELS:
            raise _bad(where, f"unknown model {model!r}", f"choose one of: {', '.join(MODELS)}")
        networks.append((model, str(dataset), net.get("fallback")))
    retrain = data.get("retrain")
    if retrain is not None:
        if not isinstance(retrain, dict):
            raise _bad(source, "retrain is not a table", "write [retrain] with epochs = N")
        _unknown(f"{source}, [retrain]", retrain, _RETRAIN_KEYS)
        epochs = retrain.get("epochs", 3)
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise _bad(f"{source}, [retrain]", f"epochs must be a positive integer; got {epochs!r}", "e.g. epochs = 3")
        lr = retrain.get("lr", DEFAULT_LR)
        if not isinstance(lr, (int, float)) or not (lr > 0 and math.isfinite(lr)):
            raise _bad(f"{source}, [retrain]", f"lr must be a positive number; got {lr!r}", "e.g. lr = 1e-3")
        batch = retrain.get("batch_size", 64)
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise _bad(f"{source}, [retrain]", f"batch_size must be a positive integer; got {batch!r}",
                       "e.g. batch_size = 64")
        device = retrain.get("device", "cpu")
        if device not in ("cpu", "auto", "cuda"):
            raise _bad(f"{source}, [retrain]", f"device must be cpu, auto or cuda; got {device!r}",
                       'e.g. device = "cpu"')
        retrain = dict(epochs=epochs, lr=float(lr), batch_size=batch, device=device)
    name = data.get("name", Path(source).stem)
    # the default output folder is "<name>-results": a name is a plain file name, never a path ("../../etc/x")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}", name) or ".." in name:
        raise _bad(source, f"name must be a plain name of letters, digits, '-', '_' and '.'; got {name!r}",
                   'e.g. name = "sipp-mnist" (give the output folder with --out)')
    return StudyConfig(name=name, networks=tuple(networks), methods=methods,
                       ratios=ratios, seeds=seeds, sample_size=sample_size, delta=float(delta), retrain=retrain,
                       source=source)


def _cascade_path(spec: CascadeSpec) -> Path | None:
    """Where a finished cascade is kept: a key of every setting and the checkpoint file's identity."""
    ident = _checkpoint_identity(spec.model, spec.dataset)
    if not ident.get("path"):
        return None
    settings = dict(model=spec.model, dataset=spec.dataset, method=spec.method,
                    schedule=[float(r) for r in spec.schedule], epochs=spec.epochs, seed=spec.seed, lr=spec.lr, batch_size=spec.batch_size,
                    sample_size=spec.sample_size, delta=spec.delta, device=spec.device)
    blob = json.dumps(dict(v=CASCADE_CACHE_VERSION, settings=settings, checkpoint=ident), sort_keys=True, default=str)
    return cache_dir().parent / "cascades" / f"{hashlib.sha256(blob.encode()).hexdigest()[:24]}.json"


def _read_cascade(spec: CascadeSpec) -> CascadeResult | None:
    path = _cascade_path(spec)
    if path is None or not path.exists():
        return None
    try:
        d = json.loads(path.read_text())
        return CascadeResult(settings=d["settings"], dense_accuracy=d["dense_accuracy"], steps=tuple(d["steps"]),
                             cancelled=False, timings_s=d.get("timings_s", {}), device=d.get("device", ""))
    except (ValueError, KeyError, OSError):
        return None  # a damaged entry is simply recomputed


def _write_cascade(spec: CascadeSpec, res: CascadeResult) -> None:
    path = _cascade_path(spec)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(res.to_json())
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache is not an error: the study just cannot resume


def _resolve_dataset(dataset: str, fallback: str | None, notes: list) -> str:
    """The network's data set when it can be used here without a download, else its fallback."""
    try:
        missing = missing_files(dataset)
    except ValueError:
        missing = []  # generated or shipped data sets (mnist5k, moons) have no files to miss
    if not missing or fallback is None:
        return dataset
    note = f"{dataset} is not on disk ({missing[0].name} missing): ran on {fallback} instead"
    if note not in notes:
        notes.append(note)
    return fallback


@dataclass
class StudyResult:
    config: StudyConfig
    rows: object  # pandas DataFrame, tidy
    summary: object  # pandas DataFrame: mean and std over seeds
    notes: list = field(default_factory=list)
    run: dict = field(default_factory=dict)
    cancelled: bool = False
    seconds: float = 0.0

    def write(self, folder: str | Path) -> list[Path]:
        """rows.csv, summary.csv, and rows.parquet when pyarrow is installed; returns the files written."""
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            out = [folder / "rows.csv", folder / "summary.csv"]
            self.rows.to_csv(out[0], index=False)
            self.summary.to_csv(out[1], index=False)
            try:
                import pyarrow  # noqa: F401 - deferred: optional; only decides whether Parquet is written
            except ImportError:
                return out
            self.rows.to_parquet(folder / "rows.parquet", index=False)
            return out + [folder / "rows.parquet"]
        except OSError as exc:
            raise StorageError(f"could not write the study's results to {folder} ({exc.strerror or exc})",
                               "choose a writable folder with free space (--out)") from exc


def summarize(rows):
    """Mean and std (over seeds, ddof=1 as papers report) of the final accuracy per network, method, keep ratio."""
    import pandas as pd  # deferred: only frames need pandas (~0.5 s to import)

    if rows.empty:
        return pd.DataFrame(columns=GROUP + ["seeds", "keep_ratio", "accuracy_mean", "accuracy_std",
                                             "accuracy_drop_mean", "accuracy_drop_std"])
    g = rows.groupby(GROUP, sort=False)
    out = g.agg(seeds=("seed", "nunique"), keep_ratio=("keep_ratio", "mean"),
                accuracy_mean=("accuracy", "mean"), accuracy_std=("accuracy", "std"),
                accuracy_drop_mean=("accuracy_drop", "mean"), accuracy_drop_std=("accuracy_drop", "std"))
    return out.reset_index()


def run_study(config: StudyConfig | str | Path, *, executor=None, ray_address: str | None = None, progress=None,
              should_stop=None, cache: bool = True) -> StudyResult:
    """Run every network x method x keep ratio x seed of the study (see the module docstring).

    cache: read back and keep finished work, so an interrupted study resumes: sweeps by their settings key
    (``sweeps.sweep``), cascades as whole cascades under a key of their settings and the checkpoint's
    identity (``<cache>/cascades/<key>.json``); a cascade cut off mid-way runs again from its start."""
    import pandas as pd  # deferred: only frames need pandas (~0.5 s to import)

    if not isinstance(config, StudyConfig):
        config = load_config(config)
    runner = get_executor(executor, ray_address=ray_address)
    job = JobProgress(progress)
    notes = list(config.protocol_notes())
    nets = [(m, _resolve_dataset(d, f, notes)) for m, d, f in config.networks]
    t0 = time.perf_counter()
    records, run, cancelled = [], dict(executor=runner.name), False
    if config.retrain is None:
        for i, (model, dataset) in enumerate(nets):
            res = sweep(model, dataset, methods=config.methods, ratios=config.ratios, seeds=config.seeds,
                        sample_size=config.sample_size, delta=config.delta, executor=runner, cache=cache,
                        progress=job.stage(i / len(nets), (i + 1) / len(nets), f"{model} on {dataset}: "),
                        should_stop=should_stop)
            for r in res.rows:
                records.append(dict(network=model, dataset=dataset, method=r["method"], seed=r["seed"],
                                    keep_ratio_requested=r["keep_ratio_requested"], keep_ratio=r["keep_ratio"],
                                    accuracy_dense=r["accuracy_before"], accuracy_pruned=r["accuracy_after"],
                                    accuracy=r["accuracy_after"], accuracy_drop=r["accuracy_drop"],
                                    bound_max=r["bound_max"], retrained=False, error=r["error"]))
            run.update({k: v for k, v in res.run.items() if k in ("workers", "worker_processes")})
            run["retries"] = run.get("retries", 0) + res.run.get("retries", 0)
            if res.cancelled:
                cancelled = True
                break
    else:
        rt = config.retrain
        specs = [CascadeSpec(model, dataset, method, config.ratios, epochs=rt["epochs"], seed=seed, lr=rt["lr"],
                             batch_size=rt["batch_size"], sample_size=config.sample_size, delta=config.delta,
                             device=rt["device"])
                 for model, dataset in nets for method in config.methods for seed in config.seeds]
        done = {i: _read_cascade(spec) for i, spec in enumerate(specs)} if cache else {}
        done = {i: res for i, res in done.items() if res is not None}
        todo = [spec for i, spec in enumerate(specs) if i not in done]
        if done:
            notes.append(f"{len(done)} of {len(specs)} cascades read back from an earlier run of these settings")
        results, facts = (runner.run_cascades(todo, progress=job.stage(0.0, 1.0), should_stop=should_stop) if todo
                          else ([], dict(cancelled=False)))
        cancelled = bool(facts.pop("cancelled"))
        run.update(facts, resumed=len(done))
        if cache:
            for spec, res in zip(todo, results):
                if not res.cancelled and len(res.steps) == len(spec.schedule):
                    _write_cascade(spec, res)
        ran = iter(results)
        ordered = [(spec, done[i] if i in done else next(ran, None)) for i, spec in enumerate(specs)]
        for spec, res in ordered:
            if res is None:
                continue
            for st in res.steps:
                records.append(dict(network=spec.model, dataset=spec.dataset, method=spec.method, seed=spec.seed,
                                    keep_ratio_requested=st["keep_ratio_requested"], keep_ratio=st["keep_ratio"],
                                    accuracy_dense=res.dense_accuracy, accuracy_pruned=st["accuracy_pruned"],
                                    accuracy=st["accuracy_finetuned"], accuracy_drop=st["accuracy_drop"],
                                    bound_max=float("nan"), retrained=True, error=None))
    cols = ["network", "dataset", "method", "seed", "keep_ratio_requested", "keep_ratio", "accuracy_dense",
            "accuracy_pruned", "accuracy", "accuracy_drop", "bound_max", "retrained", "error"]
    rows = pd.DataFrame(records, columns=cols)
    job.report(1.0, "study cancelled" if cancelled else f"study finished: {len(rows)} rows")
    return StudyResult(config=config, rows=rows, summary=summarize(rows), notes=notes, run=run,
                       cancelled=cancelled, seconds=time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------------
# command line


def format_summary(res: StudyResult) -> str:
    s = res.summary
    head = f"{'network':<10}{'data':<9}{'method':<12}{'keep':>7}{'seeds':>6}{'accuracy (mean ± std)':>24}"
    lines = [head, "-" * len(head)]
    for _, r in s.iterrows():
        std = "" if math.isnan(r["accuracy_std"]) else f" ± {100 * r['accuracy_std']:.2f}"
        acc = f"{100 * r['accuracy_mean']:.2f}{std} %"
        lines.append(f"{r['network']:<10}{r['dataset']:<9}{r['method']:<12}{r['keep_ratio_requested']:>7.3g}"
                     f"{int(r['seeds']):>6}{acc:>24}")
    return "\n".join(lines)


def cmd_study(args) -> int:
    config = load_config(args.config)  # every check before any work
    out = Path(args.out or f"{config.name}-results")
    check_output_folder(out, "--out")
    res = run_study(config, executor=args.executor, ray_address=args.ray_address,
                    progress=None if args.quiet else ProgressPrinter("study", width=70), cache=not args.no_cache)
    c = res.config
    files = res.write(out)  # first: nothing said below may lose the rows
    mode = (f"prune-retrain, {c.retrain['epochs']} fine-tuning epochs per keep ratio" if c.retrain
            else "prune only")
    # a study whose every point came from the cache started no Ray worker: no count to give
    workers = f" ({res.run['workers']} workers)" if res.run.get("executor") == "ray" and res.run.get("workers") else ""
    print(f"study {c.name}: {len(c.networks)} networks x {len(c.methods)} methods x {len(c.ratios)} keep ratios x "
          f"{len(c.seeds)} seeds, {mode}; {res.run.get('executor')} executor{workers}; {res.seconds:.0f} s")
    for note in res.notes:
        print(f"note: {note}")
    print(format_summary(res))
    print("written: " + ", ".join(str(f) for f in files))
    if res.cancelled:
        print("the study was interrupted: the files hold the rows finished so far")
        return 1
    return 0


def add_study_parser(subparsers):
    """Add the `study` sub-command to an argparse subparsers object; returns the new parser."""
    p = subparsers.add_parser("study", help="a whole grid from a TOML file: networks x methods x ratios x seeds")
    p.add_argument("config", help="the study's TOML file (e.g. studies/sipp_mnist.toml)")
    p.add_argument("--out", help="folder for rows.csv, summary.csv (and rows.parquet); default NAME-results")
    p.add_argument("--quiet", action="store_true", help="no progress (warnings still print)")
    p.add_argument("--no-cache", action="store_true", help="recompute everything, even work an earlier run finished")
    add_executor_arguments(p, "one task per cascade step with [retrain], else one per point")
    p.set_defaults(func=cmd_study)
    return p
