"""Cached calls into the engine, shared by every page and every browser session.

Costly objects (trained models, sensitivities, reports) are held in stores that
live in ``st.cache_resource``: one copy per process, shared by all sessions and
NEVER mutated after they are stored. Sessions therefore cannot disturb each
other through the cache. Two engine steps temporarily touch the shared model
(forward hooks in measure/layer discovery, ``model.eval()``), so every call that
runs the shared model holds that Prepared's lock.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Callable

import streamlit as st
import torch

from sipp_core.errors import BadInput
from sipp_core.io import checkpoints
from sipp_core.io.data import load_dataset
from sipp_core.options import DELTA_S
from sipp_core.pipeline import evaluate_prune, prepare
from sipp_core.zoo.layers import layer_infos
from sipp_core.zoo.models import build_model
from sipp_core.zoo.train import DEFAULT_EPOCHS
from ui import tables
from ui.formulas import eta_counts, sample_size_value
from ui.settings import Settings


def nbytes(obj, _depth: int = 0) -> int:
    """Rough memory held by a result: tensors (and module parameters) reachable through its fields."""
    if _depth > 4:
        return 0
    if isinstance(obj, torch.Tensor):
        return obj.element_size() * obj.nelement()
    if isinstance(obj, torch.nn.Module):
        return sum(t.element_size() * t.nelement() for t in obj.state_dict().values())
    if isinstance(obj, dict):
        return sum(nbytes(v, _depth + 1) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(nbytes(v, _depth + 1) for v in obj)
    if hasattr(obj, "__dataclass_fields__"):
        return sum(nbytes(getattr(obj, f), _depth + 1) for f in obj.__dataclass_fields__ if f not in ("prepared", "record"))
    return 0


class Store:
    """A small thread-safe LRU of finished results with one build lock per key.

    Two sessions asking for the same missing key wait for one build instead of
    computing it twice; an exception is not cached. Entries are evicted, oldest
    first, beyond `max_entries` or beyond `max_bytes` of tensors (the newest stays).
    """

    def __init__(self, max_entries: int, max_bytes: int | None = None):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._sizes: dict[Any, int] = {}
        self._lock = threading.Lock()
        self._building: dict[Any, threading.Lock] = {}

    def peek(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def __contains__(self, key) -> bool:
        with self._lock:
            return key in self._items

    def get_or_build(self, key, build: Callable[[], Any]):
        hit = self.peek(key)
        if hit is not None:
            return hit
        with self._lock:
            klock = self._building.setdefault(key, threading.Lock())
        with klock:
            hit = self.peek(key)
            if hit is not None:
                return hit
            value = build()
            size = nbytes(value) if self.max_bytes else 0
            with self._lock:
                self._items[key] = value
                self._sizes[key] = size
                self._items.move_to_end(key)
                while len(self._items) > 1 and (
                    len(self._items) > self.max_entries
                    or (self.max_bytes and sum(self._sizes.values()) > self.max_bytes)
                ):
                    old, _ = self._items.popitem(last=False)
                    self._sizes.pop(old, None)
                self._building.pop(key, None)
            return value


@st.cache_resource(show_spinner=False)
def _stores() -> dict[str, Store]:
    gib = 1024**3
    return {"prepared": Store(6, 2 * gib), "report": Store(48, gib), "derived": Store(64, gib // 4),
            "charts": Store(128)}


@st.cache_resource(show_spinner=False)
def _model_locks() -> dict:
    return {"_": threading.Lock()}


def model_lock(prepared, locks: dict | None = None) -> threading.Lock:
    """The lock that serialises engine calls running this Prepared's shared model.

    `locks`: the result of model_locks(), looked up in the script thread, when calling from a worker thread.
    """
    locks = locks if locks is not None else _model_locks()
    with locks["_"]:
        return locks.setdefault(id(prepared), threading.Lock())


# ---- cheap facts ---------------------------------------------------------------------------

@st.cache_resource(show_spinner=False)
def _load_failures() -> dict:
    return {}


FAILURE_MEMORY_S = 60.0  # an unavailable data set (offline download) is not retried on every rerun


@st.cache_resource(show_spinner=False)
def _load_record(dataset: str):
    return load_dataset(dataset)


def load_record(dataset: str):
    """The data set record (tensors; shared, read-only). A failure is remembered for a minute."""
    failures = _load_failures()
    seen = failures.get(dataset)
    if seen is not None and time.monotonic() - seen[0] < FAILURE_MEMORY_S:
        raise seen[1]
    try:
        return _load_record(dataset)
    except Exception as exc:
        failures[dataset] = (time.monotonic(), exc)
        raise


def resolve_device(choice: str) -> tuple[str, str]:
    """(device to use, words for the sidebar). Raises BadInput (a ValueError) with the fix for an impossible choice."""
    has_cuda = torch.cuda.is_available()
    if choice == "cuda" and not has_cuda:
        raise BadInput("device 'cuda' was chosen but this machine has no CUDA GPU", "choose 'auto' or 'cpu'.")
    if choice == "auto":
        used = "cuda" if has_cuda else "cpu"
        return used, f"using {used}" + ("" if has_cuda else " (no CUDA GPU found)")
    return choice, f"using {choice}"


def checkpoint_status(model: str, dataset: str) -> str:
    """'shipped', 'cache' or 'missing' for the checkpoint prepare() would load (seed 0, default epochs)."""
    name = checkpoints.checkpoint_name(model, dataset, int(DEFAULT_EPOCHS.get(model, 30)), 0)
    shipped = checkpoints.ASSETS_DIR / name  # read at call time: tests point ASSETS_DIR elsewhere
    if shipped.exists() and checkpoints.shipped_problem(shipped) is None:  # a tampered file is refused
        return "shipped"
    if (checkpoints.cache_dir() / name).exists():
        return "cache"
    return "missing"


# Models whose sensitivities take well under a few seconds on a laptop CPU: with a checkpoint
# on disk they are prepared without a click.
LIGHT_MODELS = {"lenet300", "lenet5", "mlp", "cnn"}


def is_prepared(settings: Settings) -> bool:
    return settings.heavy_key in _stores()["prepared"]


def can_auto_prepare(settings: Settings) -> bool:
    """True when preparing is cheap enough to run without a click (a checkpoint exists, small model)."""
    if is_prepared(settings):
        return True
    return settings.model in LIGHT_MODELS and checkpoint_status(settings.model, settings.dataset) != "missing"


def get_prepared(settings: Settings, progress: Callable[[float, str], None] | None = None, *, store: Store | None = None):
    """prepare() for the heavy settings, built once per process and shared (never mutate it).

    `store`: the result of prepared_store(), looked up in the script thread; pass it when calling from a
    worker thread (a st.cache_resource call there logs Streamlit's "missing ScriptRunContext" warning).
    """
    device, _ = resolve_device(settings.device)

    def build():
        t0 = time.perf_counter()
        prepared = prepare(
            settings.model, settings.dataset,
            sample_size=None if settings.auto_sample else int(settings.sample_size),
            seed=int(settings.seed), patch_reduction=settings.patch_reduction, device=device, progress=progress,
        )
        prepared.timings_s.setdefault("prepare_total", time.perf_counter() - t0)
        return prepared

    return (store if store is not None else _stores()["prepared"]).get_or_build(settings.heavy_key, build)


def prepared_store() -> Store:
    """The process-wide store of Prepared records (for get_prepared(..., store=) from worker threads)."""
    return _stores()["prepared"]


def model_locks() -> dict:
    """The process-wide model locks (for model_lock(..., locks=) from worker threads)."""
    return _model_locks()


def peek_prepared(settings: Settings):
    return _stores()["prepared"].peek(settings.heavy_key)


def _report_kwargs(settings: Settings, overrides: dict) -> dict:
    kw = settings.prune_kwargs()
    if "epsilon" in overrides:
        kw.pop("keep_ratio", None)
    if "keep_ratio" in overrides:
        kw.pop("epsilon", None)
    kw.update(overrides)
    return kw


def report_key(settings: Settings, **overrides) -> tuple:
    return (settings.heavy_key, tuple(sorted(_report_kwargs(settings, overrides).items())))


def is_report_cached(settings: Settings, **overrides) -> bool:
    return report_key(settings, **overrides) in _stores()["report"]


def get_report(settings: Settings, prepared=None, **overrides):
    """evaluate_prune() for the cheap settings (cached; shared; never mutate the Report).

    `overrides` replace evaluate_prune keyword arguments (for sweeps): e.g. epsilon=0.5.
    """
    prepared = prepared if prepared is not None else get_prepared(settings)
    return report_job(settings, prepared, **overrides)()


def report_job(settings: Settings, prepared, **overrides) -> Callable[[], Any]:
    """get_report(settings, prepared) as a call that may run later in a worker thread (ui.prefetch): the store
    and the model locks are looked up now, in the script thread."""
    kw = _report_kwargs(settings, overrides)
    key, store, locks = report_key(settings, **overrides), _stores()["report"], _model_locks()

    def build():
        with model_lock(prepared, locks):
            return evaluate_prune(prepared, **kw)

    return lambda: store.get_or_build(key, build)


def derived(key: tuple, build: Callable[[], Any]):
    """Cache any pure derivative of a Prepared/Report (e.g. layer inputs on S) under `key`."""
    return _stores()["derived"].get_or_build(key, build)


def chart(key: tuple, build: Callable[[], Any]) -> tuple:
    """(chart, its Vega-Lite spec) for a chart that depends on `key` only, built once and shared (never mutate
    either): ``show.chart(c, where, spec=spec)`` draws it without building, converting and validating it again,
    which is most of a rerun's time on a page of charts. Charts have their own store, so a run of slider moves
    does not evict costly derived tensors."""
    def make():
        c = build()
        return c, c.to_dict()

    return _stores()["charts"].get_or_build(key, make)


def clear_all() -> None:
    for s in _stores().values():
        with s._lock:
            s._items.clear()
            s._sizes.clear()


@st.cache_data(show_spinner=False, max_entries=64)
def model_facts(model: str, dataset: str) -> dict:
    """Shapes that need no training: layer sizes, eta / eta_max, the |S| formula, the S-pool size.

    Raises ValueError (unknown or mismatched model/data set) or the data loader's error.
    """
    rec = load_record(dataset)
    net = build_model(model, rec.input_shape, rec.num_classes, seed=0)
    infos = layer_infos(net, rec.input_shape)
    eta, eta_max = eta_counts(infos)
    return dict(
        eta=eta, eta_max=eta_max, formula=sample_size_value(eta, eta_max, DELTA_S), pool=len(rec.x_pool),
        input_shape=tuple(rec.input_shape), num_classes=rec.num_classes, is_image=len(rec.input_shape) == 3,
        layers=[dict(name=i.name, kind=i.kind, F=i.out_units, J=i.fan_in, P=i.patches, k=i.kernel_size) for i in infos.values()],
        prunable=sum(i.num_weights for i in infos.values()),
    )


@st.cache_data(show_spinner=False, max_entries=256)
def layer_table(key: tuple, _report):
    """The per-layer table of a report (a record: cached by st.cache_data under the report's key)."""
    return tables.layer_table(_report)


@st.cache_data(show_spinner=False, max_entries=64)
def top_edges(key: tuple, _prepared, _report, k: int = 15):
    return tables.top_edges(_prepared, _report, k=k)
