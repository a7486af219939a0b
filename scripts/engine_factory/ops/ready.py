"""`python -m engine_factory ready <model dir> [--json]`: before Triton starts, can this host load a repository's
plans? The checking is scripts/engine_factory/deploy/readiness.py's; here its text form and the exit status."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import signing
from ..deploy.readiness import CANNOT, READY, REBUILD, REFUSED, check_repository, worst
from . import emit

EXIT = {READY: 0, REBUILD: 2, CANNOT: 3, REFUSED: 4}  # a repository that is none is a FactoryError: 1


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "ready",
        help="before Triton starts: can this host load the plans of a Triton repository?",
        description="For each plan of a Triton model directory: read its header, compare "
        "backend version and compute capability with this host's GPUs and "
        "runtime; say ready, needs rebuild (which key) or cannot run here.",
        epilog="example:\n  python -m engine_factory ready artifacts/triton/resnet50_fp16 "
        "--json --trusted-key keys/factory.pub\nexit status: 0 ready, 2 needs rebuild, 3 cannot run here, "
        "4 refused (trusted keys given and model.sig is missing, bad, by an untrusted or revoked key, or a file was "
        "changed), 1 not a Triton model directory (the message names the file).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("repository", nargs="+", help="Triton model directories (artifacts/triton/<name>)")
    p.add_argument(
        "--runtime-version",
        help="the TensorRT version that will load the plans (e.g. the one in the "
        "Triton container); default: the version installed here",
    )
    p.add_argument(
        "--trusted-key",
        action="append",
        default=[],
        metavar="FILE",
        help="a trusted PEM public key (repeatable); with any, an unsigned or tampered directory is refused "
        "before any plan is read",
    )
    p.add_argument(
        "--revoked-key", action="append", default=[], metavar="FILE|KEYID", help="a revoked key (repeatable)"
    )
    p.add_argument(
        "--configfile",
        help="take trusted/revoked keys from this zoo config's `signing` section (when no --trusted-key is given)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=main)


def trust_of(args) -> signing.Trust | None:
    """The keys to check against: the flags, else the config's signing section, else none (nothing checked)."""
    if args.trusted_key or args.revoked_key:
        return signing.Trust(args.trusted_key, args.revoked_key)
    if args.configfile:
        from ..config import load

        cfg = load([args.configfile])
        if signing.settings(cfg)["key"] or signing.settings(cfg)["trusted_keys"]:
            return signing.Trust.from_config(cfg)
    return None


def main(args) -> int:
    trust = trust_of(args)
    reports = [check_repository(d, runtime_version=args.runtime_version, trust=trust) for d in args.repository]
    if args.json:
        emit({"repositories": reports, "verdict": worst(reports)}, render, True)
    else:
        print("\n".join(render(r) for r in reports))
    return EXIT[worst(reports)]


def render(report: dict) -> str:
    lines = [
        f"{report['repository']}: Triton model '{report['name']}' ({report['platform']}), version "
        f"{report['version']}; this host: GPUs {', '.join(report['host']['gpus']) or 'none'}, runtimes "
        + (", ".join(f"{m} {v}" for m, v in report["host"]["runtimes"].items()) or "none")
    ]
    for p in report["plans"]:
        lines.append(f"  {p['compute_capability']:>5} {Path(p['file']).name}: {p['answer']}: {p['reason']}")
    for g in report["gpus"]:
        if g["plan"] is None:
            lines.append(f"  GPU {g['compute_capability']}: {g['answer']}: {g['reason']}")
    for note in report["triton_note"]:
        lines.append(f"  Triton: {note}")
    sig = report.get("signature") or {}
    lines.append(f"  signature: {sig.get('state')}: {sig.get('detail')}")
    lines.append(report["reason"])
    return "\n".join(lines)
