"""verify: re-hash every artifact and its inputs along the provenance chain and report what does not add up.

  tampered  a file whose content no longer matches the sha256/size its own provenance sidecar (or, for a plan, its
            in-toto statement) recorded
  missing   a file the provenance names that is not on disk: a sidecar's artifact, an input, an input's sidecar
  orphaned  a file under artifacts/ that nothing accounts for: an artifact without a sidecar, a validation or parity
            result whose plan/ONNX is gone, a statement without its plan, a temporary leftover
  foreign   (a warning) a file under artifacts/ where no stage writes (artifacts/notes/todo.txt) or a folder symlink
            out of artifacts/: reported and kept, never followed, never repaired
  stale     (a warning) made from an input, setting, tool or code that has changed since (outcomes.STALE_MEANS, the
            word's one meaning in status, verify and the nightly summary); verify sees the inputs its record names:
            one that has been legitimately re-made or replaced (it matches its own sidecar, or is a source file such
            as a checkpoint). The factory has not re-run yet, or the artifact belongs to a key this host no longer
            builds (`status` lists those as not produced)
  unrecorded (a warning) a result (validation, parity) without a provenance record: made before 0.3.0, it can only
            be re-made, not vouched for

Four passes: the provenance records (each artifact and its inputs), the in-toto statements, the Triton model
repositories (artifacts/triton/<name>: config.pbtxt parses with Triton's schema, each plan in it has the sha256 its
provenance recorded, nothing else lies there), the files nothing accounts for. Any tampered, missing or orphaned file
makes the exit status non-zero (`--strict`: stale too). Each file is hashed once, however many records name it, and
never from the content cache: verify trusts no cache.

While a factory run is in progress in the directory (scripts/engine_factory/ops/runs.py), files it is writing are not
judged: temporaries, files newer than the run's start and artifacts missing because a job is re-making them are counted
as `in-flight`, and the verdict says a run is in progress.

`--repair` (run by `make scheduled` before the factory) removes what a rerun must make again: a damaged artifact
(content differs from its record) with its record, statement and results; temporary and orphaned files; and
everything made from an artifact that is gone (it can no longer be verified), so the next run rebuilds the chain
from the nearest artifact still intact. Every path is resolved before it is deleted: only a relative path inside the
real artifacts/ reached without a symlink is removed; a record naming anything else (absolute, `..`, through a folder
symlink) is reported as tampered and not obeyed. Snakemake itself never re-makes a missing intermediate while what was
made from it is up to date (measured), which is why repair removes the latter. It refuses to run during a run.

Signatures (scripts/engine_factory/signing.py), where the config names a signing key or trusted public keys
(`--configfile`): each plan's DSSE envelope and each Triton model directory's model.sig are checked against those keys
only, never against what the records say. `unsigned`, `bad signature`, `signed by an unknown key` and `revoked key`
fail; a plan, statement or model-directory file that is not what was signed is `tampered` (so a forged record that
agrees with a forged plan is caught). Repair never acts on a signature answer but `tampered`: a record nobody vouched
for is damage to look at, not an order. The envelopes and model.sig files are records, never orphans (unless their
plan or directory is gone). Without keys configured, plans are reported unsigned: information, not failure.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import time
from pathlib import Path

from .. import paths, signing
from ..atomic import read_json
from ..deploy.triton import PUBLISHED, read_config
from ..errors import FactoryError, RunInProgress
from ..fingerprint import files_of, sha256
from ..outcomes import STALE_MEANS, Outcome
from . import emit, load_config, operation_parser
from .runs import state

FAILING = ("tampered", "missing", "orphaned")
# a summary cell with another status (failed, skipped, damaged) names no verdict
VERDICTS = {Outcome.PASS, Outcome.FAIL, Outcome.NOT_RUN}
SIGNATURE_KINDS = (signing.UNSIGNED, signing.BAD, signing.UNKNOWN, signing.REVOKED)  # fail where keys are configured
MAX_HASHED_BYTES = 64 << 30  # the largest file verify reads (ONNX stops at 2 GB; plans and checkpoints fit)
UNHASHED = "-" * 64  # the digest of a file verify refuses to read: no sha256 equals it
FACTORY_DIRS = {p.split("/")[2] for p in (paths.FROZEN, paths.ONNX, paths.GOLDEN, paths.PARITY, paths.PLAN)}


class _Check:
    """The files of one workflow directory, hashed at most once each, and the problems found."""

    def __init__(self, base: Path, root: str = paths.ROOT):
        self.base, self.cache, self.files, self.problems, self.accounted = base, {}, 0, [], set()
        self.root_name, self.refused = root, {}

    def path(self, p: str) -> Path:
        return Path(p) if os.path.isabs(p) else self.base / p

    def exists(self, p: str) -> bool:
        return self.path(p).exists()

    def unhashable(self, p: str) -> str | None:
        """Why `p` is not hashed (None: it is): only a regular file of bounded size is read, so a record naming
        /dev/zero, a FIFO or a terabyte cannot hang verify (and with it the nightly). Judged once per path."""
        if p not in self.refused:
            self.refused[p] = self._unhashable(p)
        return self.refused[p]

    def _unhashable(self, p: str) -> str | None:
        try:
            st = os.stat(self.path(p))
        except OSError:
            return None  # missing: reported as missing
        if stat.S_ISDIR(st.st_mode):  # a source folder (SavedModel, TF1 checkpoint): hashed as the stage hashed it
            size = sum(f.stat().st_size for f in files_of(self.path(p)))  # its regular files only
        elif not stat.S_ISREG(st.st_mode):
            return "not a regular file (never opened)"
        else:
            size = st.st_size
        if size > MAX_HASHED_BYTES:
            return f"{size} bytes, larger than the {MAX_HASHED_BYTES >> 30} GiB verify hashes"
        return None

    def digest(self, p: str) -> str | None:
        if p not in self.cache:
            full = self.path(p)
            if self.unhashable(p):
                self.cache[p] = UNHASHED  # equals no recorded sha256: a mismatch, never a read
            else:
                self.cache[p] = sha256(full, cached=False) if full.exists() else None
                self.files += full.exists()
        return self.cache[p]

    def owned(self, p: str) -> Path | None:
        """`p` as a path the factory may delete (paths.deletable), else None."""
        full = paths.deletable(p, str(self.base), self.root_name)
        return Path(full) if full else None

    def outside(self, p: str) -> bool:
        """An artifact path a record cannot name: absolute, outside artifacts/, or through a symlink out of it."""
        return self.owned(p) is None

    def problem(self, kind, path, detail, via=None):
        self.problems.append({"kind": kind, "path": path, "detail": detail, **({"via": via} if via else {})})

    def relative(self, pattern: str, root: str) -> list[str]:
        return sorted(p.relative_to(self.base).as_posix() for p in (self.base / root).rglob(pattern))


def _check_record(c: _Check, side: str) -> bool:
    """One provenance sidecar: its artifact and every input it names. True when the chain holds."""
    c.accounted.add(side)
    record = read_json(c.base / side)
    if record is None or "artifact" not in record:
        c.problem("tampered", side, "provenance sidecar is not readable JSON with an artifact")
        return False
    art = record["artifact"]
    path = art["path"]
    if c.outside(path):  # damage to report, never an order: repair removes this record, not what it names
        c.problem("tampered", side, f"sidecar names artifact {path}, outside {paths.ROOT}/ (not obeyed)")
        return False
    c.accounted.add(path)
    if path != side[: -len(paths.SIDECAR_SUFFIX)]:
        c.problem("tampered", side, f"sidecar names artifact {path}, not the file beside it")
    if not c.exists(path):
        c.problem("missing", path, "artifact of this provenance sidecar is missing", via=side)
        return False
    found, ok = c.digest(path), True
    if why := c.unhashable(path):
        c.problem("tampered", path, why)
        ok = False
    elif found != art["sha256"]:
        c.problem("tampered", path, f"sha256 {found[:12]}… differs from its provenance ({art['sha256'][:12]}…)")
        ok = False
    elif "size" in art and c.path(path).is_file() and c.path(path).stat().st_size != art["size"]:
        c.problem("tampered", path, f"size {c.path(path).stat().st_size} differs from its provenance ({art['size']})")
        ok = False
    inputs_ok = [_check_input(c, entry, path, side) for entry in record.get("inputs", [])]  # every input, always
    return ok and all(inputs_ok)


def _check_input(c: _Check, entry: dict, path: str, side: str) -> bool:
    ipath = entry["path"]
    c.accounted.add(ipath)  # e.g. TensorFlow's model.pb.io.json: checked here, as an input
    if not c.exists(ipath):
        c.problem("missing", ipath, f"input '{entry['label']}' of {path} is missing", via=side)
        return False
    if entry.get("provenance") and not c.exists(entry["provenance"]):
        c.problem(
            "missing",
            entry["provenance"],
            f"provenance of input {ipath} is missing (the chain to the checkpoint is broken)",
            via=side,
        )
        return False
    if why := c.unhashable(ipath):  # e.g. a record naming /dev/zero: damage, never read
        c.problem("tampered", side, f"input '{entry['label']}' {ipath} is {why}")
        return False
    if c.digest(ipath) == entry["sha256"]:
        return True
    parent = read_json(c.path(entry["provenance"])) if entry.get("provenance") else None
    if parent and parent.get("artifact", {}).get("sha256") != c.digest(ipath):
        return False  # the input itself is tampered: reported at its own sidecar
    what = "was re-made since" if parent else "(a source file) changed since"
    c.problem("stale", path, f"made from an earlier {ipath}, which {what}", via=side)
    return False


def _check_statements(c: _Check, root: str) -> int:
    """Each plan's in-toto statement against the plan; plans without one."""
    statements = c.relative(f"*{paths.STATEMENT_SUFFIX}", root)
    for st in statements:
        c.accounted.add(st)
        plan = st[: -len(paths.STATEMENT_SUFFIX)]
        doc = read_json(c.base / st)
        if not c.exists(plan):
            c.problem("orphaned", st, "in-toto statement of a plan that is not on disk")
            continue
        try:
            subject = doc["subject"][0]
            recorded = subject["digest"]["sha256"]
        except (TypeError, KeyError, IndexError):
            c.problem("tampered", st, "not an in-toto statement with a sha256 subject")
            continue
        if subject.get("name") != plan:
            c.problem("tampered", st, f"statement subject is {subject.get('name')}, not {plan}")
        elif recorded != c.digest(plan):
            c.problem("tampered", plan, f"sha256 differs from its in-toto statement ({recorded[:12]}…)", via=st)
    for p in c.base.glob(paths.plan_glob(root)):
        rel = p.relative_to(c.base).as_posix()
        if paths.provenance(rel) in c.accounted and not (c.base / paths.intoto(rel)).exists():
            c.problem(
                "missing",
                paths.intoto(rel),
                "plan has no in-toto statement (a plan built before statements "
                "existed gets one from its sidecar with `python -m engine_factory attest`)",
            )
    return len(statements)


