"""The load-time check a serving host runs before Triton starts: `python -m engine_factory ready <model dir> [--json]`.

For each plan a Triton model directory names (config.pbtxt's cc_model_filenames, parsed with Triton's schema) it reads
the plan's header (scripts/engine_factory/backends/header.py: backend by magic, version, RTX targets) and compares it
with this host: the local GPUs' compute capabilities (scripts/engine_factory/host.py; FACTORY_HOST_FACTS overrides them,
as for every command) and the runtime that will deserialize it (the installed backend module's version, or
`--runtime-version`, e.g. the TensorRT inside the Triton container). Each plan gets one answer:

    ready          a local GPU has its compute capability and the runtime's version is the plan's
    needs rebuild  the runtime is another version (the key to build is named), or the header is damaged
    cannot run here  no CUDA GPU; no runtime of the plan's backend
    not for this host  no local GPU of its compute capability (Triton picks another plan here)

and each local GPU the plan Triton would pick for it (or why there is none: a compute capability without a plan
needs a rebuild for it where the backend can target it). The verdict is the worst answer over the local GPUs, and
"cannot run here" whatever the plans say when the plans' backend is not one Triton loads (the backend module says,
e.g. TensorRT-RTX). Exit status: 0 ready, 2 needs rebuild, 3 cannot run here, 4 refused, 1 the directory is no
repository.

With trusted keys (`trust`: scripts/engine_factory/signing.py), the model directory's model.sig is checked FIRST: the
signature, its key (trusted, not revoked) and every file's sha256, plans included. Anything but `signed` (unsigned,
bad signature, unknown or revoked key, tampered) refuses the whole directory before a plan's header is even read, so
neither this check nor Triton after it interprets bytes nobody vouched for.
"""

from __future__ import annotations

from pathlib import Path

from .. import paths, signing
from ..errors import FactoryError

READY, REBUILD, CANNOT, OTHER_GPU = "ready", "needs rebuild", "cannot run here", "not for this host"
REFUSED = "refused"  # trusted keys were given and the directory's signature does not hold
_RANK = {READY: 0, REBUILD: 1, CANNOT: 2, REFUSED: 3}


def _version_dir(model_dir: Path) -> Path:
    """The version Triton serves by default (the latest: the highest number)."""
    versions = [d for d in model_dir.iterdir() if d.is_dir() and d.name.isdigit()] if model_dir.is_dir() else []
    if not versions:
        raise FactoryError("no version directory (1/, 2/, ...) in this Triton model directory", path=str(model_dir))
    return max(versions, key=lambda d: int(d.name))


def _same_version(header_version: str, runtime_version: str) -> bool:
    """The header holds as many version parts as the backend writes (full TensorRT 3, RTX 4)."""
    found, want = header_version.split("."), runtime_version.split(".")
    return found == want[: len(found)]


def check_plan(plan: Path, cc: str, *, host_ccs: set, runtimes: dict, key_suffix: str = "") -> dict:
    """One plan's answer for this host."""
    from ..backends.header import read_header
    from ..backends.registry import spec_of

    h = read_header(plan)
    out = {
        "compute_capability": cc,
        "file": str(plan),
        "backend": h["backend"],
        "version": h["version"],
        "header_targets": h["targets"],
    }
    if h["problem"] or h["backend"] is None:
        return {**out, "answer": REBUILD, "reason": f"the plan's header is damaged or unknown ({h['problem']})"}
    spec = spec_of(h["backend"])
    runtime = runtimes.get(spec.MODULE)
    if h["targets"] is not None and cc not in h["targets"]:
        return {
            **out,
            "answer": REBUILD,
            "rebuild_key": f"{spec.SHORT}-{runtime or h['version']}{key_suffix}/sm{paths.cc_tag(cc)}",
            "reason": f"filed for {cc} but its header targets {h['targets']}",
        }
    if not host_ccs:
        return {**out, "answer": CANNOT, "reason": "no CUDA GPU here"}
    if cc not in host_ccs:
        return {
            **out,
            "answer": OTHER_GPU,
            "reason": f"no local GPU of compute capability {cc} (this host: {', '.join(sorted(host_ccs))})",
        }
    if not runtime:
        return {
            **out,
            "answer": CANNOT,
            "reason": f"no {spec.MODULE} runtime is installed here to load a {spec.SHORT}-{h['version']} plan",
        }
    if not _same_version(h["version"], runtime):
        return {
            **out,
            "answer": REBUILD,
            "rebuild_key": f"{spec.SHORT}-{runtime}{key_suffix}/sm{paths.cc_tag(cc)}",
            "reason": f"built by {spec.MODULE} {h['version']}, the runtime here is {runtime}: rebuild for key "
            f"{spec.SHORT}-{runtime}{key_suffix}",
        }
    return {
        **out,
        "answer": READY,
        "reason": f"{spec.SHORT}-{h['version']} plan for {cc}, runtime {spec.MODULE} "
        f"{runtime}, GPU of compute capability {cc} present",
    }


