"""The plan's provenance as an in-toto Statement v1 with a SLSA Provenance v1 predicate: `<plan>.intoto.json`.

Written by the build stage from the plan's provenance sidecar (the sidecar stays the complete record; this is the
standard view of it that supply-chain tools read):
- subject: the plan's path and sha256;
- buildDefinition.externalParameters: the build settings from the config (model, key, compute capability, precision,
  shape profiles, builder options); internalParameters: tool versions and host facts (GPU, driver, CUDA);
- resolvedDependencies: every input along the provenance chain back to the checkpoint (path, sha256, the stage that
  consumed it), and the workflow's git commit;
- runDetails: builder id and version, start/finish times, and the timing cache as a byproduct (with whether the build
  loaded one).
The statement is not signed (no keys here): wrap it in a DSSE envelope with your own signer if you need one.
Spec: https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md, https://slsa.dev/spec/v1.0/provenance
"""

from __future__ import annotations

import datetime
import json
import os

from . import atomic, paths
from .atomic import read_json

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:engine-factory:buildtype:tensorrt-plan:v1"
BUILDER_ID = "urn:engine-factory:builder:snakemake"
MAX_CHAIN = 32  # provenance records followed back from the plan (a chain is ~6 long)


def resolved_dependencies(record: dict) -> list[dict]:
    """ResourceDescriptors of the record's inputs and, through their sidecars, of every input up the chain."""
    deps, seen, queue = [], set(), [(record, 0)]
    while queue and len(seen) < 10 * MAX_CHAIN:
        rec, depth = queue.pop(0)
        for entry in rec.get("inputs", []):
            ident = (entry["path"], entry["sha256"])
            if ident in seen:
                continue
            seen.add(ident)
            annotations = {
                "label": entry["label"],
                "consumedBy": rec.get("stage"),
                "depth": depth,
                "size": entry.get("size"),
            }
            parent = read_json(entry["provenance"]) if entry.get("provenance") else None
            if parent:
                annotations["producedBy"] = parent.get("stage")
                if depth + 1 < MAX_CHAIN:
                    queue.append((parent, depth + 1))
            deps.append({"name": entry["path"], "digest": {"sha256": entry["sha256"]}, "annotations": annotations})
    commit = (record.get("workflow") or {}).get("commit")
    if commit:
        deps.append(
            {
                "name": "workflow",
                "digest": {"gitCommit": commit},
                "annotations": {"dirty": bool(record["workflow"].get("dirty"))},
            }
        )
    return deps


def statement(record: dict) -> dict:
    """The in-toto Statement of one plan from its provenance sidecar record."""
    facts = record.get("facts") or {}
    host = record.get("host") or {}
    params = record.get("params") or {}
    tools = record.get("tools") or {}
    finished = record.get("created")
    started = finished
    if finished and facts.get("build_seconds") is not None:
        t = datetime.datetime.fromisoformat(finished) - datetime.timedelta(seconds=float(facts["build_seconds"]))
        started = t.isoformat(timespec="seconds")
    byproducts = []
    cache = facts.get("timing_cache")
    if cache and cache.get("path"):
        entry = {
            "name": cache["path"],
            "annotations": {k: cache.get(k) for k in ("loaded", "entries_before", "entries_after", "notes")},
        }
        if os.path.isfile(cache["path"]):
            from .provenance import sha256

            entry["digest"] = {"sha256": sha256(cache["path"], cached=False)}
        else:  # a ResourceDescriptor needs a uri, digest or content
            entry["uri"] = f"file:{cache['path']}"
        byproducts.append(entry)
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": record["artifact"]["path"], "digest": {"sha256": record["artifact"]["sha256"]}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": params,
                "internalParameters": {
                    "stage": record.get("stage"),
                    "tools": tools,
                    "host": {
                        k: host.get(k)
                        for k in ("hostname", "platform", "driver_version", "cuda_driver_version", "gpus")
                        if k in host
                    },
                    "backend": {
                        k: facts.get(k)
                        for k in (
                            "backend",
                            "version",
                            "targets",
                            "strongly_typed_flag",
                            "hardware_compatibility_level",
                            "version_compatible",
                        )
                        if k in facts
                    },
                },
                "resolvedDependencies": resolved_dependencies(record),
            },
            "runDetails": {
                "builder": {
                    "id": BUILDER_ID,
                    "version": {k: v for k, v in tools.items() if k in ("snakemake", "tensorrt-rtx-cu13", "tensorrt")},
                },
                "metadata": {
                    "invocationId": f"{host.get('hostname')}:{record['artifact']['path']}:{finished}",
                    "startedOn": started,
                    "finishedOn": finished,
                },
                "byproducts": byproducts,
            },
        },
    }


def write_statement(artifact: str, out: str | None = None) -> str:
    """Write `<artifact>.intoto.json` (or `out`) from the artifact's provenance sidecar; returns its path."""
    with open(paths.provenance(str(artifact))) as f:
        record = json.load(f)
    out = out or paths.intoto(str(artifact))
    atomic.write_json(out, statement(record))
    return out
