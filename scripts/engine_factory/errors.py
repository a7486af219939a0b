"""The errors a user can cause, as types: each refusal is a `FactoryError` that names the model and the file or config
key, and carries the exit status the command line ends with (`guarded`, the one handler)."""

from __future__ import annotations

import sys


class FactoryError(Exception):
    """A clear, user-facing error. `str()` is the whole message; the CLI prints it without a traceback and exits with
    `exit_code` (1: the input, config or a file is wrong)."""

    exit_code = 1

    def __init__(self, message: str, *, model: str | None = None, path: str | None = None, key: str | None = None):
        parts = []
        if model:
            parts.append(f"model '{model}'")
        if key:
            parts.append(f"config key '{key}'")
        if path:
            parts.append(f"file '{path}'")
        prefix = ", ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.model, self.path, self.key = model, path, key


class WrongHost(FactoryError):
    """The job runs where it cannot (another backend version, no GPU of its compute capability, no free GPU): a
    fact about the host, not the job's inputs, so it is not recorded as the target's failure
    (scripts/engine_factory/failures.py)."""


class UnknownStage(FactoryError):
    """`run` was given a stage no runner has."""


class StageFailed(FactoryError):
    """A job's stage process exited non-zero (its log says why): raised to Snakemake, which fails the job."""

    def __init__(self, message: str, *, status: int):
        super().__init__(message)
        self.exit_code = status


class Refused(FactoryError):
    """An operation that would lose work or race a run declines (prune without the new plans, repair during a run):
    exit status 2, as for a tool that failed."""

    exit_code = 2


class RunInProgress(Refused):
    """A factory run holds the workflow directory (scripts/engine_factory/ops/runs.py)."""


class ScheduledRunInProgress(RunInProgress):
    """Another scheduled run holds this directory's nightly lock (scripts/engine_factory/ops/runs.py): exit status 75,
    sysexits' EX_TEMPFAIL (try again later), distinct from a run that failed or was held (1) and other refusals (2)."""

    exit_code = 75


class SnakemakeFailed(FactoryError):
    """Snakemake itself failed where an operation asked it (`--summary`): its message says why."""

    exit_code = 2


DISK_ERRORS = {28, 122, 30, 13}  # ENOSPC, EDQUOT, EROFS, EACCES: a fact of the disk, said in one line


def guarded(command) -> int:
    """Run a command (or a stage): its expected errors as one line and their exit status; anything else is a bug and
    keeps its traceback."""
    try:
        return command() or 0
    except FactoryError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        if e.errno not in DISK_ERRORS:
            raise
        print(f"error: {e.strerror}, writing '{e.filename or '?'}'", file=sys.stderr)  # disk full, read-only, ...
        return 1
