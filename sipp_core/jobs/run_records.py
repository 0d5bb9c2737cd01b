"""A saved run as read back (RunRecord), and what a run is saved with: its values as JSON (to_jsonable) and the
software it ran on (software_versions). The SQLite store itself is history.py."""
from __future__ import annotations

import functools
import json
import math
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy

import sipp_core

__all__ = ["RunRecord", "dumps", "flatten", "software_versions", "to_jsonable", "to_time"]


def _git_commit() -> str | None:
    """The checkout's commit, read from .git without a subprocess (None outside a git checkout)."""
    try:
        git = Path(__file__).resolve().parents[2] / ".git"
        head = (git / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = head[5:]
            p = git / ref
            if p.exists():
                return p.read_text().strip()[:12]
            packed = git / "packed-refs"
            if packed.exists():
                for line in packed.read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split()[0][:12]
            return None
        return head[:12]
    except OSError:
        return None


@functools.lru_cache(maxsize=1)
def _static_versions() -> tuple:
    out: dict[str, Any] = {"python": platform.python_version()}
    try:
        import torch  # deferred: the history is read by pages that need no torch; only tensors in results need it

        out["torch"] = torch.__version__
        out["cuda"] = torch.version.cuda
    except Exception:  # pragma: no cover - torch is a hard dependency
        out["torch"] = None
    try:
        out["numpy"] = numpy.__version__
    except Exception:  # pragma: no cover
        out["numpy"] = None

    out["sipp_core"] = getattr(sipp_core, "__version__", None)
    out["git"] = _git_commit()
    out["platform"] = platform.platform(terse=True)
    return tuple(out.items())


def software_versions() -> dict[str, Any]:
    """Versions recorded with every run: python, torch (+cuda), numpy, sipp_core, git commit, platform."""
    return dict(_static_versions())


def to_jsonable(obj: Any) -> Any:
    """Plain JSON values: tensors and arrays become lists, NaN/inf become None, tuples lists, keys strings."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist") and callable(obj.tolist):  # torch / numpy tensors and scalars
        return to_jsonable(obj.tolist())
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return to_jsonable(obj.to_dict())
    if hasattr(obj, "item") and callable(obj.item):
        return to_jsonable(obj.item())
    return str(obj)


def dumps(obj: Any) -> str:
    """A value as the history stores it: compact JSON, NaN and infinity as null."""
    return json.dumps(to_jsonable(obj), allow_nan=False, separators=(",", ":"))


@dataclass(frozen=True)
class RunRecord:
    """One saved run, as read back."""

    id: int
    kind: str
    created: float  # unix time, seconds
    label: str | None
    model: str | None
    dataset: str | None
    method: str | None
    settings: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)

    @property
    def created_iso(self) -> str:
        return datetime.fromtimestamp(self.created, tz=timezone.utc).isoformat(timespec="seconds")

    def to_dict(self) -> dict:
        return dict(
            id=self.id, kind=self.kind, created=self.created, created_iso=self.created_iso, label=self.label,
            model=self.model, dataset=self.dataset, method=self.method, settings=self.settings,
            results=self.results, timings=self.timings, versions=self.versions,
        )

    def summary(self) -> dict:
        """One flat row for a listing: identity plus the scalar settings and results (nested values skipped)."""
        row = dict(id=self.id, kind=self.kind, created=self.created_iso, label=self.label,
                   model=self.model, dataset=self.dataset, method=self.method)
        for prefix, d in (("", self.settings), ("", self.results)):
            for k, v in flatten(d).items():
                row.setdefault(prefix + k, v)
        t = self.timings.get("total") if isinstance(self.timings, dict) else None
        row["time_s"] = t if isinstance(t, (int, float)) else _sum_numbers(self.timings)
        return row


def _sum_numbers(d: Any) -> float | None:
    if not isinstance(d, dict):
        return None
    vals = [v for v in d.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return float(sum(vals)) if vals else None


SHORT_LIST = 12  # a list of at most this many plain values (a sweep's methods, keep ratios, seeds) compares as text


def flatten(d: Any, prefix: str = "", depth: int = 0, short_lists: bool = False) -> dict[str, Any]:
    """Scalar leaves of nested dicts as 'a.b' keys. Lists are skipped (too long to compare cell by cell), except,
    with short_lists, a list of at most SHORT_LIST plain values, as one text ("wt, sipp-hybrid"; "0.5, 0.1")."""
    out: dict[str, Any] = {}
    if not isinstance(d, dict):
        return out
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and depth < 2:
            out.update(flatten(v, key + ".", depth + 1, short_lists))
        elif v is None or isinstance(v, (bool, int, float, str)):
            out[key] = v
        elif short_lists and isinstance(v, list) and len(v) <= SHORT_LIST and all(
                isinstance(x, (bool, int, float, str)) for x in v):
            out[key] = ", ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v)
    return out


def to_time(v: Any) -> float:
    """datetime, ISO string or unix seconds -> unix seconds."""
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=timezone.utc)).timestamp()
    if isinstance(v, str):
        dt = datetime.fromisoformat(v)
        return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()
    raise ValueError(f"a time must be a datetime, an ISO 8601 string or unix seconds; got {v!r}")
