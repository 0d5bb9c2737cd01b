"""One family of errors a user can act on: each says what went wrong and how to fix it.

Every anticipated failure in the engine raises a ``SippError`` subclass. The
command line prints ``error: <problem>`` and ``fix: <fix>`` and exits with
status 2 for bad input (``BadInput`` and its subclasses) or 1 for a failure;
the app shows the same two parts. Nothing here imports torch.

    SippError                    .problem, .fix
    ├── BadInput (ValueError)    an argument, a setting or a file the user gave is not usable
    │   ├── UploadError          a rejected upload (weights, program or .npz)
    │   └── DegenerateData       data that would give NaN or empty results (1e300 inputs, constant S)
    ├── CheckpointError          a checkpoint is corrupted, tampered with or describes something else
    ├── DataUnavailable          a data set that must be downloaded cannot be (offline)
    └── StorageError (OSError)   the disk is full or read-only
"""
from __future__ import annotations


class SippError(Exception):
    """A failure with a message naming the problem (``problem``) and one naming the fix (``fix``)."""

    exit_code = 1
    # The command line rewrites Python's argument names as its flags (keep_ratio -> --keep-ratio); a message about a
    # file the user wrote (a study's TOML keys) keeps the file's own words
    own_words = False

    def __init__(self, problem: str, fix: str = ""):
        problem = str(problem)
        if not fix and "Fix: " in problem:  # a one-string message "... Fix: ...": keep the two parts apart
            problem, fix = problem.split("Fix: ", 1)
        self.problem = problem.strip().rstrip(".").strip()
        self.fix = str(fix).strip()
        super().__init__(f"{self.problem}. Fix: {self.fix}" if self.fix else self.problem)


class BadInput(SippError, ValueError):
    """An argument, setting or file given by the user cannot be used (command line: exit 2)."""

    exit_code = 2


class UploadError(BadInput):
    """An uploaded file (weights, exported program, .npz data) was refused."""


class DegenerateData(BadInput):
    """Data that passes the shape checks but would make every result meaningless (NaN, empty layers)."""


class CheckpointError(SippError, RuntimeError):
    """A checkpoint file is corrupted, fails its digest, or describes another model."""


class DataUnavailable(SippError, RuntimeError):
    """A data set that must be downloaded is neither on disk nor reachable."""


class StorageError(SippError, OSError):
    """A file could not be written: the disk is full, or the folder is read-only."""


def fix_of(exc: BaseException) -> str:
    """The fix of a SippError, else ''."""
    return getattr(exc, "fix", "") if isinstance(exc, SippError) else ""
