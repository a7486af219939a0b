"""verify: re-hash every artifact and its inputs along the provenance chain and report what does not add up.

  tampered  a file whose content no longer matches the sha256/size its own provenance sidecar (or, for a plan, its
            in-toto statement) recorded
  missing   a file the provenance names that is not on disk: a sidecar's artifact, an input, an input's sidecar
  orphaned  a file under artifacts/ that nothing accounts for: an artifact without a sidecar, a validation or parity
            result whose plan/ONNX is gone, a statement without its plan, a temporary leftover
  stale     (a warning) an artifact made from an earlier version of an input that has since been legitimately
            re-made or replaced (the input matches its own sidecar, or is a source file such as a checkpoint):
            the factory has not re-run yet, or the artifact belongs to a key this host no longer builds

Any tampered, missing or orphaned file makes the exit status non-zero (`--strict`: stale too). Each file is hashed
once, however many records name it.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from . import paths
from .atomic import read_json
from .provenance import sha256

SIDECAR = ".provenance.json"
STATEMENT = ".intoto.json"
NOT_CHAINED = {"demo", "logs", "benchmarks", "report", "cache", "scheduled"}  # top-level dirs outside the chain
FAILING = ("tampered", "missing", "orphaned")


class _Hasher:
    def __init__(self, base: Path):
        self.base, self.cache, self.files = base, {}, 0

    def path(self, p: str) -> Path:
        return Path(p) if os.path.isabs(p) else self.base / p

    def exists(self, p: str) -> bool:
        return self.path(p).exists()

    def digest(self, p: str) -> str | None:
        if p not in self.cache:
            full = self.path(p)
            self.cache[p] = sha256(full) if full.exists() else None
            self.files += full.exists()
        return self.cache[p]


def verify(directory: str = ".", root: str = paths.ROOT) -> dict:
    start = time.monotonic()
    base = Path(directory)
    h = _Hasher(base)
    problems: list[dict] = []

    def problem(kind, path, detail, via=None):
        problems.append({"kind": kind, "path": path, "detail": detail, **({"via": via} if via else {})})

    sidecars = sorted(p.relative_to(base).as_posix() for p in (base / root).rglob(f"*{SIDECAR}"))
    accounted = set()
    chains_ok = 0
    for side in sidecars:
        accounted.add(side)
        record = read_json(base / side)
        if record is None or "artifact" not in record:
            problem("tampered", side, "provenance sidecar is not readable JSON with an artifact")
            continue
        art = record["artifact"]
        path = art["path"]
        accounted.add(path)
        if path != side[:-len(SIDECAR)]:
            problem("tampered", side, f"sidecar names artifact {path}, not the file beside it")
        if not h.exists(path):
            problem("missing", path, "artifact of this provenance sidecar is missing", via=side)
            continue
        ok = True
        found = h.digest(path)
        if found != art["sha256"]:
            problem("tampered", path, f"sha256 {found[:12]}… differs from its provenance ({art['sha256'][:12]}…)")
            ok = False
        elif "size" in art and h.path(path).stat().st_size != art["size"] and h.path(path).is_file():
            problem("tampered", path, f"size {h.path(path).stat().st_size} differs from its provenance ({art['size']})")
            ok = False
        for entry in record.get("inputs", []):
            ipath = entry["path"]
            accounted.add(ipath)  # e.g. TensorFlow's model.pb.io.json: checked here, as an input
            if not h.exists(ipath):
                problem("missing", ipath, f"input '{entry['label']}' of {path} is missing", via=side)
                ok = False
                continue
            if entry.get("provenance") and not h.exists(entry["provenance"]):
                problem("missing", entry["provenance"], f"provenance of input {ipath} is missing (the chain to the "
                        "checkpoint is broken)", via=side)
                ok = False
            if h.digest(ipath) != entry["sha256"]:
                parent = read_json(h.path(entry["provenance"])) if entry.get("provenance") else None
                if parent and parent.get("artifact", {}).get("sha256") != h.digest(ipath):
                    ok = False  # the input itself is tampered: reported at its own sidecar
                    continue
                what = "was re-made since" if parent else "(a source file) changed since"
                problem("stale", path, f"made from an earlier {ipath}, which {what}", via=side)
                ok = False
        chains_ok += ok and path.endswith("model.plan")

    statements = sorted(p.relative_to(base).as_posix() for p in (base / root).rglob(f"*{STATEMENT}"))
    for st in statements:
        accounted.add(st)
        plan = st[:-len(STATEMENT)]
        doc = read_json(base / st)
        if not h.exists(plan):
            problem("orphaned", st, "in-toto statement of a plan that is not on disk")
            continue
        try:
            subject = doc["subject"][0]
            recorded = subject["digest"]["sha256"]
        except (TypeError, KeyError, IndexError):
            problem("tampered", st, "not an in-toto statement with a sha256 subject")
            continue
        if subject.get("name") != plan:
            problem("tampered", st, f"statement subject is {subject.get('name')}, not {plan}")
        elif recorded != h.digest(plan):
            problem("tampered", plan, f"sha256 differs from its in-toto statement ({recorded[:12]}…)", via=st)
    for p in base.glob(paths.plan_glob(root)):
        rel = p.relative_to(base).as_posix()
        if rel + SIDECAR in accounted and not (base / (rel + STATEMENT)).exists():
            problem("missing", rel + STATEMENT, "plan has no in-toto statement (a plan built before statements "
                    "existed gets one from its sidecar with `python -m scripts attest`)")

    # files nothing accounts for
    model_dirs = [d for d in (base / root).iterdir() if d.is_dir() and d.name not in NOT_CHAINED] \
        if (base / root).is_dir() else []
    for model_dir in sorted(model_dirs):
        for f in sorted(model_dir.rglob("*")):
            if not f.is_file():
                continue
            rel = f.relative_to(base).as_posix()
            if rel in accounted or rel.endswith((SIDECAR, STATEMENT)):
                continue
            parts = rel.split("/")
            if ".tmp" in f.name:
                problem("orphaned", rel, "temporary file left by an interrupted stage")
            elif len(parts) > 2 and parts[2] == "validation":
                owner = _validation_owner(parts)
                if owner and not h.exists(owner):
                    problem("orphaned", rel, f"result of {owner}, which is not on disk")
            elif not rel.endswith(".lock"):
                problem("orphaned", rel, "artifact without a provenance sidecar")

    counts = {k: sum(p["kind"] == k for p in problems) for k in (*FAILING, "stale")}
    return {"ok": not any(counts[k] for k in FAILING), "counts": counts, "problems": problems,
            "sidecars": len(sidecars), "statements": len(statements), "files_hashed": h.files,
            "plans_verified": chains_ok, "seconds": round(time.monotonic() - start, 2)}


def _validation_owner(parts: list[str]) -> str | None:
    """artifacts/m/validation/onnx/<variant>.json -> its ONNX; artifacts/m/validation/<key>/sm<cc>/<p>/… -> plan."""
    model = parts[1]
    if len(parts) == 5 and parts[3] == "onnx":
        variant = parts[4].removesuffix(".json")
        return (paths.onnx(model) if variant == "export" else paths.sim_onnx(model) if variant == "sim"
                else paths.precision_onnx(model, variant))
    if len(parts) == 7 and parts[4].startswith("sm"):
        return paths.plan(model, parts[3], parts[4][2:], parts[5])
    return None


def render(report: dict) -> str:
    c = report["counts"]
    lines = [f"verify: {report['sidecars']} provenance records, {report['statements']} in-toto statements, "
             f"{report['files_hashed']} files hashed in {report['seconds']} s; {report['plans_verified']} plans "
             f"verified back to their sources; tampered {c['tampered']}, missing {c['missing']}, orphaned "
             f"{c['orphaned']}, stale {c['stale']}"]
    for p in report["problems"]:
        lines.append(f"  {p['kind']:<9} {p['path']}: {p['detail']}")
    lines.append("ok" if report["ok"] else "FAILED: tampered, missing or orphaned files")
    return "\n".join(lines)


def main(args) -> int:
    report = verify(args.directory)
    print(json.dumps(report, indent=1) if args.json else render(report))
    return 0 if report["ok"] and not (args.strict and report["counts"]["stale"]) else 1
