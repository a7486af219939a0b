"""prune: remove the plans, validations and timing caches of keys that neither this host/config builds nor `--keep`
names. After a TensorRT upgrade or a change of targets the old key's plans are kept (users may still deploy them);
prune is how they go, when nobody needs them.

A key here is `{backend}-{version}` with a compute capability: `--keep rtx-1.7.1.116` keeps every compute capability
of that version, `--keep rtx-1.7.1.116/sm86` one of them (name the keys other hosts sharing this artifacts folder
still build). Without `--delete` it only lists what it would remove. With `--delete` it refuses while plans of the
keys this host builds are missing (you would be left with neither the old plans nor the new), unless `--force`.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from . import paths
from .provenance import size
from .status import ask_snakemake, parse_summary


def _kept(key: str, cc: str, keep) -> bool:
    return any(k == key or k == f"{key}/sm{cc}" for k in keep)


def plan_prune(directory: str = ".", configfiles=(), keep=(), root: str = paths.ROOT) -> dict:
    base = Path(directory)
    rows = parse_summary(ask_snakemake(directory, configfiles, dry_run=False)["summary"])
    plan_rows = [(r, t) for r in rows if r["rule"] == "build" and (t := paths.parse_plan(r["file"]))]
    produced = {(t["key"], t["cc"]) for _, t in plan_rows}
    if not produced and not keep:
        raise RuntimeError("this host/config produces no plans: refusing to prune everything (name --keep keys)")
    victims = []
    for kind, pattern in (("plans", f"{root}/*/plans/*/sm*"), ("validation", f"{root}/*/validation/*/sm*")):
        for d in sorted(base.glob(pattern)):
            key, cc = d.parent.name, d.name[2:]
            if (key, cc) not in produced and not _kept(key, cc, keep):
                victims.append({"kind": kind, "path": d.relative_to(base).as_posix(), "key": key, "cc": cc,
                                "bytes": size(d)})
    for f in sorted(base.glob(f"{root}/cache/timing/*/sm*.cache*")):
        key, cc = f.parent.name, f.name[2:].split(".")[0]
        if (key, cc) not in produced and not _kept(key, cc, keep):
            victims.append({"kind": "timing cache", "path": f.relative_to(base).as_posix(), "key": key, "cc": cc,
                            "bytes": size(f)})
    return {"produced": sorted(f"{k}/sm{c}" for k, c in produced), "keep": list(keep), "remove": victims,
            "bytes": sum(v["bytes"] for v in victims),
            "missing": sorted(r["file"] for r, _ in plan_rows if r["status"] == "missing")}


def prune(directory: str = ".", configfiles=(), keep=(), delete: bool = False, force: bool = False) -> dict:
    report = plan_prune(directory, configfiles, keep)
    base = Path(directory)
    if delete and report["remove"] and report["missing"] and not force:
        raise RuntimeError(f"{len(report['missing'])} plan(s) of the keys this host builds are missing (e.g. "
                           f"{report['missing'][0]}): build them first (make run), or prune with --force")
    if delete:
        for v in report["remove"]:
            p = base / v["path"]
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
            for parent in p.parents:  # plans/<key>/ and cache/timing/<key>/ once empty
                if parent == base or not parent.is_dir() or any(parent.iterdir()):
                    break
                parent.rmdir()
    report["deleted"] = delete
    return report


def render(report: dict) -> str:
    keys = sorted({f"{v['key']}/sm{v['cc']}" for v in report["remove"]})
    verb = "removed" if report["deleted"] else "would remove"
    lines = [f"prune: this host/config builds {', '.join(report['produced']) or 'nothing'}"
             + (f"; kept by --keep: {', '.join(report['keep'])}" if report["keep"] else "")]
    if not report["remove"]:
        lines.append("nothing to prune")
        return "\n".join(lines)
    lines.append(f"{verb} {len(report['remove'])} paths of {', '.join(keys)} ({report['bytes'] / 2**20:.1f} MiB):")
    lines += [f"  {v['kind']:<12} {v['path']}" for v in report["remove"]]
    if not report["deleted"]:
        lines.append("(dry run: add --delete to remove them)")
    return "\n".join(lines)


def main(args) -> int:
    report = prune(args.directory, args.configfile or (), keep=args.keep or (), delete=args.delete, force=args.force)
    print(json.dumps(report, indent=1) if args.json else render(report))
    return 0
