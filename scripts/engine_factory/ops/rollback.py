"""rollback: make the previously promoted key live again (its plans must still be here; prune never removes it)."""

from __future__ import annotations

from ..errors import FactoryError
from . import emit, operation_parser
from .promote import redeploy


def rollback(directory=".", why: str | None = None, configfiles=()) -> dict:
    from ..deploy import gate

    record = gate.read_live(directory)
    target = gate.last_promoted(record)
    if record.get("live") is None or target is None:
        raise FactoryError(f"rollback: {gate.LIVE} has no earlier promoted key to go back to")
    if target not in gate.keys_built(directory):
        raise FactoryError(f"rollback: key '{target}' has no plans here any more")
    gate.set_live(directory, target, action="rollback", why=why or f"rollback from {record['live']}")
    # Triton follows at once where the zoo's config is named; else at the next run of the factory
    redeployed = redeploy(directory, configfiles) if configfiles else None
    return {"from": record["live"], "live": target, "redeployed": redeployed}


def render(r: dict) -> str:
    n = len((r.get("redeployed") or {}).get("repositories") or [])
    follows = (
        f"; Triton follows it ({n} repositories)"
        if n
        else "; its Triton repositories are written by the next run (or give --configfile to write them now)"
        if r.get("redeployed") is None
        else ""
    )
    return f"rollback: {r['from']} -> {r['live']} is live" + follows


def add_parser(subparsers) -> None:
    p = operation_parser(
        subparsers,
        "rollback",
        "make the previously promoted key live again",
        "python -m engine_factory rollback --why 'p99 regressed in production' --configfile zoo.yaml",
    )
    p.add_argument("--why", help="recorded in artifacts/live.json")
    p.set_defaults(func=main)


def main(args) -> int:
    emit(rollback(args.directory, args.why, args.configfile or ()), render, args.json)
    return 0
