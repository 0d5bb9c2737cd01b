"""Trade-off sweeps: keep ratios x methods x seeds on one trained network.

    res = sweep("lenet300", "mnist5k", methods=["sipp-hybrid", "wt"], ratio_range=(0.5, 0.01), count=8, seeds=2)
    df = res.to_frame()                     # one row per (seed, method, keep ratio)
    prune_potential(df, max_accuracy_drop=0.01)   # per method: largest pruned share within 1 point of accuracy

    python -m sipp_core sweep --model lenet300 --dataset mnist5k --methods sipp-hybrid,wt --ratios 0.5:0.01:8

How it runs: for each seed s, ``pipeline.prepare(model, dataset, seed=s)`` draws S with that seed and
computes the sensitivities once; every (method, keep ratio) point of that seed reuses them and prunes
with ``seed=s``. Keep ratios are a geometric grid from the largest to the smallest (user-set range and
count) or an explicit list. Per point: accuracy after pruning (test split), top-1 agreement with the
dense network, relative logits error, the largest per-row bound over all layers (nan for methods
without a bound), the realised keep ratio and the time to prune and evaluate the point (sensitivities
excluded; they are reported per seed in ``timings_s``). With ``measure_errors=True`` each point also
measures layer-local errors on S and held-out points (``pipeline.evaluate_prune``), which costs more
than the pruning itself; the default skips it.

Results are cached on disk (``<cache>/sweeps/<key>.json``, cache = SIPP_CACHE_DIR or
~/.cache/sipp-studio) under a key of every setting plus the checkpoint file's identity. While a sweep
runs, every finished row is appended to ``<key>.partial.jsonl``; a cancelled or killed sweep is returned
(if it returns) with ``cancelled=True``, and the next run with the same settings starts from those rows
and computes only the rest; the partial file is replaced by the whole result once it is complete. A point
whose pruning raises ValueError is kept as a row with ``error`` set and NaN figures, so one bad point does
not lose a sweep.

Where points run: ``executor=None`` (in this process, one after another) or ``"ray"`` (one Ray task per
point, see ``ray_executor``), or an ``executors.Executor``; rows are the same whichever runs them.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import numbers
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..cli_args import add_epochs_argument
from ..console import ProgressPrinter
from ..errors import BadInput
from ..io.checkpoints import ASSETS_DIR, cache_dir, checkpoint_name
from ..io.outputs import check_output_file
from ..options import METHODS, STRUCTURED_METHODS
from ..pipeline import Prepared, prepare_trained
from ..plan.pruning import validate_arguments
from ..structured.filters import validate as validate_filter_arguments
from ..zoo.train import DEFAULT_EPOCHS
from .executors import EXECUTORS, SweepPlan, get_executor
from .job_progress import JobProgress
from .run_records import to_jsonable
from .sweep_points import ROW_FIELDS

__all__ = [
    "DEFAULT_METHODS", "SweepResult", "sweep", "geometric_ratios", "parse_ratios", "prune_potential",
    "add_sweep_parser", "cmd_sweep", "sweep_cache_dir", "ROW_FIELDS",
]

DEFAULT_METHODS = ("sipp-hybrid", "sipp-det", "sipp-rand", "wt", "random")
DEFAULT_RANGE = (0.5, 0.01)
DEFAULT_COUNT = 8
CACHE_VERSION = 1  # bump when rows change meaning


MAX_RATIOS = 100  # keep ratios in one sweep: each runs for every method and seed
RATIOS_FORMS = ("a comma list of shares in (0, 1], e.g. 0.5,0.1,0.02, or a grid from K1 to K2 in N steps, "
                "e.g. 0.5:0.01:8")
MAX_SEEDS = 100  # seeds in one sweep: each runs every method at every keep ratio
SEEDS_FIX = "give a count, e.g. 3 (seeds 0, 1, 2), or distinct seeds, e.g. 0,1,7"


def geometric_ratios(hi: float, lo: float, count: int) -> tuple[float, ...]:
    """`count` keep ratios from hi down to lo, evenly spaced in log (rounded to 6 significant digits)."""
    hi, lo, count = float(hi), float(lo), int(count)
    if not (0 < lo <= 1 and 0 < hi <= 1) or math.isnan(hi) or math.isnan(lo):
        raise BadInput(f"keep-ratio range ends must lie in (0, 1]; got {hi:g} and {lo:g}",
                       "give each end as a share of the weights kept, 1 keeping all, e.g. 0.5:0.01:8")
    if count < 1:
        raise BadInput(f"the number of keep ratios must be at least 1; got {count}",
                       "give N of at least 2, e.g. 0.5:0.01:8, or one ratio alone, e.g. 0.5")
    if count > MAX_RATIOS:
        raise BadInput(f"a sweep takes at most {MAX_RATIOS} keep ratios (each runs for every method and seed); "
                       f"got {count}", "give fewer, e.g. 0.5:0.01:8")
    if count == 1:
        return (float(f"{hi:.6g}"),)
    if hi == lo:
        raise BadInput(f"keep-ratio range ends are equal ({hi:g})",
                       f"give two different ends, e.g. 0.5:0.01:8, or that one ratio alone: {hi:g}")
    hi, lo = max(hi, lo), min(hi, lo)
    return tuple(float(f"{v:.6g}") for v in np.geomspace(hi, lo, count))


def parse_ratios(text: str) -> tuple[float, ...]:
    """'K1:K2:N' (geometric grid of N ratios from K1 to K2) or 'a,b,c' (explicit list, any order)."""
    text = str(text).strip()
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3:
                raise ValueError
            grid = (float(parts[0]), float(parts[1]), int(parts[2]))
        else:
            items = [v.strip() for v in text.split(",") if v.strip()]
            for item in items:  # name the item that is not a number ("abc" in "0.5,abc", "10%")
                try:
                    float(item)
                except ValueError:
                    raise BadInput(f"{item!r} in the keep ratios is not a number",
                                   "write " + RATIOS_FORMS) from None
            values = tuple(float(v) for v in items)
    except BadInput:
        raise
    except ValueError as exc:
        raise BadInput(f"keep ratios must be 'K1:K2:N' or a comma list; got {text!r}",
                       "write " + RATIOS_FORMS) from exc
    if ":" not in text:
        return _check_ratios(values, text)
    if grid[2] == 1 and grid[0] != grid[1]:  # "0.5:0.01:1" would silently be the single ratio 0.5
        raise BadInput(f"K1:K2:N with N = 1 is the single keep ratio {grid[0]:g}, and {grid[1]:g} would be left "
                       "out",
                       "give N of at least 2 (e.g. 0.5:0.01:8), or the one ratio alone")
    return geometric_ratios(*grid)


def _check_ratios(values: Iterable[float], text: str = "") -> tuple[float, ...]:
    if isinstance(values, numbers.Real) and not isinstance(values, bool):
        values = (values,)  # one ratio, as a study file's `ratios = 0.5`
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise BadInput(f"keep ratios must be a list of numbers; got {values!r}", "write " + RATIOS_FORMS)
    values = list(values)
    odd = [v for v in values if isinstance(v, bool) or not isinstance(v, numbers.Real)]
    if odd:  # True would be the ratio 1, and "0.5" a string's float
        raise BadInput(f"keep ratios must be numbers; got {odd[0]!r}", "write " + RATIOS_FORMS)
    vals = tuple(float(v) for v in values)
    if not vals:
        raise BadInput("no keep ratio given", "write " + RATIOS_FORMS)
    bad = [v for v in vals if not (0 < v <= 1) or math.isnan(v)]
    if bad:
        if re.search(r"\d,\d", text):  # "0,5": one remedy, the likely one
            raise BadInput(f"keep ratios must lie in (0, 1]; got {bad[0]:g} (a decimal comma?)",
                           "write 0.5 with a point: commas separate the ratios, e.g. 0.5,0.1,0.02")
        raise BadInput(f"keep ratios must lie in (0, 1]; got {bad[0]:g}",
                       "write each as the share of the weights kept, 1 keeping all, e.g. 0.5,0.1,0.02")
    out = tuple(sorted(set(vals), reverse=True))
    if len(out) > MAX_RATIOS:
        raise BadInput(f"a sweep takes at most {MAX_RATIOS} keep ratios (each runs for every method and seed); "
                       f"got {len(out)}", "give fewer, e.g. 0.5:0.01:8")
    return out


def seeds_arg(text: str):
    """argparse type for --seeds: a count ("3": seeds 0, 1, 2) or a comma list of seeds ("0,1,7"); _check_seeds
    checks the values."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a count nor a comma list of seeds "
                                         "(e.g. 3, or 0,1,7)") from None
    return values[0] if len(values) == 1 else tuple(values)