def _check_repositories(c: _Check, root: str) -> int:
    """Each Triton model directory (scripts/engine_factory/deploy/triton.py): its config.pbtxt (whose own sha256 and
    inputs the record pass checks) parses as Triton's ModelConfig and names exactly the plans its provenance recorded;
    each of them is there with that sha256; any other file is orphaned. Returns the number of repositories."""
    top = c.base / root / paths.TRITON_ROOT[len(paths.ROOT) + 1 :]
    dirs = sorted(d for d in top.iterdir() if d.is_dir()) if top.is_dir() else []
    records = c.base / root / os.path.dirname(paths.DEPLOY_RECORD)[len(paths.ROOT) + 1 :]
    for record in sorted(records.glob("*.json")) if records.is_dir() else []:
        if paths.is_record(record.name) or (read_json(record) or {}).get("status") != PUBLISHED:
            continue
        config = f"{paths.triton_model(record.stem, root)}/config.pbtxt"
        if not c.exists(config):
            c.problem("missing", config, "its deploy record says published", via=record.relative_to(c.base).as_posix())
    for model_dir in dirs:
        rel = model_dir.relative_to(c.base).as_posix()
        files = sorted(f.relative_to(c.base).as_posix() for f in model_dir.rglob("*") if f.is_file())
        config = f"{rel}/config.pbtxt"
        record = read_json(c.base / paths.provenance(config)) or {}
        recorded = {e["file"]: e for e in (record.get("facts") or {}).get("plans", [])}
        if paths.is_temporary(rel) or not c.exists(config) or not record:
            why = (
                "temporary model directory left by an interrupted deploy"
                if paths.is_temporary(rel)
                else "in a Triton model directory without config.pbtxt and its provenance"
            )
            for f in files:
                c.accounted.add(f)
                c.problem("orphaned", f, why)
            continue
        try:
            named = {
                f"{rel}/{paths.TRITON_VERSION}/{name}"
                for name in read_config(c.path(config)).cc_model_filenames.values()
            }
            if named != set(recorded):
                c.problem("tampered", config, f"names the plans {sorted(named)}, its provenance {sorted(recorded)}")
        except FactoryError as e:
            c.problem("tampered", config, str(e).split(": ", 1)[-1])
        for file, entry in recorded.items():
            c.accounted.add(file)
            if not c.exists(file):
                c.problem("missing", file, "plan of this Triton repository is missing", via=config)
            elif c.digest(file) != entry["sha256"]:
                c.problem(
                    "tampered",
                    file,
                    f"sha256 differs from the repository's provenance ({entry['sha256'][:12]}…)",
                    via=config,
                )
        for f in files:
            if f not in c.accounted and not paths.is_record(f):
                c.accounted.add(f)
                c.problem("orphaned", f, "not part of this Triton repository's provenance")
    return len(dirs)


