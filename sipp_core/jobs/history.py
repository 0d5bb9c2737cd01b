"""Run history: every prune, sweep and retraining run saved to a local SQLite file.

    hist = RunHistory()                                   # $SIPP_DATA_HOME/runs.sqlite, or the default below
    run_id = hist.add("prune", settings, results, timings)
    hist.list(kind="prune", model="lenet300")             # newest first, list[RunRecord]
    hist.frame()                                          # the same as a pandas DataFrame (one row per run)
    hist.get(run_id).settings                             # reopen: feed the settings back to the engine
    hist.compare([3, 7])                                  # key figures side by side
    hist.delete(run_id)

Where: ``RunHistory(path)``; without a path, ``$SIPP_DATA_HOME/runs.sqlite``, else
``$XDG_DATA_HOME/sipp-studio/runs.sqlite``, else ``~/.local/share/sipp-studio/runs.sqlite``.

Why SQLite and how it is used:

* Survives restarts: it is a file; schema version in ``PRAGMA user_version``.
* Two app sessions writing at once lose nothing: WAL journal (readers never block
  the writer), a busy timeout, and one short ``BEGIN IMMEDIATE`` transaction per
  write on a fresh connection, retried on "database is locked". No connection is
  shared between threads, so the object is safe to share across Streamlit sessions.
* A corrupted file is detected on open (``sqlite3.DatabaseError`` or a failing
  ``PRAGMA quick_check``), moved aside to ``runs.sqlite.corrupt-<UTC timestamp>``
  together with its ``-wal``/``-shm`` companions (never deleted), reported with a
  ``RuntimeWarning`` and ``.recovered_from`` / ``.recovery_message``, and a fresh
  database is created in its place. The same happens when the file is damaged
  while in use (a read or write then fails with a database error): the call is
  retried once on the fresh file.
* A single damaged row (JSON that no longer parses) never hides the others:
  ``list()`` skips it, moves it to the table ``damaged_runs`` of the same file
  (not deleted), warns, and reports it in ``.damaged_ids`` / ``.damaged_message``.

Stored per run: kind, creation time, settings, results, timings (JSON; NaN and
infinity become null), versions (python, torch, numpy, sipp_core, git commit when
known), an optional label, and the model / dataset / method columns pulled out of
the settings so that listing and filtering stay fast.
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from ..errors import SippError
from .run_records import RunRecord, dumps, flatten, software_versions, to_jsonable, to_time

__all__ = ["RunHistory", "RunRecord", "HistoryError", "default_history_path", "software_versions", "to_jsonable"]

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 15.0
KINDS = ("prune", "sweep", "retrain", "isolation", "nonsmoothness", "other")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    kind      TEXT NOT NULL,
    created   REAL NOT NULL,          -- unix time, seconds
    label     TEXT,
    model     TEXT,
    dataset   TEXT,
    method    TEXT,
    settings  TEXT NOT NULL,          -- JSON
    results   TEXT NOT NULL,          -- JSON
    timings   TEXT NOT NULL,          -- JSON
    versions  TEXT NOT NULL           -- JSON
);
CREATE INDEX IF NOT EXISTS runs_kind_created ON runs(kind, created);
CREATE INDEX IF NOT EXISTS runs_model_dataset ON runs(model, dataset);
CREATE TABLE IF NOT EXISTS damaged_runs (
    id        INTEGER PRIMARY KEY,    -- the id it had in runs
    kind      TEXT,
    created   REAL,
    label     TEXT,
    model     TEXT,
    dataset   TEXT,
    method    TEXT,
    settings  TEXT,
    results   TEXT,
    timings   TEXT,
    versions  TEXT,
    reason    TEXT,                   -- why it could not be read
    moved     REAL                    -- unix time it was set aside
);
"""
_RUN_COLUMNS = "id, kind, created, label, model, dataset, method, settings, results, timings, versions"
_SCHEMA_STATEMENTS = [
    "\n".join(line.split("--")[0] for line in stmt.splitlines()).strip()
    for stmt in _SCHEMA.split(";")
    if stmt.strip()
]


class HistoryError(SippError, RuntimeError):
    """The history database could not be read or written (the message says why and what to do)."""


def default_history_path() -> Path:
    """``$SIPP_DATA_HOME/runs.sqlite``, else ``$XDG_DATA_HOME/sipp-studio/runs.sqlite``, else ``~/.local/share/...``."""
    root = os.environ.get("SIPP_DATA_HOME")
    if root:
        return Path(root) / "runs.sqlite"
    base = os.environ.get("XDG_DATA_HOME") or (Path.home() / ".local" / "share")
    return Path(base) / "sipp-studio" / "runs.sqlite"