def _whole(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check_seeds(seeds) -> tuple[int, ...]:
    """A count N (seeds 0..N-1) or distinct non-negative whole numbers; at most MAX_SEEDS of them."""
    if _whole(seeds):
        if seeds < 1:
            raise BadInput(f"seeds must be at least 1 (a count) or a list of seeds; got {seeds}", SEEDS_FIX)
        if seeds > MAX_SEEDS:
            raise BadInput(f"a sweep takes at most {MAX_SEEDS} seeds (each runs every method at every keep ratio); "
                           f"got {seeds}", "give fewer, e.g. 3")
        return tuple(range(seeds))
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):  # "12" would be the seeds 1 and 2
        raise BadInput(f"seeds must be a count or a list of whole numbers; got {seeds!r}", SEEDS_FIX)
    out = tuple(seeds)
    odd = [s for s in out if not _whole(s)]
    if odd:  # 1.7 would be truncated to 1, True taken as 1
        raise BadInput(f"seeds must be whole numbers; got {odd[0]!r}", SEEDS_FIX)
    if not out or len(set(out)) != len(out) or min(out) < 0:
        raise BadInput(f"seeds must be distinct non-negative whole numbers; got {list(out)}", SEEDS_FIX)
    if len(out) > MAX_SEEDS:
        raise BadInput(f"a sweep takes at most {MAX_SEEDS} seeds (each runs every method at every keep ratio); "
                       f"got {len(out)}", "give fewer")
    return tuple(int(s) for s in out)


