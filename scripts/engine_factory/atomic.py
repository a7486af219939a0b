"""Write-then-rename, so that a failed or killed stage never leaves a partial artifact under its final name."""

import contextlib
import json
import os
import shutil
from pathlib import Path


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike):
    """Yield a temporary path beside `final`; rename it onto `final` only if the block succeeds.

    The temporary name keeps the suffix (`x.tmp123.onnx`) because some writers pick the format from it.
    A directory may be written there too (it replaces `final` whole).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f"{final.stem}.tmp{os.getpid()}{final.suffix}")
    _remove(tmp)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"stage wrote nothing to {tmp}")
        _remove(final)
        os.replace(tmp, final)
    finally:
        _remove(tmp)


TEMP_PREFIX = "engine-factory-"  # private work folders in TMPDIR: engine-factory-<stage>-<pid>-<random>


@contextlib.contextmanager
def private_tempdir(stage: str):
    """A work folder in TMPDIR, removed when the block ends. A stage killed by a signal cannot remove its own, so each
    call first removes the folders of earlier stage processes that are no longer alive (the pid is in the name)."""
    import re
    import tempfile

    root = Path(tempfile.gettempdir())
    for d in root.glob(f"{TEMP_PREFIX}*-*-*"):
        m = re.match(rf"{re.escape(TEMP_PREFIX)}[\w]+-(\d+)-", d.name)
        if m and d.is_dir() and not _alive(int(m.group(1))):
            shutil.rmtree(d, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{stage}-{os.getpid()}-") as work:
        yield work


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def write_json(path: str | os.PathLike, data) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike):
    """The JSON in `path`, or None when it is missing or unreadable (callers report that case themselves)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()