def _check_summary(c: _Check, root: str) -> None:
    """The report's summary.json says what each plan's validation says: it parses, and every cell that names a
    validation on disk has that validation's status (the validations themselves are checked by their records)."""
    summary = paths.REPORT_JSON.replace(paths.ROOT, root, 1)
    if not c.exists(summary):
        return
    try:
        cells = json.loads(c.path(summary).read_bytes())["plans"]
        claims = [(cell["status"], cell.get("links", {}).get("validation")) for cell in cells]
    except (ValueError, KeyError, TypeError) as e:  # emptied, halved, zeroed or edited out of shape
        c.problem("tampered", summary, f"not the report's summary ({type(e).__name__})")
        return
    for status, validation in claims:
        if status not in VERDICTS or not validation or not c.exists(validation) or c.outside(validation):
            continue
        found = (read_json(c.path(validation)) or {}).get("status")
        if found != status:
            c.problem("tampered", summary, f"says {status} for {validation}, which says {found}", via=validation)


def _check_unaccounted(c: _Check, root: str) -> None:
    """Files under a model's directory that no record names: temporaries, results of vanished artifacts, strays."""
    top = c.base / root
    model_dirs = [d for d in top.iterdir() if d.is_dir() and d.name not in paths.OUTSIDE_CHAIN] if top.is_dir() else []
    for model_dir in sorted(model_dirs):
        if model_dir.is_symlink():  # never followed: what lies behind it is not the factory's to judge or delete
            rel = model_dir.relative_to(c.base).as_posix()
            c.problem("foreign", rel, f"a folder symlink to {os.readlink(model_dir)}: not followed, never repaired")
            continue
        for f in sorted(model_dir.rglob("*")):
            rel = f.relative_to(c.base).as_posix()
            if not f.is_file() or rel in c.accounted or paths.is_record(rel) or rel.endswith(".lock"):
                continue
            owner = paths.owner_of(rel)
            if rel.split("/")[2:3] == [f.name] or rel.split("/")[2] not in FACTORY_DIRS:
                # no stage writes here (e.g. artifacts/notes/todo.txt): the user's file, reported and kept
                c.problem("foreign", rel, "not a file the factory makes: kept (move it out of artifacts/)")
            elif paths.is_temporary(rel):
                c.problem("orphaned", rel, "temporary file left by an interrupted stage")
            elif owner is not None:
                if not c.exists(owner):
                    c.problem("orphaned", rel, f"result of {owner}, which is not on disk")
                else:  # results are recorded since 0.3.0: one without cannot be vouched for, only re-made
                    c.problem("unrecorded", rel, f"result of {owner} without a provenance record (made before 0.3.0)")
            else:
                c.problem("orphaned", rel, "artifact without a provenance sidecar")