def _check_methods(methods) -> tuple[str, ...]:
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    methods = tuple(methods)
    valid = METHODS + STRUCTURED_METHODS
    if not methods:
        raise BadInput("no method given", f"give one or more of {', '.join(valid)}")
    bad = [m for m in methods if m not in valid]
    if bad:
        raise BadInput(f"unknown method {bad[0]!r}", f"give one or more of {', '.join(valid)}")
    if len(set(methods)) != len(methods):
        raise BadInput(f"methods repeat: {list(methods)}", "name each method once")
    return methods


def sweep_cache_dir() -> Path:
    """<SIPP_CACHE_DIR or ~/.cache/sipp-studio>/sweeps (next to the checkpoint cache)."""

    return cache_dir().parent / "sweeps"


# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepResult:
    """Rows are plain dicts with the keys of ROW_FIELDS (see the module docstring)."""

    rows: tuple
    settings: dict
    timings_s: dict = field(default_factory=dict)
    cancelled: bool = False
    from_cache: bool = False
    run: dict = field(default_factory=dict)  # where it ran: executor, workers, retries, resumed rows

    def to_frame(self):
        import pandas as pd  # deferred: only frames need pandas (~0.5 s to import)

        return pd.DataFrame(list(self.rows), columns=list(ROW_FIELDS))

    def summary_frame(self):
        """Mean over seeds per (method, keep_ratio_requested), with the accuracy's std and the seed count."""
        df = self.to_frame()
        if df.empty:
            return df
        num = ["keep_ratio", "accuracy_before", "accuracy_after", "accuracy_drop", "agreement", "logits_rel_error",
               "bound_max", "measured_max_heldout", "failure_rate_heldout", "time_s"]
        df[num] = df[num].astype(float)
        g = df.groupby(["method", "keep_ratio_requested"], sort=False)
        out = g[num].mean()
        out["accuracy_std"] = g["accuracy_after"].std(ddof=0)
        out["seeds"] = g["seed"].count()
        out["errors"] = g["error"].apply(lambda s: int(s.notna().sum()))
        return out.reset_index().sort_values(["method", "keep_ratio_requested"], ascending=[True, False],
                                             key=lambda c: c.map(self._method_order) if c.name == "method" else c)

    def _method_order(self, m):
        methods = list(self.settings.get("methods", []))
        return methods.index(m) if m in methods else len(methods)

    def to_dict(self) -> dict:
        return dict(kind="sweep", rows=[dict(r) for r in self.rows], settings=dict(self.settings),
                    timings_s=dict(self.timings_s), cancelled=self.cancelled, run=dict(self.run))

    def to_json(self) -> str:
        return json.dumps(to_jsonable(self.to_dict()), indent=2)

    @classmethod
    def from_json(cls, text: str, *, from_cache: bool = False) -> "SweepResult":
        d = json.loads(text)
        rows = tuple(_row_from_json(r) for r in d["rows"])
        return cls(rows=rows, settings=d["settings"], timings_s=d.get("timings_s", {}),
                   cancelled=d.get("cancelled", False), from_cache=from_cache, run=d.get("run", {}))

    def history_entry(self) -> dict:
        return dict(kind="sweep", settings=dict(self.settings),
                    results=dict(rows=[dict(r) for r in self.rows], cancelled=self.cancelled, points=len(self.rows)),
                    timings=dict(self.timings_s))


