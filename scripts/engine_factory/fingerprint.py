"""Content fingerprints (sha256) of files and directories, cheap to ask again.

A source replaced by other bytes with an older mtime (`cp -p`, a restore, a synced folder) must still count as
changed, so the workflow decides by content, not by clock. Hashing every source at every DAG evaluation would make
a no-op slow, so each file's digest is cached under the workflow directory, keyed by (size, mtime, ctime, inode):
any write changes ctime (which no user tool can set back), so a hit is the same bytes. `verify` passes
`cached=False` and re-hashes everything.

A directory's digest covers its files' relative names and digests, in sorted order.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from .paths import CONTENT_CACHE as CACHE_PATH  # relative to the workflow directory (the process's cwd)

_BLOCK = 1 << 20


def file_digest(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def _stamp(path: str) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class _Cache:
    """{absolute path: [size, mtime_ns, ctime_ns, inode, sha256]}, loaded once per process, saved on a miss (or once
    at the end of a `deferred()` block: a check of many files writes the cache once, not once per file)."""

    def __init__(self):
        self.entries: dict | None = None
        self.where: str | None = None
        self.defer = 0
        self.dirty = False

    def _load(self) -> None:
        where = os.path.abspath(CACHE_PATH)
        if self.entries is None or self.where != where:
            self.where = where
            try:
                with open(where) as f:
                    self.entries = json.load(f)
            except (OSError, ValueError):
                self.entries = {}

    def digest(self, path: str) -> str:
        self._load()
        full = os.path.realpath(path)
        stamp = _stamp(full)
        hit = self.entries.get(full)
        if hit and hit[:4] == stamp:
            return hit[4]
        digest = file_digest(full)
        self.entries[full] = [*stamp, digest]
        self._save()
        return digest

    def derived(self, path: str, kind: str, compute, also: tuple = ()):
        """A fact computed from one file's content (e.g. the external-data files an ONNX model names), cached under
        the same (size, mtime, ctime, inode) stamp as its digest, and the stamps of the files in `also` (e.g. the
        record the fact compares it with; a file missing there stamps as [])."""
        self._load()
        full = os.path.abspath(path)  # not realpath (a stat per folder): the stamp's inode already names the file
        stamp = _stamp(full) + [_stamp(a) if os.path.exists(a) else [] for a in also]
        key = f"{kind}:{full}"
        hit = self.entries.get(key)
        if hit and hit[:-1] == stamp:
            return hit[-1]
        value = compute(full)
        self.entries[key] = [*stamp, value]
        self._save()
        return value

    def _save(self) -> None:
        """Atomic replace; a concurrent writer may win, which only costs it a re-hash later. A read-only
        artifacts folder just means no cache."""
        if self.defer:
            self.dirty = True
            return
        self.dirty = False
        try:
            os.makedirs(os.path.dirname(self.where), exist_ok=True)
            tmp = f"{self.where}.tmp{os.getpid()}"
            with open(tmp, "w") as f:
                json.dump(self.entries, f, separators=(",", ":"))
            os.replace(tmp, self.where)
        except OSError:
            pass


_CACHE = _Cache()


def derived(path: str | os.PathLike, kind: str, compute, also: tuple = ()):
    """`compute(path)` (JSON-serializable), cached while the file (and each file in `also`) is unchanged (see
    _Cache.derived)."""
    return _CACHE.derived(str(path), kind, compute, tuple(map(str, also)))


@contextlib.contextmanager
def deferred():
    """Save the cache once at the end of the block, however many entries it adds (see _Cache)."""
    _CACHE.defer += 1
    try:
        yield
    finally:
        _CACHE.defer -= 1
        if not _CACHE.defer and _CACHE.dirty:
            _CACHE._save()


def files_of(path: str | os.PathLike, suffixes: tuple[str, ...] | None = None) -> list[Path]:
    """The files a directory fingerprint covers, sorted (hidden entries and __pycache__ skipped)."""
    root = Path(path)
    found = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).parts
        if any(part.startswith(".") or part == "__pycache__" for part in rel) or not p.is_file():
            continue
        if suffixes is None or p.suffix in suffixes:
            found.append(p)
    return found


def sha256(path: str | os.PathLike, *, cached: bool = True, suffixes: tuple[str, ...] | None = None) -> str:
    """sha256 of a file, or of a directory's files (relative names and file digests, sorted)."""
    one = _CACHE.digest if cached else file_digest
    p = Path(path)
    if not p.is_dir():
        return one(str(p))
    h = hashlib.sha256()
    for f in files_of(p, suffixes):
        h.update(f"{f.relative_to(p).as_posix()}\0{one(str(f))}\n".encode())
    return h.hexdigest()


def combined(parts: dict[str, str]) -> str:
    """One digest of {name: digest} (e.g. a package's files)."""
    h = hashlib.sha256()
    for name in sorted(parts):
        h.update(f"{name}\0{parts[name]}\n".encode())
    return h.hexdigest()