def verify(
    directory: str = ".", root: str = paths.ROOT, *, repair: bool = False, trust: signing.Trust | None = None
) -> dict:
    start = time.monotonic()
    run = state(directory)
    if repair and run["in_progress"]:
        pids = ", ".join(f"pid {r['pid']}" for r in run["runs"])
        raise RunInProgress(f"a factory run is in progress here ({pids}): repair after it ends")
    c = _Check(Path(directory), root)
    sidecars = c.relative(f"*{paths.SIDECAR_SUFFIX}", root)
    plans_ok = sum(_check_record(c, side) and side.endswith("model.plan" + paths.SIDECAR_SUFFIX) for side in sidecars)
    statements = _check_statements(c, root)
    signatures = _check_signatures(c, root, trust)
    repositories = _check_repositories(c, root)
    _check_summary(c, root)
    _check_unaccounted(c, root)
    if run["in_progress"]:
        _set_in_flight(c, min(r["started"] for r in run["runs"]))
    removed = _repair(c, root) if repair else []
    counts = {
        k: sum(p["kind"] == k for p in c.problems)
        for k in (*FAILING, *SIGNATURE_KINDS, "stale", "unrecorded", "in-flight", "foreign")
    }
    return {
        "ok": not any(counts[k] for k in (*FAILING, *SIGNATURE_KINDS)),
        "signatures": signatures,
        "counts": counts,
        "problems": c.problems,
        "sidecars": len(sidecars),
        "statements": statements,
        "repositories": repositories,
        "files_hashed": c.files,
        "plans_verified": plans_ok,
        "in_progress": [r["pid"] for r in run["runs"]],
        "removed": removed,
        "seconds": round(time.monotonic() - start, 2),
    }