_FLOAT_FIELDS = {"keep_ratio", "accuracy_before", "accuracy_after", "accuracy_drop", "agreement", "logits_rel_error",
                 "bound_max", "measured_max_heldout", "failure_rate_heldout", "params_share", "flops_share",
                 "latency_ms", "dense_latency_ms", "time_s"}


def _row_from_json(r: dict) -> dict:
    """A row as written by to_jsonable (NaN as null) back to floats; JSON keeps every other float exactly."""
    nan = float("nan")
    return {k: (nan if r.get(k) is None and k in _FLOAT_FIELDS else r.get(k)) for k in ROW_FIELDS}


def _read_partial(path: Path | None) -> tuple[list[dict], dict]:
    """Rows and per-seed facts an interrupted run left (see the module docstring); a torn last line is skipped."""
    rows, seeds, seen = [], {}, set()
    if path is None or not path.exists():
        return rows, seeds
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return rows, seeds
    for line in lines:
        try:
            item = json.loads(line)
            if "row" in item:
                row = _row_from_json(item["row"])
                key = (row["seed"], row["method"], row["keep_ratio_requested"])
                if key not in seen:
                    seen.add(key)
                    rows.append(row)
            elif "seed" in item:
                seeds[int(item["seed"])] = dict(item["info"])
        except (ValueError, KeyError, TypeError):
            continue
    return rows, seeds


class _PartialLog:
    """Appends each finished row (and each seed's facts) to the partial file; a write failure stops logging."""

    def __init__(self, path: Path | None):
        self.path = path
        self.fh = None
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.fh = open(path, "a")
            except OSError:
                self.fh = None  # a read-only cache is not an error; the run just cannot be resumed

    def write(self, item: dict) -> None:
        if self.fh is None:
            return
        try:
            self.fh.write(json.dumps(to_jsonable(item)) + "\n")
            self.fh.flush()
        except OSError:
            self.close()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


def _checkpoint_identity(model_name: str, dataset: str, epochs: int | None = None) -> dict:
    """What identifies the trained network without loading it: the checkpoint file (shipped or cached)."""

    fname = checkpoint_name(model_name, dataset, DEFAULT_EPOCHS.get(model_name, 30) if epochs is None else epochs, 0)
    for p in (ASSETS_DIR / fname, cache_dir() / fname):
        if p.exists():
            st = p.stat()
            return dict(path=str(p), size=st.st_size, mtime_ns=st.st_mtime_ns)
    return dict(path=None)