def _compare_rank(key: str) -> int:
    """compare()'s row order within the rows that differ (and within the others): what was asked, what came out,
    then what the run was, how long it took and on what software."""
    for rank, prefix in enumerate(("settings.", "results.")):
        if key.startswith(prefix):
            return rank
    return 2 if key in ("kind", "label") else 3


@contextlib.contextmanager
def _transaction(con: sqlite3.Connection):
    """BEGIN IMMEDIATE (takes the write lock at once, so writers queue instead of deadlocking);
    COMMIT on success, ROLLBACK on any error."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise


class RunHistory:
    """A local SQLite store of runs (see the module docstring).

    Args:
        path: the database file; default :func:`default_history_path`.
        timeout: seconds a write waits for another writer before giving up.

    Attributes:
        path: the database file.
        recovered_from: where a corrupted file was moved, on open or later (None when it was fine).
        recovery_message: what was wrong with it and what was done (None when it was fine).
        damaged_ids: ids of damaged runs this object found and set aside (in the table damaged_runs).
        damaged_message: what was found and done with them (None when there were none).
    """

    def __init__(self, path: str | os.PathLike | None = None, *, timeout: float = BUSY_TIMEOUT_S):
        self.path = Path(path) if path is not None else default_history_path()
        self.timeout = float(timeout)
        self.recovered_from: Path | None = None
        self.recovery_message: str | None = None
        self.damaged_ids: list[int] = []
        self.damaged_message: str | None = None
        # One object is shared by every app session: recoveries and the damaged-row record are serialised.
        self._lock = threading.RLock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._open()

    # -- connection handling ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(str(self.path), timeout=self.timeout, isolation_level=None)
        con.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        # In WAL mode NORMAL never corrupts the file; a power cut may lose the last commits, an app crash none.
        con.execute("PRAGMA synchronous = NORMAL")
        return con

    def _retry(self, fn):
        """Run fn() again while another writer holds the lock (beyond the busy timeout's own waiting)."""
        deadline = time.monotonic() + 2 * self.timeout
        delay = 0.01
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                msg = str(exc).lower()
                if ("locked" not in msg and "busy" not in msg) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.25)

    def _open(self) -> None:
        problem = self._check_file()
        if problem is not None:
            self._set_aside(problem)
        try:
            self._retry(self._init_schema)
        except sqlite3.DatabaseError as exc:
            # Corruption that only shows when writing the schema: set aside once, then start fresh.
            if problem is not None:
                raise HistoryError(f"could not create a run history at {self.path} ({exc})",
                                   "set SIPP_DATA_HOME to another folder, or open another file with "
                                   "RunHistory(path=...)") from exc
            self._set_aside(f"{type(exc).__name__}: {exc}")
            self._retry(self._init_schema)

    def _check_file(self) -> str | None:
        """None if the file is absent, empty or a sound SQLite database; else what is wrong."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return None
        try:
            con = self._connect()
            try:
                rows = con.execute("PRAGMA quick_check").fetchall()
                tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                version = con.execute("PRAGMA user_version").fetchone()[0]
            finally:
                con.close()
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc).lower() or "busy" in str(exc).lower():
                return None  # another session is writing: the file is in use, not broken
            return f"{type(exc).__name__}: {exc}"
        except sqlite3.DatabaseError as exc:
            return f"{type(exc).__name__}: {exc}"
        if [r[0] for r in rows] != ["ok"]:
            return "integrity check failed: " + "; ".join(str(r[0]) for r in rows[:3])
        if tables and "runs" not in tables:
            return f"a SQLite file, but not a run history (tables: {', '.join(sorted(tables))})"
        if version > SCHEMA_VERSION:
            raise HistoryError(
                f"{self.path} was written by a newer SiPP Studio (schema {version} > {SCHEMA_VERSION})",
                "upgrade SiPP Studio, or open another file with RunHistory(path=...)",
            )
        return None

    def _set_aside(self, problem: str) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        try:
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm", "-journal"):
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    os.replace(side, aside.with_name(aside.name + suffix))
        except OSError as exc:
            raise HistoryError(
                f"the run history {self.path} could not be read ({problem}) and could not be moved aside "
                f"({exc.strerror or exc})",
                "move that file away yourself (a new history is then started), or set SIPP_DATA_HOME to a "
                "writable folder",
            ) from exc
        self.recovered_from = aside
        self.recovery_message = (
            f"the run history {self.path} could not be read ({problem}); it was moved to {aside.name} "
            "(not deleted) and a new, empty history was started"
        )
        warnings.warn(self.recovery_message, RuntimeWarning, stacklevel=4)

    def _init_schema(self) -> None:
        con = self._connect()
        try:
            mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":  # e.g. a file system without shared memory: still correct, just slower
                warnings.warn(f"run history {self.path}: WAL journal not available (mode {mode})", RuntimeWarning)
            with _transaction(con):
                for statement in _SCHEMA_STATEMENTS:
                    con.execute(statement)
                if con.execute("PRAGMA user_version").fetchone()[0] == 0:
                    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        finally:
            con.close()

    def _write(self, sql: str, params: tuple) -> sqlite3.Cursor:
        def once():
            con = self._connect()
            try:
                with _transaction(con):
                    return con.execute(sql, params)
            finally:
                con.close()

        return self._checked(once, "write to")

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        def once():
            con = self._connect()
            try:
                return con.execute(sql, params).fetchall()
            finally:
                con.close()

        return self._checked(once, "read")

    def _checked(self, once, verb: str):
        """once() with retries. A database error caused by a damaged file (corrupted, emptied or deleted
        while in use) sets the file aside, starts a fresh one and retries once; any other becomes a
        HistoryError naming the file and the fix."""
        try:
            return self._retry(once)
        except sqlite3.DatabaseError as exc:
            if not self._recover():
                raise self._failure(verb, exc) from exc
        try:
            return self._retry(once)
        except sqlite3.DatabaseError as exc:
            raise self._failure(verb, exc) from exc

    def _failure(self, verb: str, exc: BaseException) -> HistoryError:
        return HistoryError(
            f"could not {verb} the run history {self.path} ({exc})",
            "close other programs that use this file and try again; if it keeps failing, move the file away "
            "(a new history is started) or set SIPP_DATA_HOME to another folder",
        )

    def _recover(self) -> bool:
        """After a failed call: if the file itself is at fault, set it aside and start a fresh one.
        False when the file looks sound (the error was something else, e.g. a lock held too long)."""
        with self._lock:
            problem = self._check_file()
            if problem is not None:
                self._set_aside(problem)
            elif self._has_runs_table() is not False:
                return False  # the file is sound (or busy): the error was something else
            else:  # deleted or emptied while in use: nothing to set aside, but say so
                self.recovered_from = None
                self.recovery_message = (
                    f"the run history {self.path} was deleted or emptied while in use; "
                    "a new, empty history was started there"
                )
                warnings.warn(self.recovery_message, RuntimeWarning, stacklevel=5)
            self._retry(self._init_schema)
            return True

    def _has_runs_table(self) -> bool | None:
        """Whether the file holds the runs table; None when that cannot be told now (e.g. it is locked)."""
        try:
            con = self._connect()
            try:
                row = con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='runs'").fetchone()
            finally:
                con.close()
        except sqlite3.DatabaseError:
            return None
        return row is not None

    # -- public API ------------------------------------------------------------------------------------

    def add(
        self,
        kind: str,
        settings: dict,
        results: dict,
        timings: dict | None = None,
        *,
        label: str | None = None,
        versions: dict | None = None,
    ) -> int:
        """Save one run; returns its id. Versions of python/torch/numpy/sipp_core are recorded automatically.

        Args:
            kind: "prune", "sweep", "retrain", "isolation", "nonsmoothness" (or "other").
            settings: what the run was asked to do (model, dataset, method, ... are indexed when present).
            results: realised figures.
            timings: seconds per stage.
            label: an optional name the user gave the run.
            versions: extra version facts merged over the automatic ones.
        Raises:
            ValueError: unknown kind, or settings/results that are not dicts.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
        for name, d in (("settings", settings), ("results", results), ("timings", timings or {})):
            if not isinstance(d, dict):
                raise ValueError(f"{name} must be a dict; got {type(d).__name__}")
        vers = software_versions()
        vers.update(versions or {})

        def pick(key):
            v = settings.get(key)
            if isinstance(v, (list, tuple)):
                v = ",".join(str(x) for x in v)
            return None if v is None else str(v)

        method = pick("method") or pick("methods")
        cur = self._write(
            "INSERT INTO runs(kind, created, label, model, dataset, method, settings, results, timings, versions) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (kind, time.time(), label, pick("model"), pick("dataset"), method,
             dumps(settings), dumps(results), dumps(timings or {}), dumps(vers)),
        )
        return int(cur.lastrowid)

    def find(self, kind: str, settings: dict, results: dict) -> int | None:
        """The id of the newest run of `kind` with exactly these settings and results (as add() would store
        them), or None. The app asks before saving a run a server has already saved on an earlier day: the same
        settings give the same numbers, and a second copy would only bury the runs that differ."""
        rows = self._read("SELECT id FROM runs WHERE kind = ? AND settings = ? AND results = ? ORDER BY id DESC "
                          "LIMIT 1", (kind, dumps(settings), dumps(results)))
        return int(rows[0][0]) if rows else None

    def add_entry(self, entry: Any, *, label: str | None = None) -> int:
        """Save a record that knows how to describe itself: anything with ``history_entry()``
        (SweepResult, CascadeResult, IsolationResult) or a pipeline ``Report`` (saved as kind "prune")."""
        if hasattr(entry, "history_entry"):
            e = entry.history_entry()
            return self.add(e["kind"], e["settings"], e["results"], e.get("timings"), label=label)
        if hasattr(entry, "to_dict") and hasattr(entry, "end_to_end"):  # pipeline.Report
            d = entry.to_dict()
            setting_keys = ("model", "dataset", "method", "keep_ratio_requested", "epsilon", "delta", "seed",
                            "sample_size", "sample_size_formula", "patch_reduction", "allocation")
            settings = {k: d[k] for k in setting_keys if k in d}
            results = {k: v for k, v in d.items() if k not in settings and k != "timings_s"}
            return self.add("prune", settings, results, d.get("timings_s", {}), label=label)
        raise TypeError(f"cannot save a {type(entry).__name__}: give a record with history_entry() or a Report")

    def get(self, run_id: int) -> RunRecord:
        """The run with this id. Raises KeyError when there is none (e.g. it was deleted)."""
        rows = self._read(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (int(run_id),))
        if not rows:
            raise KeyError(f"no run with id {run_id} in {self.path}")
        good, damaged = self._records(rows)
        if damaged:
            moved = self._set_aside_rows(damaged)
            raise KeyError(f"run {run_id} in {self.path} is damaged ({damaged[0][1]})"
                           + ("; it was moved to the table damaged_runs" if moved else ""))
        return good[0]

    def list(
        self,
        kind: str | None = None,
        *,
        model: str | None = None,
        dataset: str | None = None,
        method: str | None = None,
        label: str | None = None,
        since: Any = None,
        until: Any = None,
        text: str | None = None,
        limit: int | None = None,
    ) -> list[RunRecord]:
        """Runs, newest first, filtered by any of: kind, model, dataset, method (a sweep matches each of its
        methods), label (substring), since/until (datetime, ISO string or unix seconds), text (substring of
        the settings or label JSON), limit."""
        where, params = [], []
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        for col, val in (("model", model), ("dataset", dataset)):
            if val is not None:
                where.append(f"{col} = ?")
                params.append(val)
        if method is not None:
            where.append("(method = ? OR ',' || method || ',' LIKE ?)")
            params += [method, f"%,{method},%"]
        if label is not None:
            where.append("label LIKE ?")
            params.append(f"%{label}%")
        if since is not None:
            where.append("created >= ?")
            params.append(to_time(since))
        if until is not None:
            where.append("created <= ?")
            params.append(to_time(until))
        if text is not None:
            where.append("(settings LIKE ? OR IFNULL(label, '') LIKE ?)")
            params += [f"%{text}%", f"%{text}%"]
        sql = f"SELECT {_RUN_COLUMNS} FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        good, damaged = self._records(self._read(sql, tuple(params)))
        found = []
        for _ in range(100):  # each pass moves at least one row out of the table; bounded all the same
            if not damaged:
                break
            found += damaged
            if not self._set_aside_rows(damaged, warn=False) or limit is None:
                break
            # The damaged rows left the table: read again so a limited listing is still full.
            good, damaged = self._records(self._read(sql, tuple(params)))
        if found:
            self._warn_damaged(found)
        return good

    def frame(self, kind: str | None = None, **filters):
        """``list(...)`` as a pandas DataFrame, one flat row per run (see RunRecord.summary)."""
        import pandas as pd  # deferred: only frames need pandas (~0.5 s to import)

        return pd.DataFrame([r.summary() for r in self.list(kind, **filters)])

    def count(self, kind: str | None = None) -> int:
        if kind is None:
            return int(self._read("SELECT COUNT(*) FROM runs")[0][0])
        return int(self._read("SELECT COUNT(*) FROM runs WHERE kind = ?", (kind,))[0][0])

    def delete(self, run_id: int | Iterable[int]) -> int:
        """Delete one run or several; returns how many were deleted (0 for ids that do not exist)."""
        ids = [int(run_id)] if isinstance(run_id, (int, str)) else [int(i) for i in run_id]
        if not ids:
            return 0
        cur = self._write(f"DELETE FROM runs WHERE id IN ({','.join('?' * len(ids))})", tuple(ids))
        return int(cur.rowcount)

    def compare(self, ids: Iterable[int]):
        """Key figures of several runs side by side: a DataFrame with one column per run (named
        '#<id> <kind>') and one row per scalar setting/result/timing (a short list of settings, such as a sweep's
        methods and keep ratios, as one text); rows that differ first, and among them (and the others) settings,
        then results, then the run's kind and label, timings and versions.

        Raises KeyError naming any id that does not exist."""
        import pandas as pd  # deferred: only frames need pandas (~0.5 s to import)

        ids = [int(i) for i in ids]
        records = [self.get(i) for i in ids]
        cols = {}
        for r in records:
            flat = {"kind": r.kind, "created": r.created_iso, "label": r.label}
            flat.update({f"settings.{k}": v for k, v in flatten(r.settings, short_lists=True).items()})
            flat.update({f"results.{k}": v for k, v in flatten(r.results).items()})
            flat.update({f"timings.{k}": v for k, v in flatten(r.timings).items()})
            flat.update({f"versions.{k}": v for k, v in flatten(r.versions).items()})
            cols[f"#{r.id} {r.kind}"] = flat
        df = pd.DataFrame(cols)
        if df.empty:
            return df
        differs = df.astype(str).nunique(axis=1, dropna=False) > 1  # a row one run lacks differs too
        order = sorted(df.index[differs], key=_compare_rank) + sorted(df.index[~differs], key=_compare_rank)
        df = df.loc[order]
        df.insert(0, "differs", differs.loc[order].values)
        return df

    def damaged_count(self) -> int:
        """How many damaged runs the table damaged_runs holds (set aside by any session, ever)."""
        return int(self._read("SELECT COUNT(*) FROM damaged_runs")[0][0])

    @staticmethod
    def _record(row: tuple) -> RunRecord:
        """A row as a RunRecord; ValueError or TypeError when it is damaged."""
        rid, kind, created, label, model, dataset, method, settings, results, timings, versions = row
        parts = {}
        for name, text in (("settings", settings), ("results", results), ("timings", timings),
                           ("versions", versions)):
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError(f"its {name} are not a JSON object")
            parts[name] = value
        if not isinstance(kind, str):
            raise ValueError("it has no kind")
        return RunRecord(id=int(rid), kind=kind, created=float(created), label=label, model=model, dataset=dataset,
                         method=method, **parts)

    def _records(self, rows) -> tuple[list[RunRecord], list[tuple[int, str]]]:
        """(the readable runs, [(id, what is wrong)] for the damaged ones)."""
        good, damaged = [], []
        for row in rows:
            try:
                good.append(self._record(row))
            except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
                damaged.append((row[0], f"{type(exc).__name__}: {exc}"))
        return good, damaged

    def _set_aside_rows(self, damaged: list[tuple[int, str]], *, warn: bool = True) -> bool:
        """Move damaged rows to the table damaged_runs (kept, not deleted), record and report them.
        True when they were moved; False when the move failed (they are then only skipped)."""
        def once():
            con = self._connect()
            try:
                with _transaction(con):
                    for rid, why in damaged:
                        con.execute(f"INSERT OR REPLACE INTO damaged_runs({_RUN_COLUMNS}, reason, moved) "
                                    f"SELECT {_RUN_COLUMNS}, ?, ? FROM runs WHERE id = ?", (why, time.time(), rid))
                        con.execute("DELETE FROM runs WHERE id = ?", (rid,))
            finally:
                con.close()

        try:
            self._retry(once)
            moved, where = True, f"moved to the table damaged_runs in {self.path} (kept, not deleted)"
        except sqlite3.DatabaseError as exc:
            moved, where = False, f"skipped (they could not be moved to the table damaged_runs: {exc})"
        with self._lock:
            self.damaged_ids = sorted(set(self.damaged_ids) | {int(rid) for rid, _ in damaged})
            ids = ", ".join(f"#{i}" for i in self.damaged_ids)
            self.damaged_message = (
                f"{len(self.damaged_ids)} damaged run(s) ({ids}) in the run history could not be read and were "
                f"{where}; the other runs are unaffected"
            )
        if warn:
            self._warn_damaged(damaged)
        return moved

    def _warn_damaged(self, damaged: list[tuple[int, str]]) -> None:
        warnings.warn(f"{self.damaged_message} (first problem: {damaged[0][1]})", RuntimeWarning, stacklevel=4)

    def __repr__(self) -> str:
        return f"RunHistory({str(self.path)!r})"