def _check_signatures(c: _Check, root: str, trust: signing.Trust | None) -> dict:
    """Each plan's envelope and each model directory's model.sig against the trusted keys (see the module doc); the
    signature files are accounted for as records. Returns {checked, plans: {state: n}, repositories: {state: n}}."""
    plans = sorted(p.relative_to(c.base).as_posix() for p in c.base.glob(paths.plan_glob(root)))
    top = c.base / root / paths.TRITON_ROOT[len(paths.ROOT) + 1 :]
    dirs = [d.relative_to(c.base).as_posix() for d in sorted(top.iterdir()) if d.is_dir()] if top.is_dir() else []
    summary = {"checked": trust is not None, "plans": {}, "repositories": {}}
    for res in signing.check_artifacts(c.base, plans, dirs, trust):
        which = "repositories" if res["path"] in dirs else "plans"
        summary[which][res["state"]] = summary[which].get(res["state"], 0) + 1
        c.accounted.add(res["record"])
        if trust is None or res["state"] == signing.SIGNED:
            continue
        kind = "tampered" if res["state"] == signing.TAMPERED else res["state"]
        c.problem(kind, res["blame"] if kind == "tampered" else res["record"], res["detail"])
    for env in c.relative(f"*{signing.ENVELOPE_SUFFIX}", root):  # an envelope whose plan is gone
        if env not in c.accounted:
            c.accounted.add(env)
            c.problem("orphaned", env, "DSSE envelope of a plan that is not on disk")
    return summary


def _set_in_flight(c: _Check, run_started: float) -> None:
    """During a run: temporaries, files written since it started and artifacts it is re-making are not judged."""
    for p in c.problems:
        full = c.path(p["path"])
        new = full.exists() and full.stat().st_mtime >= run_started - 1
        via_new = p.get("via") and c.path(p["via"]).exists() and c.path(p["via"]).stat().st_mtime >= run_started - 1
        remade = p["kind"] == "missing" and p["path"].startswith(paths.ROOT + "/")
        if paths.is_temporary(p["path"]) or new or via_new or remade:
            p["kind"], p["detail"] = "in-flight", f"being written by the run in progress ({p['detail']})"


def _repair(c: _Check, root: str) -> list[str]:
    """Remove what the next run must make again (see the module doc); returns the removed paths."""
    made_from: dict[str, list[str]] = {}  # input path -> artifacts whose records name it
    for side in c.relative(f"*{paths.SIDECAR_SUFFIX}", root):
        record = read_json(c.base / side) or {}
        for entry in record.get("inputs", []):
            made_from.setdefault(entry["path"], []).append(side[: -len(paths.SIDECAR_SUFFIX)])
    owned: dict[str, list[str]] = {}  # artifact -> its results (a plan's validation, an ONNX variant's parity)
    for result in c.relative("*.json", root):
        if (owner := paths.owner_of(result)) is not None:
            owned.setdefault(owner, []).append(result)
    doomed: set[str] = set()

    def drop(artifact: str) -> None:
        if artifact in doomed:
            return
        doomed.update({artifact, paths.provenance(artifact), paths.intoto(artifact)})
        for child in (*owned.get(artifact, []), *made_from.get(artifact, [])):
            drop(child)

    for p in c.problems:
        path = p["path"]
        if p["kind"] == "tampered":
            drop(paths.artifact_of_record(path))
        elif p["kind"] == "orphaned":
            doomed.add(path)
        elif p["kind"] == "missing" and path.startswith(paths.ROOT + "/"):
            drop(paths.artifact_of_record(path) if paths.is_record(path) else path)  # an artifact gone: its chain
    strays = {p["path"] for p in c.problems if p["kind"] == "orphaned"}  # removed alone
    for model_dir in {paths.triton_model_of(p) for p in doomed - strays} - {None}:  # a Triton repository goes whole
        doomed.update(f.relative_to(c.base).as_posix() for f in c.path(model_dir).rglob("*") if f.is_file())
        doomed.update(paths.deploy_record_files(model_dir))  # and its record: the next run deploys it again
    plans = [p.relative_to(c.base).as_posix() for p in c.base.glob(paths.plan_glob(root))]
    if doomed or any(not c.exists(paths.validation(**paths.parse_plan(p))) for p in plans):
        doomed.update({paths.REPORT_JSON, paths.REPORT_HTML, paths.OUTCOME})  # its inputs change: it must run again
    removed = []
    for path in sorted(doomed):
        full = c.owned(path)  # resolved before any delete: nothing outside the real artifacts/, no symlink followed
        if full is None:
            c.problem("tampered", path, f"repair refused: outside {paths.ROOT}/ or behind a symlink (not deleted)")
        elif full.is_file() or full.is_symlink():
            full.unlink()
            removed.append(path)
    return removed