def _cache_key(settings: dict, ident: dict) -> str:
    blob = json.dumps(dict(v=CACHE_VERSION, settings=settings, checkpoint=ident), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _from_prepared(prepared: Prepared, sample_size: int | None) -> Callable:
    """prepare_fn for a Prepared: itself for its own seed, else the same model and data with another S."""
    size = prepared.sample_size if sample_size is None else sample_size

    def fn(seed, progress=None):
        if seed == prepared.seed and size == prepared.sample_size:
            return prepared
        return prepare_trained(prepared.trained, prepared.record, sample_size=size, seed=seed,
                               patch_reduction=prepared.patch_reduction, progress=progress)

    return fn


def sweep(
    model_name: str | Prepared,
    dataset: str | None = None,
    *,
    methods=DEFAULT_METHODS,
    ratios: Iterable[float] | None = None,
    ratio_range: tuple[float, float] = DEFAULT_RANGE,
    count: int = DEFAULT_COUNT,
    seeds=1,
    sample_size: int | None = None,
    delta: float = 1e-16,
    allocation: str = "global",
    measure_errors: bool = False,
    measure_latency: bool = False,
    cache: bool = True,
    prepare_fn: Callable | None = None,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    executor=None,
    ray_address: str | None = None,
    epochs: int | None = None,
) -> SweepResult:
    """Keep ratios x methods x seeds on one trained network (see the module docstring).

    Args:
        model_name, dataset: the trained network (shipped, cached or trained now) and its data set;
            or a ``pipeline.Prepared`` (a model in hand, e.g. a notebook's own network) and no dataset:
            its seed uses its own sensitivities, other seeds draw their S from its data.
        methods: planner methods (a list, or a comma-separated string).
        ratios: explicit keep ratios; else a geometric grid of `count` ratios over `ratio_range` (hi, lo).
        seeds: a count n (seeds 0..n-1) or a list of seeds; each seed draws its own S and sampling.
        sample_size: |S| (default: the formula, capped at the S-pool).
        delta: failure probability of the bounds (and of the SiPP allocation).
        allocation: deterministic SiPP's budget allocation ("global" or "bound-optimal").
        measure_errors: also measure layer-local errors (slower); adds measured_max_heldout and
            failure_rate_heldout (largest over layers).
        measure_latency: also time every pruned network beside the dense one (median of 10 runs at batch 64,
            slower); adds latency_ms and dense_latency_ms. Every row has params_share and flops_share (nonzero
            parameters and multiply-accumulates as shares of the dense network's).
        cache: read and write the on-disk result cache.
        prepare_fn: optional callable (seed, progress) -> pipeline.Prepared (e.g. the app's cached
            prepare); default ``pipeline.prepare(model_name, dataset, sample_size=..., seed=seed)``.
        progress: progress(fraction, message), messages with a time estimate.
        should_stop: polled before every point (on Ray: every 0.1 s); True stops and returns the rows so
            far (cancelled=True); the next run with the same settings resumes from them.
        executor: where points run: None or "in-process" (default), "ray", or an executors.Executor.
        ray_address: with executor="ray", a running cluster to join; without it a local Ray starts.
        epochs: which checkpoint of model_name (default: the model's own count, zoo.train.DEFAULT_EPOCHS);
            not with a Prepared model or prepare_fn, which bring their network.

    Raises:
        ValueError: bad methods, ratios, seeds, delta, allocation or executor (before any work starts);
            BadInput (a ValueError) naming the install command when executor="ray" and Ray is missing.
    """

    if isinstance(model_name, Prepared):
        if prepare_fn is not None:
            raise ValueError("give either a Prepared model or prepare_fn, not both")
        prepare_fn = _from_prepared(model_name, sample_size)
        model_name, dataset = model_name.trained.name, model_name.record.name
    elif not isinstance(dataset, str):
        raise ValueError("sweep(model_name, dataset): name the data set, or pass a pipeline.Prepared instead")
    methods = _check_methods(methods)
    grid = _check_ratios(ratios) if ratios is not None else geometric_ratios(ratio_range[0], ratio_range[1], count)
    seed_list = _check_seeds(seeds)
    for m in methods:
        if m in STRUCTURED_METHODS:
            validate_filter_arguments(m, grid[0], None, "params", delta)
        else:
            validate_arguments(m, grid[0], None, delta, "max", allocation)
    if sample_size is not None and (not isinstance(sample_size, int) or sample_size < 1):
        raise ValueError(f"sample_size must be a positive integer or None; got {sample_size!r}")
    settings = dict(model=model_name, dataset=dataset, methods=list(methods), ratios=list(grid),
                    seeds=list(seed_list), sample_size=sample_size, delta=delta, allocation=allocation,
                    measure_errors=bool(measure_errors))
    if measure_latency:  # only then in the key: sweeps cached before latency existed keep their key
        settings["measure_latency"] = True
    if epochs is not None:  # likewise: the default checkpoint's sweeps keep their key
        if prepare_fn is not None:
            raise ValueError("epochs picks a zoo checkpoint: give it with a model name, not with a Prepared model "
                             "or prepare_fn")
        settings["epochs"] = int(epochs)
    runner = get_executor(executor, ray_address=ray_address)  # an unknown name or a missing Ray: before work
    job = JobProgress(progress)
    path = None
    prepare_fn_given = prepare_fn is not None
    settings_key = dict(settings)  # settings gains sample_size_used while running: key on the request only
    if cache and not prepare_fn_given:
        ident = _checkpoint_identity(model_name, dataset, epochs)
        if ident.get("path"):
            path = sweep_cache_dir() / f"{_cache_key(settings_key, ident)}.json"
            if path.exists():
                try:
                    res = SweepResult.from_json(path.read_text(), from_cache=True)
                    job.report(1.0, "sweep read from the cache")
                    return res
                except (ValueError, KeyError, OSError):
                    path.unlink(missing_ok=True)  # a damaged cache entry is simply recomputed
    partial_path = path.with_suffix(".partial.jsonl") if path is not None else None
    rows, seed_facts = _read_partial(partial_path)
    order = {(sd, m, r): i for i, (sd, m, r) in enumerate((sd, m, r) for sd in seed_list for m in methods
                                                           for r in grid)}
    rows = [r for r in rows if (r["seed"], r["method"], r["keep_ratio_requested"]) in order]
    timings = dict(sensitivity={}, prepare={}, points=0.0)
    log = _PartialLog(partial_path)

    def seed_ready(seed, info):
        timings["prepare"][str(seed)] = float(info["prepare_s"])
        timings["sensitivity"][str(seed)] = float(info["sensitivity_s"])
        settings.setdefault("sample_size_used", {})[str(seed)] = int(info["sample_size_used"])

    def on_seed(seed, info):
        seed_ready(seed, info)
        log.write(dict(seed=seed, info=info))

    def on_row(row):
        rows.append(row)
        timings["points"] += row["time_s"] if not math.isnan(row["time_s"]) else 0.0
        log.write(dict(row=row))

    for row in rows:
        timings["points"] += row["time_s"] if not math.isnan(row["time_s"]) else 0.0
    for seed, info in seed_facts.items():
        if seed in seed_list:
            seed_ready(seed, info)
    if rows:
        job.report(0.0, f"resuming: {len(rows)} of {len(order)} points already finished")
    plan = SweepPlan(model_name=model_name, dataset=dataset, methods=methods, grid=grid, seeds=seed_list,
                     sample_size=sample_size, delta=delta, allocation=allocation, measure_errors=bool(measure_errors),
                     measure_latency=bool(measure_latency), prepare_fn=prepare_fn, epochs=epochs,
                     done=frozenset((r["seed"], r["method"], r["keep_ratio_requested"]) for r in rows))
    t_start = time.perf_counter()
    resumed = len(rows)
    try:
        run = runner.run_sweep(plan, on_row=on_row, on_seed=on_seed, job=job, should_stop=should_stop)
    finally:
        log.close()
    cancelled = bool(run.pop("cancelled"))
    run["resumed"] = resumed
    rows.sort(key=lambda r: order[(r["seed"], r["method"], r["keep_ratio_requested"])])
    timings["total"] = time.perf_counter() - t_start
    res = SweepResult(rows=tuple(rows), settings=settings, timings_s=timings, cancelled=cancelled, run=run)
    if cache and path is None and prepare_fn_given is False and not cancelled:
        ident = _checkpoint_identity(model_name, dataset, epochs)  # the checkpoint may have been trained just now
        if ident.get("path"):
            path = sweep_cache_dir() / f"{_cache_key(settings_key, ident)}.json"
    if path is not None and not cancelled:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(res.to_json())
            os.replace(tmp, path)
            if partial_path is not None:
                partial_path.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only cache is not an error
    job.report(1.0, "sweep cancelled" if cancelled else f"sweep finished: {len(rows)} points")
    return res


def prune_potential(frame, max_accuracy_drop: float):
    """Per method, the largest pruned share (1 - keep ratio) whose accuracy drop stays within the limit.

    Rule: average over seeds first (mean accuracy drop and mean realised keep ratio per method and
    requested keep ratio), then walk the grid from the largest keep ratio down and stop at the first
    ratio whose mean drop exceeds ``max_accuracy_drop`` (or that failed); the answer is the last ratio
    before that. A lucky point further down after a failing one does not count. Drops are in accuracy
    units (0.01 = one percentage point) against the dense network's accuracy.

    Args:
        frame: SweepResult.to_frame() (or a SweepResult).
        max_accuracy_drop: the largest acceptable drop, >= 0.

    Returns: a DataFrame with method, max_pruned_share, keep_ratio (realised, mean), keep_ratio_requested,
    accuracy_after (mean), accuracy_drop (mean), seeds and note. max_pruned_share is NaN when even the
    largest keep ratio of the grid drops too much (nothing is known above the grid).
    """
    import pandas as pd  # deferred: only frames need pandas (~0.5 s to import)

    if hasattr(frame, "to_frame"):
        frame = frame.to_frame()
    if not (isinstance(max_accuracy_drop, (int, float)) and max_accuracy_drop >= 0) or math.isnan(max_accuracy_drop):
        raise ValueError(f"max_accuracy_drop must be a number >= 0 (0.01 = one point); got {max_accuracy_drop!r}")
    out = []
    cols = ["method", "max_pruned_share", "keep_ratio", "keep_ratio_requested", "accuracy_after", "accuracy_drop",
            "seeds", "note"]
    if frame.empty:
        return pd.DataFrame(columns=cols)
    df = frame.copy()
    for c in ("keep_ratio", "accuracy_after", "accuracy_drop"):
        df[c] = df[c].astype(float)
    for method, g in df.groupby("method", sort=False):
        agg = g.groupby("keep_ratio_requested").agg(
            keep_ratio=("keep_ratio", "mean"), accuracy_after=("accuracy_after", "mean"),
            accuracy_drop=("accuracy_drop", "mean"), seeds=("seed", "nunique"),
            failed=("error", lambda s: bool(s.notna().any())),
        ).sort_index(ascending=False)
        best = None
        for ratio, r in agg.iterrows():
            if r["failed"] or math.isnan(r["accuracy_drop"]) or r["accuracy_drop"] > max_accuracy_drop + 1e-12:
                break
            best = (ratio, r)
        if best is None:
            top = agg.index[0]
            out.append(dict(method=method, max_pruned_share=float("nan"), keep_ratio=float("nan"),
                            keep_ratio_requested=float("nan"), accuracy_after=float("nan"),
                            accuracy_drop=float("nan"), seeds=int(agg["seeds"].max()),
                            note=f"no grid point within the drop (the largest keep ratio tried was {top:g})"))
        else:
            ratio, r = best
            note = "" if ratio != agg.index[-1] else "the smallest keep ratio of the grid: extend the grid down"
            out.append(dict(method=method, max_pruned_share=1.0 - float(r["keep_ratio"]), keep_ratio=float(r["keep_ratio"]),
                            keep_ratio_requested=float(ratio), accuracy_after=float(r["accuracy_after"]),
                            accuracy_drop=float(r["accuracy_drop"]), seeds=int(r["seeds"]), note=note))
    return pd.DataFrame(out, columns=cols)


# ---------------------------------------------------------------------------------------------------
# command line


def _fmt(v, spec=".4f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec)


def format_table(res: SweepResult) -> str:
    """The sweep as a text table: one line per (method, keep ratio), means over seeds."""
    s = res.summary_frame()
    seeds = len(res.settings.get("seeds", [1]))
    acc_head = "acc (mean±sd)" if seeds > 1 else "accuracy"
    head = (f"{'method':<12}{'keep req':>9}{'keep':>9}{acc_head:>16}{'agree':>8}{'logit err':>10}"
            f"{'max bound':>11}{'ms/pt':>8}")
    lines = [head, "-" * len(head)]
    for _, r in s.iterrows():
        acc = _fmt(r["accuracy_after"]) + (f"±{r['accuracy_std']:.3f}" if seeds > 1 else "")
        lines.append(f"{r['method']:<12}{r['keep_ratio_requested']:>9.4g}{_fmt(r['keep_ratio']):>9}{acc:>16}"
                     f"{_fmt(r['agreement']):>8}{_fmt(r['logits_rel_error'], '.3g'):>10}"
                     f"{_fmt(r['bound_max'], '.3g'):>11}{_fmt(1e3 * r['time_s'], '.0f'):>8}"
                     + (f"  ({int(r['errors'])} failed)" if r["errors"] else ""))
    return "\n".join(lines)


def cmd_sweep(args) -> int:
    methods = _check_methods(args.methods)  # validate before any expensive work
    grid = parse_ratios(args.ratios)
    if args.json:
        check_output_file(args.json, "--json")
    res = sweep(args.model, args.dataset, methods=methods, ratios=grid, seeds=args.seeds,
                sample_size=args.sample_size, delta=args.delta, allocation=args.allocation,
                measure_errors=args.measure_errors, measure_latency=args.measure_latency, cache=not args.no_cache,
                progress=None if args.quiet else ProgressPrinter("sweep", width=70), executor=args.executor,
                ray_address=args.ray_address, epochs=args.epochs)
    rows = res.rows
    before = next((r["accuracy_before"] for r in rows if not math.isnan(r["accuracy_before"])), float("nan"))
    print(f"{args.model} on {args.dataset}: {len(methods)} methods x {len(grid)} keep ratios x "
          f"{len(res.settings['seeds'])} seed(s); dense accuracy {_fmt(before)}"
          + (" (from the cache)" if res.from_cache else ""))
    print(format_table(res))
    if res.run.get("executor") == "ray":
        print(f"ran on Ray: {res.run['tasks']} point tasks on {res.run['workers']} workers "
              f"({res.run['worker_processes']} worker processes), {res.run['retries']} retried after a lost worker"
              + (f"; {res.run['resumed']} points resumed from an interrupted run" if res.run.get("resumed") else ""))
    elif res.run.get("resumed"):
        print(f"{res.run['resumed']} points resumed from an interrupted run")
    errors = [r for r in rows if r["error"]]
    for r in errors[:5]:
        print(f"  failed: {r['method']} at {r['keep_ratio_requested']:g} (seed {r['seed']}): {r['error']}")
    t = res.timings_s
    if t.get("sensitivity"):
        sens = ", ".join(f"{v:.2f}" for v in t["sensitivity"].values())
        print(f"time: total {t.get('total', 0):.1f} s; sensitivities per seed {sens} s; points {t.get('points', 0):.1f} s")
    if args.max_drop is not None:
        pp = prune_potential(res.to_frame(), args.max_drop)
        print(f"prune potential within an accuracy drop of {args.max_drop:g}:")
        for _, r in pp.iterrows():
            share = "-" if math.isnan(r["max_pruned_share"]) else f"{100 * r['max_pruned_share']:.1f}% pruned"
            print(f"  {r['method']:<12}{share:>16}  {r['note']}")
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(res.to_json())
        print(f"sweep written to {args.json}")
    return 0


def add_executor_arguments(p, tasks: str = "one task per point") -> None:
    """--executor and --ray-address (shared by `sweep` and `study`); tasks: what one Ray task runs."""
    p.add_argument("--executor", default="in-process", choices=list(EXECUTORS),
                   help=f"where the work runs: in this process (default) or on Ray ({tasks})")
    p.add_argument("--ray-address", help="with --executor ray: join this running Ray cluster (host:port); "
                   "without it a local Ray starts with this machine's cores")


def add_sweep_parser(subparsers):
    """Add the `sweep` sub-command to an argparse subparsers object; returns the new parser."""
    p = subparsers.add_parser("sweep", help="keep ratios x methods x seeds on one trained network")
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated planner methods")
    p.add_argument("--ratios", default=f"{DEFAULT_RANGE[0]}:{DEFAULT_RANGE[1]}:{DEFAULT_COUNT}",
                   help="K1:K2:N for N ratios on a geometric grid from K1 to K2, or a comma list")
    p.add_argument("--seeds", type=seeds_arg, default=1,
                   help="a count N (seeds 0..N-1) or distinct seeds as a comma list, e.g. 0,1,7: S and sampling per "
                        "seed")
    add_epochs_argument(p)
    p.add_argument("--sample-size", type=int, help="|S| (default: the formula of docs/sipp.md §2.5)")
    p.add_argument("--delta", type=float, default=1e-16)
    p.add_argument("--allocation", default="global", choices=["global", "bound-optimal"])
    p.add_argument("--measure-errors", action="store_true", help="also measure layer-local errors (slower)")
    p.add_argument("--measure-latency", action="store_true",
                   help="also time each pruned network and the dense one at batch 64 (slower)")
    p.add_argument("--max-drop", type=float, help="print the prune potential within this accuracy drop (0.01 = 1 point)")
    p.add_argument("--no-cache", action="store_true", help="recompute even if a cached result exists")
    p.add_argument("--quiet", action="store_true", help="no progress (warnings still print)")
    p.add_argument("--json", help="write the rows and settings here")
    add_executor_arguments(p)
    p.set_defaults(func=cmd_sweep)
    return p
