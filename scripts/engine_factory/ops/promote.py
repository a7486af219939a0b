"""promote: make a key live (artifacts/live.json: Triton, `ready` and `status` follow it), through the upgrade gate.

Without KEY (what the nightly runs): the key this host/config builds is the candidate; it is compared with the live
key (artifacts/gate/comparison.json) and promoted when every plan meets the budgets (config `gate`); otherwise it is
held, the live key's plans stay live, and the exit status is 1 with the failed budgets and plans listed. With KEY, a
person promotes that key (`--force` passes a candidate the gate holds); who, what and why go into the record.
"""

from __future__ import annotations

import subprocess

from ..errors import FactoryError
from . import emit, load_config, operation_parser
from .snakemake import command as snakemake_command


def promote(directory, cfg: dict, configfiles=(), key: str | None = None, why: str | None = None, force=False):
    from ..deploy import gate
    from .status import resolve_factory

    built = gate.keys_built(directory)
    if key is None:
        keys = sorted({j["key"] for j in resolve_factory(directory, configfiles).jobs})
        if len(keys) != 1:
            raise FactoryError(f"promote: this host/config builds {len(keys)} keys ({', '.join(keys)}): name one")
        key = keys[0]
    if key not in built:
        raise FactoryError(f"promote: key '{key}' has no plans here (built: {', '.join(sorted(built)) or 'none'})")
    verdict = gate.gate(directory, cfg, key)
    gate.write_comparison(directory, verdict)
    held = verdict["outcome"] != "pass" and not force
    if not held and verdict["live"] != key:
        reason = why or ("gate: " + verdict["reason"]) + (" (forced)" if verdict["failed"] else "")
        gate.set_live(directory, key, action="promote", why=reason, verdict=verdict)
        verdict["redeployed"] = redeploy(directory, configfiles)
    verdict["promoted"] = not held
    verdict["now_live"] = gate.read_live(directory)["live"]
    return verdict


def redeploy(directory, configfiles=()) -> dict:
    """Triton follows the live key: the workflow's deploy jobs run again now (their inputs are the live key's plans,
    read from live.json when the DAG is built), and nothing else is asked for. Returns the repositories and the exit
    status of that run (None: no repository is configured)."""
    from .status import resolve_factory

    outputs = resolve_factory(directory, configfiles).deploy_outputs()
    if not outputs:
        return {"repositories": [], "rc": None}
    cmd = [c for c in snakemake_command(directory, configfiles) if c != "--nolock"]
    cmd[3:3] = outputs  # the targets before the options (--configfile takes every word after it)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        raise FactoryError(f"the live key changed, but its Triton repositories were not written: {' | '.join(tail)}")
    return {"repositories": outputs, "rc": proc.returncode}


def render(v: dict) -> str:
    lines = [
        f"gate: candidate {v['candidate']} against live {v['live'] or '(none)'}: {v['reason']}",
        f"{len(v['rows'])} plan(s) compared; budgets: " + ", ".join(f"{k}={b}" for k, b in v["budgets"].items()),
    ]
    lines += [f"  FAILED {f['budget']:<8} {f['plan']}: {f['detail']}" for f in v["failed"]]
    lines.append(("promoted: " if v["promoted"] else "held: the live key stays ") + str(v["now_live"]))
    if (v.get("redeployed") or {}).get("repositories"):
        lines.append(f"Triton follows it: {len(v['redeployed']['repositories'])} repositories written again")
    return "\n".join(lines)


def add_parser(subparsers) -> None:
    p = operation_parser(
        subparsers,
        "promote",
        "make a key live through the upgrade gate (no KEY: the key this host/config builds)",
        "python -m engine_factory promote rtx-1.7.1.116 --why 'validated on the staging GPU'",
    )
    p.add_argument("key", nargs="?", help="the key to make live (default: the one this host/config builds)")
    p.add_argument("--why", help="recorded in artifacts/live.json (default: the gate's verdict)")
    p.add_argument("--force", action="store_true", help="promote even when the gate holds the candidate")
    p.set_defaults(func=main)


def main(args) -> int:
    cfg = load_config(args)
    v = promote(args.directory, cfg, args.configfile or (), args.key, args.why, args.force)
    emit(v, render, args.json)
    return 0 if v["promoted"] else 1