def render(report: dict) -> str:
    c = report["counts"]
    lines = [
        f"verify: {report['sidecars']} provenance records, {report['statements']} in-toto statements, "
        f"{report.get('repositories', 0)} Triton repositories, "
        f"{report['files_hashed']} files hashed in {report['seconds']} s; {report['plans_verified']} plans "
        f"verified back to their sources; tampered {c['tampered']}, missing {c['missing']}, orphaned "
        f"{c['orphaned']}, stale {c['stale']}"
        + (f", unrecorded {c['unrecorded']}" if c.get("unrecorded") else "")
        + (f", foreign {c['foreign']} (kept)" if c.get("foreign") else "")
    ]
    if c["stale"]:
        lines.append(f"stale: {STALE_MEANS} (by the inputs each record names; --strict fails on it)")
    sig = report.get("signatures") or {}
    if sig:
        tally = ", ".join(f"{n} {s}" for s, n in sorted(sig["plans"].items())) or "none"
        lines.append(
            f"signatures: plans {tally}"
            + (
                f"; repositories {', '.join(f'{n} {s}' for s, n in sorted(sig['repositories'].items()))}"
                if sig["repositories"]
                else ""
            )
            + ("" if sig["checked"] else " (no signing keys configured: plans are unsigned, not checked)")
        )
    for p in report["problems"]:
        lines.append(f"  {p['kind']:<9} {p['path']}: {p['detail']}")
    if report.get("in_progress"):
        lines.append(
            f"a factory run is in progress (pid {', '.join(map(str, report['in_progress']))}): "
            f"{c['in-flight']} file(s) it is writing were not judged; verify again after it ends"
        )
    if report.get("removed"):
        lines.append(f"repaired: removed {len(report['removed'])} file(s); the next run makes them again:")
        lines += [f"  removed {p}" for p in report["removed"]]
    lines.append(
        "ok"
        if report["ok"]
        else "FAILED: tampered, missing or orphaned files"
        + (" (repaired: run the factory)" if report.get("removed") else "")
    )
    return "\n".join(lines)


def add_parser(subparsers) -> None:
    p = operation_parser(
        subparsers,
        "verify",
        "re-hash artifacts along the provenance chain; exit 1 on tampered, missing or orphaned files",
        "python -m engine_factory verify -d ~/zoo --strict",
        snakemake=False,
    )
    p.add_argument("--strict", action="store_true", help="also fail on stale chains (inputs re-made since)")
    p.add_argument(
        "--configfile",
        nargs="+",
        metavar="FILE",
        help="the zoo's config file(s): its `signing` keys are what signatures are checked against (default: the "
        "demo zoo, which configures none)",
    )
    p.add_argument(
        "--repair",
        action="store_true",
        help="remove damaged, orphaned and temporary files and what "
        "was made from missing artifacts, so the next run "
        "rebuilds them",
    )
    p.set_defaults(func=main)


def trust_of(configfiles, directory: str) -> signing.Trust | None:
    """The keys signatures are checked against: the zoo's config's, only when it is named (the demo default
    configures none, and loading it would check checkpoints that a directory verified on its own need not have)."""
    if not configfiles:
        return None
    cfg = load_config(argparse.Namespace(configfile=list(configfiles), directory=directory))
    return signing.Trust.from_config(cfg) if signing.checking(cfg) else None


def main(args) -> int:
    report = verify(args.directory, repair=args.repair, trust=trust_of(args.configfile, args.directory))
    emit(report, render, args.json)
    if args.repair:
        return 0  # what was wrong is gone; the factory run rebuilds it
    return 0 if report["ok"] and not (args.strict and report["counts"]["stale"]) else 1