def check_repository(
    model_dir, *, host: dict | None = None, runtime_version: str | None = None, trust: signing.Trust | None = None
) -> dict:
    """The readiness of one Triton model directory on this host (see the module doc)."""
    from ..backends.registry import spec_of
    from ..host import probe_host
    from .triton import read_config

    model_dir = Path(model_dir)
    config = read_config(model_dir / "config.pbtxt")
    version = _version_dir(model_dir)
    host = probe_host() if host is None else host
    host_ccs = {g["compute_capability"] for g in host.get("gpus") or []}
    runtimes = {m: v for m, v in (host.get("backends") or {}).items() if v}
    if trust is not None:
        sig = signing.verify_model_dir(model_dir, trust)
        if sig["state"] != signing.SIGNED:
            return _refused(model_dir, config, version, host, host_ccs, runtimes, sig)
    else:
        sig = {"state": "not checked", "detail": "no trusted key given (--trusted-key)"}
    suffix = _key_suffix(model_dir)

    def check_all():
        return [
            check_plan(version / name, cc, host_ccs=host_ccs, runtimes=runtimes, key_suffix=suffix)
            for cc, name in sorted(config.cc_model_filenames.items())
        ]

    plans = check_all()
    if runtime_version:  # the serving runtime (e.g. Triton's TensorRT), for every backend the plans name
        runtimes = {spec_of(p["backend"]).MODULE: runtime_version for p in plans if p["backend"]}
        plans = check_all()
    backends = sorted({p["backend"] for p in plans if p["backend"]})
    precision = _recorded(model_dir).get("precision") or "fp32"  # what a missing compute capability is built in
    gpus = []
    for cc in sorted(host_ccs):
        mine = next((p for p in plans if p["compute_capability"] == cc), None)
        default = version / config.default_model_filename if config.default_model_filename else None
        if mine is None and default and default.is_file():  # what Triton loads for a GPU without its own plan
            mine = check_plan(default, cc, host_ccs=host_ccs, runtimes=runtimes, key_suffix=suffix)
        if mine:
            gpus.append(
                {
                    "compute_capability": cc,
                    "plan": mine["file"],
                    "answer": mine["answer"],
                    "reason": mine["reason"],
                    **({"rebuild_key": mine["rebuild_key"]} if "rebuild_key" in mine else {}),
                }
            )
            continue
        why_not = {b: spec_of(b).precision_support(cc, precision) for b in backends}
        can_target = [b for b, why in why_not.items() if why is None]
        if can_target:
            spec = spec_of(can_target[0])
            key = f"{spec.SHORT}-{runtimes.get(spec.MODULE) or '?'}{suffix}/sm{paths.cc_tag(cc)}"
            gpus.append(
                {
                    "compute_capability": cc,
                    "plan": None,
                    "answer": REBUILD,
                    "rebuild_key": key,
                    "reason": f"no plan for compute capability {cc}: build key {key}",
                }
            )
        else:
            gpus.append(
                {
                    "compute_capability": cc,
                    "plan": None,
                    "answer": CANNOT,
                    "reason": f"no plan for compute capability {cc}, and none can be built for it: "
                    + ("; ".join(why_not.values()) or "no readable plan says which backend"),
                }
            )
    unloadable = sorted({spec_of(b).TRITON_UNLOADABLE for b in backends if spec_of(b).TRITON_UNLOADABLE})
    if not host_ccs:
        verdict, reason = CANNOT, "cannot run here: no CUDA GPU" + _probe_note(host)
    else:
        worst = max(gpus, key=lambda g: _RANK[g["answer"]])
        verdict, reason = worst["answer"], f"{worst['answer']}: GPU {worst['compute_capability']}: {worst['reason']}"
        if unloadable:
            verdict, reason = CANNOT, f"cannot run here: {'; '.join(unloadable)}"
    return {
        "repository": str(model_dir),
        "name": config.name,
        "platform": config.platform,
        "version": version.name,
        "host": {"gpus": sorted(host_ccs), "runtimes": runtimes, "hostname": host.get("hostname")},
        "plans": plans,
        "gpus": gpus,
        "triton_loadable": not unloadable,
        "triton_note": unloadable,
        "signature": sig,
        "verdict": verdict,
        "reason": reason,
    }


def _refused(model_dir: Path, config, version: Path, host: dict, host_ccs: set, runtimes: dict, sig: dict) -> dict:
    """The report of a directory whose signature does not hold: every plan refused, no header read."""
    reason = f"refused: {model_dir / signing.MODEL_SIGNATURE}: {sig['state']}: {sig['detail']}"
    return {
        "repository": str(model_dir),
        "name": config.name,
        "platform": config.platform,
        "version": version.name,
        "host": {"gpus": sorted(host_ccs), "runtimes": runtimes, "hostname": host.get("hostname")},
        "plans": [
            {"compute_capability": cc, "file": str(version / name), "answer": REFUSED, "reason": sig["state"]}
            for cc, name in sorted(config.cc_model_filenames.items())
        ],
        "gpus": [],
        "triton_loadable": False,
        "triton_note": [],
        "signature": sig,
        "verdict": REFUSED,
        "reason": reason,
    }


def _recorded(model_dir: Path) -> dict:
    """The deploy settings in the repository's provenance (the factory's repositories have them), else {}."""
    from ..atomic import read_json

    return (read_json(model_dir / paths.provenance("config.pbtxt")) or {}).get("params") or {}


def _key_suffix(model_dir: Path) -> str:
    """The build options' part of the plans' key (`-ampere_plus`, `-vc`): not in a header, kept in a rebuild key."""
    key = _recorded(model_dir).get("key") or ""
    return "".join(f"-{part}" for part in key.split("-")[2:])


def _probe_note(host: dict) -> str:
    errors = host.get("probe_errors") or []
    return f" ({errors[0]})" if errors else ""


def worst(reports: list[dict]) -> str:
    """The verdict over several repositories: the worst of theirs."""
    return max((r["verdict"] for r in reports), key=lambda v: _RANK[v])
