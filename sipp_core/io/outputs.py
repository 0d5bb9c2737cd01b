"""Where the command line will write (--json, --export, a study's --out), checked before any work starts.

Why: a study can run for minutes and a prune trains a model first; a typo in the output path should not be
found only when the results are ready to be written. Each refusal names the actual cause: a folder that does not
exist, a file where a folder is needed (or the reverse), or a folder that cannot be written to (a read-only
disk). A full disk cannot be told in advance; writing then fails with its own message (StorageError).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import BadInput, StorageError

__all__ = ["check_output_file", "check_output_folder", "give_usual_mode", "write_atomically"]


def _writable(folder: Path, flag: str, path: Path) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StorageError(f"{flag} {path}: the folder {folder} cannot be written to (read-only or not yours)",
                           f"give {flag} a path in a folder you can write to")


def check_output_file(path: str | os.PathLike, flag: str) -> None:
    """A file will be written at `path`: its folder must exist and be writable, and `path` must not be a folder."""
    p = Path(path)
    if p.is_dir():
        raise BadInput(f"{flag} {p} is a folder; a file name is needed",
                       f"give {flag} a file name, e.g. {p / 'report.json'}")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.exists():
        raise BadInput(f"{flag} {p}: the folder {folder} does not exist",
                       f"create it first (mkdir -p {folder}) or give {flag} a path in an existing folder")
    if not folder.is_dir():
        raise BadInput(f"{flag} {p}: {folder} is a file, not a folder", f"give {flag} a path in a folder")
    if p.exists() and not os.access(p, os.W_OK):
        raise StorageError(f"{flag} {p} exists and cannot be overwritten (read-only)",
                           f"give {flag} another file name, or make that file writable")
    _writable(folder, flag, p)


def check_output_folder(path: str | os.PathLike, flag: str) -> None:
    """Files will be written into the folder `path`, created with its parents where missing: it must not be a file,
    and its nearest existing folder must be writable."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise BadInput(f"{flag} {p} is a file; a folder is needed (it is created if missing)",
                       f"give {flag} the name of a folder (a new name is fine: it is created)")
    existing = p
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise BadInput(f"{flag} {p}: {existing} is a file, not a folder", f"give {flag} a path in a folder")
    _writable(existing, flag, p)


def _umask() -> int:
    """The process's umask. Linux tells it in /proc; elsewhere os.umask can only read it by setting it (briefly)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def give_usual_mode(path: str | os.PathLike) -> None:
    """Give a file written under a temporary name by tempfile.mkstemp, which makes it private (0600), the mode a
    plain open() would have given it: 0666 less the umask (0644 on most machines). Why: exported models and
    checkpoints are meant for other machines and other users' services, which could not read a private file."""
    os.chmod(path, 0o666 & ~_umask())


def write_atomically(path: str | os.PathLike, data: bytes) -> int:
    """Write `data` to `path` under a temporary name in the same folder, then rename it: a reader sees the old file
    or the whole new one, never half of it. The file gets the umask's mode (give_usual_mode). An OSError (a full or
    read-only disk) leaves no temporary file behind and is raised as it is, for the caller to word."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        give_usual_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(data)
