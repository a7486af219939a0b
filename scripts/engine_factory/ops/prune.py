"""prune: remove the plans, validations and timing caches of keys that neither this host/config builds nor `--keep`
names. After a TensorRT upgrade or a change of targets the old key's plans are kept (users may still deploy them);
prune is how they go, when nobody needs them.

The live key and the last promoted one (artifacts/live.json, `promote`/`rollback`) are never removed: they are kept
as if named by --keep.

A key here is `{backend}-{version}` with a compute capability: `--keep rtx-1.7.1.116` keeps every compute capability
of that version, `--keep rtx-1.7.1.116/sm86` one of them (name the keys other hosts sharing this artifacts folder
still build). Without `--delete` it only lists what it would remove. With `--delete` it refuses while plans of the
keys this host builds are missing (you would be left with neither the old plans nor the new), unless `--force`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .. import paths
from ..deploy.gate import protected_keys
from ..errors import Refused
from ..provenance import size
from . import emit, load_config, operation_parser
from .snakemake import summary
from .status import resolve_factory


def _kept(key: str, cc: str, keep) -> bool:
    return any(k == key or k == f"{key}/sm{cc}" for k in keep)


def plan_prune(directory: str = ".", configfiles=(), keep=(), root: str = paths.ROOT) -> dict:
    base = Path(directory)
    rows, _ = summary(directory, configfiles)
    plan_rows = [(r, t) for r in rows if paths.stage_of(r["rule"]) == "build" and (t := paths.parse_plan(r["file"]))]
    # the keys of failed targets are still this host's: a failure is no reason to delete another key's plans
    produced = {(t["key"], t["cc"]) for _, t in plan_rows} | {
        (j["key"], j["cc"]) for j in resolve_factory(directory, configfiles).jobs
    }
    if not produced and not keep:
        raise Refused("this host/config produces no plans: refusing to prune everything (name --keep keys)")
    keep = (*keep, *sorted(protected_keys(directory)))  # the live and the last promoted key: never pruned
    victims = []
    for kind, label in (("plan_dir", "plans"), ("validation_dir", "validation"), ("timing_cache", "timing cache")):
        for d in sorted(base.glob(paths.glob_of(kind, root))):
            t = paths.parse(kind, d.relative_to(base).as_posix().removesuffix(".lock"))
            if t and (t["key"], t["cc"]) not in produced and not _kept(t["key"], t["cc"], keep):
                victims.append(
                    {
                        "kind": label,
                        "path": d.relative_to(base).as_posix(),
                        "key": t["key"],
                        "cc": t["cc"],
                        "bytes": size(d),
                    }
                )
    return {
        "produced": sorted(f"{k}/sm{c}" for k, c in produced),
        "keep": list(keep),
        "remove": victims,
        "bytes": sum(v["bytes"] for v in victims),
        "missing": sorted(r["file"] for r, _ in plan_rows if r["status"] == "missing"),
    }


def prune(directory: str = ".", configfiles=(), keep=(), delete: bool = False, force: bool = False) -> dict:
    report = plan_prune(directory, configfiles, keep)
    base = Path(directory)
    if delete and report["remove"] and report["missing"] and not force:
        raise Refused(
            f"{len(report['missing'])} plan(s) of the keys this host builds are missing (e.g. "
            f"{report['missing'][0]}): build them first (make run), or prune with --force"
        )
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
    lines = [
        f"prune: this host/config builds {', '.join(report['produced']) or 'nothing'}"
        + (f"; kept by --keep: {', '.join(report['keep'])}" if report["keep"] else "")
    ]
    if not report["remove"]:
        lines.append("nothing to prune")
        return "\n".join(lines)
    lines.append(f"{verb} {len(report['remove'])} paths of {', '.join(keys)} ({report['bytes'] / 2**20:.1f} MiB):")
    lines += [f"  {v['kind']:<12} {v['path']}" for v in report["remove"]]
    if not report["deleted"]:
        lines.append("(dry run: add --delete to remove them)")
    return "\n".join(lines)


def add_parser(subparsers) -> None:
    p = operation_parser(
        subparsers,
        "prune",
        "remove plans/validations/timing caches of keys this host/config no longer builds",
        "python -m engine_factory prune --keep rtx-1.7.1.116/sm86 --delete",
    )
    p.add_argument("--keep", action="append", help="a key (rtx-1.7.1.116) or key/smCC to keep; repeatable")
    p.add_argument("--delete", action="store_true", help="really delete (default: list only)")
    p.add_argument("--force", action="store_true", help="delete even while plans of this host's keys are missing")
    p.set_defaults(func=main)


def main(args) -> int:
    load_config(args)
    report = prune(args.directory, args.configfile or (), keep=args.keep or (), delete=args.delete, force=args.force)
    emit(report, render, args.json)
    return 0
