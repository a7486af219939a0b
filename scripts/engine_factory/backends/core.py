"""One builder core for TensorRT 10.x, 11.x and TensorRT-RTX: they share the Python API; the few differences are
named here (strong typing flag, RTX AOT targets, full-TensorRT compatibility options).

The core takes the imported module (`trt`) as an argument, so CI runs the full-TensorRT path with `tensorrt_rtx`
passed in place of `tensorrt` wherever the APIs coincide.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from ..atomic import atomic_path, write_bytes
from ..errors import FactoryError
from ..outcomes import Outcome
from . import rtx, tensorrt
from .header import check_plan_header
from .registry import default_strongly_typed_flag, get_logger, spec_of

PROGRESS_MAX_DEPTH = 3  # deeper build phases repeat per subgraph/layer: too chatty for the log


def _progress_monitor(trt, log, model):
    """Log build phases (TensorRT calls these from its build threads); step_complete returning False would cancel."""

    class _Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.depth, self.started = {}, {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            depth = self.depth[phase_name] = self.depth.get(parent_phase, -1) + 1
            self.started[phase_name] = time.monotonic()
            if depth <= PROGRESS_MAX_DEPTH:
                log(f"[build {model}] {'  ' * depth}{phase_name}: started ({num_steps} steps)")

        def step_complete(self, phase_name, step):
            return True

        def phase_finish(self, phase_name):
            if self.depth.get(phase_name, 0) <= PROGRESS_MAX_DEPTH:
                took = time.monotonic() - self.started.get(phase_name, time.monotonic())
                log(f"[build {model}] {'  ' * self.depth.get(phase_name, 0)}{phase_name}: done in {took:.1f} s")

    return _Monitor()


# ---------------------------------------------------------------------------------------------- timing cache
def _load_timing_cache(config, path: str | None) -> dict:
    """Attach a timing cache to `config`, seeded from `path` when that file exists. Returns facts about it."""
    facts = {"path": path, "loaded": False, "entries_before": 0, "notes": []}
    data = Path(path).read_bytes() if path and Path(path).exists() else b""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache = config.create_timing_cache(data)
        if cache is None or not config.set_timing_cache(cache, False):  # unreadable or from another device/version
            facts["notes"].append(f"timing cache {path} not usable here; starting an empty one")
            cache = config.create_timing_cache(b"")
            config.set_timing_cache(cache, False)
        else:
            facts["loaded"] = bool(data)
        facts["entries_before"] = _entries(cache)
    # TensorRT-RTX (measured, 1.7): "Timing cache operations are no-ops in TensorRT-RTX" -> recorded, not fatal.
    facts["notes"] += sorted({str(w.message) for w in caught})
    return facts


def _entries(cache) -> int | None:
    """A timing cache's entry count; None where the module cannot tell (queryKeys arrives in TensorRT 10)."""
    return len(cache.queryKeys()) if hasattr(cache, "queryKeys") else None


def _save_timing_cache(config, path: str, facts: dict) -> None:
    """Merge this build's cache with the file's current content and write it back, under an exclusive lock, so
    concurrent builds of one key share one cache file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # RTX's no-op deprecation, already recorded on load
        ours = config.get_timing_cache()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        from filelock import FileLock

        with FileLock(f"{path}.lock"):
            if Path(path).exists():
                theirs = config.create_timing_cache(Path(path).read_bytes())
                if theirs is not None:
                    ours.combine(theirs, True)  # ignore_mismatch: entries of another device are skipped
            write_bytes(path, bytes(ours.serialize()))
        facts["entries_after"] = _entries(ours)
        facts["written"] = True


# ----------------------------------------------------------------------------------------------------- build
def _write_hashed(path, data) -> str:
    """Write `data` (IHostMemory has the buffer protocol: no copy of a large plan) and return its sha256, hashed on a
    second thread while this one writes; both release the GIL. Measured on a 20 MB plan written to a new file: write
    4 ms, sha256 15 ms, both 15 ms (through a ThreadPoolExecutor they ran mostly one after the other: 24-27 ms)."""
    view, digest, failed = memoryview(data), hashlib.sha256(), []

    def update():
        try:
            digest.update(view)
        except BaseException as e:  # e.g. MemoryError: never return the digest of part of the plan
            failed.append(e)

    hashing = threading.Thread(target=update)
    hashing.start()
    try:
        with open(path, "wb") as f:
            f.write(view)  # a write error (disk full) raises here
    finally:
        hashing.join()
    if failed:
        raise failed[0]
    return digest.hexdigest()


def _refuse_bad_header(trt, path, compute_capability, model: str) -> None:
    """The written plan must pass the header check `validate` applies (magic, version, size, targets)."""
    check = check_plan_header(
        path, backend=trt.__name__.split(".")[0], version=trt.__version__, compute_capability=compute_capability
    )
    if check["status"] != Outcome.PASS:
        raise FactoryError(
            f"the plan {trt.__name__} wrote fails its header check ({check['reason']}); not kept", model=model
        )


def _onnx_nodes(onnx_path) -> dict[str, str]:
    """{node name: op type} of an ONNX file (without its external data), for naming the node of an error."""
    import onnx

    try:
        graph = onnx.load(str(onnx_path), load_external_data=False).graph
    except Exception:
        return {}
    return {n.name: n.op_type for n in graph.node if n.name}


def locate(messages: list[str], onnx_path) -> str | None:
    """ "node 'name' (Op)" of the ONNX node a TensorRT message names (layer names are node names, sometimes with
    a suffix), the longest name that occurs; None when none does."""
    nodes = _onnx_nodes(onnx_path)
    text = "\n".join(messages)
    found = [name for name in nodes if len(name) > 1 and name in text]
    if not found:
        return None
    name = max(found, key=len)
    return f"node '{name}' ({nodes[name]})"


# (what TensorRT says, the cause in words, the next step): known messages a user cannot read on their own
KNOWN_CAUSES = (
    (
        ("Input dimensions with this name", "dimension names"),
        "two dims of the ONNX inputs share a name (e.g. both '?'), so TensorRT takes them as one dimension",
        "re-run the export/import stage: it gives unnamed and '?' dims distinct names (facts.dims_named); or name "
        "each dynamic dim in models.<model>.inputs.<input>.shape",
    ),
    (
        ("IIfConditional", "If_OutputLayer", "condition must be"),
        "an If node whose branches differ (rank or shape) and whose condition the input shapes do not fix",
        "export the model with the branch taken at the configured shapes (trace it), or make both branches return "
        "the same rank",
    ),
    (
        ("Assertion", "assertion", "Internal Error", "internal error"),
        "an internal assertion inside the TensorRT library: a limit of the builder for this layer, not a fault of "
        "the config",
        "try another precision or simplifier for this model (the other precisions are built independently), and "
        "report the node and the TensorRT version to NVIDIA if it persists",
    ),
)


def diagnose(messages: list[str]) -> str:
    """'; cause: ...; next: ...' for a TensorRT message of a known kind, '' otherwise (it speaks for itself)."""
    text = "\n".join(messages)
    for needles, why, step in KNOWN_CAUSES:
        if any(n in text for n in needles):
            return f"; cause: {why}; next: {step}"
    return ""


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _parse_onnx(trt, builder, logger, onnx_path, model, strongly_typed_flag, flags: int = 0):
    if not Path(onnx_path).is_file():
        raise FactoryError("ONNX file not found", model=model, path=str(onnx_path))
    if strongly_typed_flag:  # TensorRT 10.x; 11.x and RTX are strongly typed anyway (RTX accepts the flag)
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        problems, first_node = [], None
        for i in range(parser.num_errors):
            e = parser.get_error(i)
            # node_name / node_operator arrive in TensorRT 10: 8.x names the node by its index only
            name, op = (getattr(e, m)() if hasattr(e, m) else "" for m in ("node_name", "node_operator"))
            where = f"node {e.node()} '{name}' ({op}): " if e.node() >= 0 else ""
            if where and first_node is None:  # an unnamed node by its index
                first_node = (f"node '{name}'" if name else f"node #{e.node()}") + (f" ({op})" if op else "")
            problems.append(f"{where}{_one_line(e.desc())} [{e.code().name}]")
        problems = problems or [_one_line(m) for m in logger.errors()] or ["no message"]
        first_node = first_node or locate(problems, onnx_path)
        # first line: model, node and op, TensorRT's first message; then every message
        raise FactoryError(
            f"{trt.__name__} {trt.__version__} cannot parse the ONNX model"
            f"{' at ' + first_node if first_node else ''}: {_one_line(problems[0])}{diagnose(problems)}"
            + ("".join(f"\n  {p}" for p in problems) if len(problems) > 1 else ""),
            model=model,
            path=str(onnx_path),
        )
    if network.num_outputs == 0:  # protobuf parses some junk bytes as an empty model (measured)
        raise FactoryError(
            f"{trt.__name__} parsed no outputs from this file: not an ONNX model, or an empty graph",
            model=model,
            path=str(onnx_path),
        )
    return network, parser  # the parser must outlive the build (it owns the weights)


def _add_profile(builder, network, config, logger, input_profiles: dict, model: str, onnx_path) -> dict:
    """One optimization profile from {input: {"min", "opt", "max"[, "values"]}}; returns the network's input
    shapes. A shape-tensor input (its values are a shape, e.g. Expand's target) takes its `values` (min/opt/max)
    through set_shape_input: without them the build would bound its dims, not its values, and fail."""
    inputs = {network.get_input(i).name: network.get_input(i) for i in range(network.num_inputs)}

    def err(msg, name=None, sub=""):
        key = f"models.{model}.inputs" + (f".{name}{sub}" if name else "")
        return FactoryError(msg, model=model, path=str(onnx_path), key=key)

    unknown = sorted(set(input_profiles) - set(inputs))
    if unknown:
        raise err(f"shape profile names input(s) {unknown} that the ONNX model lacks (its inputs: {list(inputs)})")
    profile = builder.create_optimization_profile()
    for name, tensor in inputs.items():
        shape = list(tensor.shape)
        if tensor.is_shape_tensor:
            values = (input_profiles.get(name) or {}).get("values")
            if not values:
                raise err(
                    f"input '{name}' is a shape tensor (its values are a shape{_consumers(onnx_path, name)}): "
                    "give its values for the profile as `values: {min: [...], opt: [...], max: [...]}`",
                    name,
                    ".values",
                )
            if any(d < 0 for d in shape):
                raise err(f"shape-tensor input '{name}' must have a static shape, the model has {shape}", name)
            try:
                profile.set_shape_input(name, *([int(v) for v in values[k]] for k in ("min", "opt", "max")))
            except Exception as e:  # wrong count of values: TensorRT's own words
                raise err(f"input '{name}': the builder refused its values {values}: {_one_line(e)}", name, ".values")
            continue
        if name not in input_profiles:
            if any(d < 0 for d in shape):
                raise err(f"input '{name}' has dynamic shape {shape} but no min/opt/max shape profile", name)
            continue
        spec = input_profiles[name]
        missing = [k for k in ("min", "opt", "max") if k not in spec]
        if missing:
            raise err(f"shape profile of input '{name}' lacks {missing}", name)
        mn, opt, mx = ([int(d) for d in spec[k]] for k in ("min", "opt", "max"))
        for k, dims in (("min", mn), ("opt", opt), ("max", mx)):
            if len(dims) != len(shape):
                raise err(
                    f"input '{name}': {k} {dims} has rank {len(dims)}, the model's shape {shape} has rank {len(shape)}",
                    name,
                    f".{k}",
                )
        for i, d in enumerate(shape):
            if d >= 0 and not mn[i] == opt[i] == mx[i] == d:
                raise err(
                    f"input '{name}': dimension {i} is fixed at {d} in the model, profile gives "
                    f"min/opt/max {mn[i]}/{opt[i]}/{mx[i]}",
                    name,
                )
            if not 0 < mn[i] <= opt[i] <= mx[i]:
                raise err(
                    f"input '{name}': dimension {i} needs 0 < min <= opt <= max, got {mn[i]}/{opt[i]}/{mx[i]}", name
                )
        profile.set_shape(name, mn, opt, mx)
    if input_profiles and config.add_optimization_profile(profile) < 0:
        raise err(f"the builder rejected the shape profile: {'; '.join(logger.errors()) or 'no message'}")
    return {name: list(t.shape) for name, t in inputs.items()}


def _consumers(onnx_path, name: str) -> str:
    """ ", read by Expand 'node'" for an input: where a shape tensor's values go."""
    import onnx

    try:
        graph = onnx.load(str(onnx_path), load_external_data=False).graph
    except Exception:
        return ""
    users = [f"{n.op_type} '{n.name}'" if n.name else n.op_type for n in graph.node if name in n.input]
    return f", read by {', '.join(users[:3])}" if users else ""


def build_plan(
    trt,
    onnx_path,
    plan_path,
    *,
    model: str,
    input_profiles: dict,
    workspace_mb: int = 1024,
    optimization_level: int = 3,
    tf32: bool = False,
    compute_capability: str | None = None,
    strongly_typed_flag: bool | None = None,
    timing_cache_path: str | None = None,
    hardware_compatibility_level: str | None = None,
    version_compatible: bool = False,
    precision: str | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Build one plan from an ONNX file with the backend module `trt` and write it atomically to `plan_path`.

    compute_capability: TensorRT-RTX AOT target ("8.6"); None for full TensorRT (the local GPU). With RTX, None lets
    the builder pick its own set of targets. strongly_typed_flag None: decided from the module's version.
    precision: what a weakly typed module (TensorRT 8.x, backends/tensorrt8.py) sets builder flags for; strongly
    typed builds take it from the ONNX and ignore it.
    Returns facts for provenance; raises FactoryError (naming model and file) on any failure, leaving no plan.
    """
    spec = spec_of(trt.__name__.split(".")[0], trt.__version__)
    with (
        tempfile.TemporaryDirectory(prefix="parser-onnx-")
        if hasattr(spec, "onnx_for_parser")
        else contextlib.nullcontext() as work
    ):
        return _build(
            trt,
            spec,
            work,
            onnx_path,
            plan_path,
            model=model,
            input_profiles=input_profiles,
            workspace_mb=workspace_mb,
            optimization_level=optimization_level,
            tf32=tf32,
            compute_capability=compute_capability,
            strongly_typed_flag=strongly_typed_flag,
            timing_cache_path=timing_cache_path,
            hardware_compatibility_level=hardware_compatibility_level,
            version_compatible=version_compatible,
            precision=precision,
            log=log,
        )


def _build(
    trt,
    spec,
    work,
    onnx_path,
    plan_path,
    *,
    model,
    input_profiles,
    workspace_mb,
    optimization_level,
    tf32,
    compute_capability,
    strongly_typed_flag,
    timing_cache_path,
    hardware_compatibility_level,
    version_compatible,
    precision,
    log,
) -> dict:
    weak = {}  # the build's own facts: TF32; for weakly typed modules (TensorRT 8.x) the ONNX parsed, flags, tactics
    if hasattr(spec, "onnx_for_parser"):
        onnx_path, weak["onnx"] = spec.onnx_for_parser(onnx_path, work, model)
    if strongly_typed_flag is None:
        strongly_typed_flag = default_strongly_typed_flag(trt)
    logger = get_logger(trt, echo=log)
    builder = trt.Builder(logger)
    flags = spec.network_flags(trt) if hasattr(spec, "network_flags") else 0
    network, _parser = _parse_onnx(trt, builder, logger, onnx_path, model, strongly_typed_flag, flags)
    config = builder.create_builder_config()
    shapes = _add_profile(builder, network, config, logger, input_profiles, model, onnx_path)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if hasattr(config, "builder_optimization_level"):  # TensorRT 8.6+
        config.builder_optimization_level = int(optimization_level)
    else:
        weak["optimization_level_unsupported"] = f"{trt.__name__} {trt.__version__} has no builder optimization level"
    if hasattr(trt.BuilderFlag, "TF32"):  # on by default in TensorRT: fp32 conv/matmul would run in TF32
        (config.set_flag if tf32 else config.clear_flag)(trt.BuilderFlag.TF32)
        weak["tf32"] = bool(tf32)
    if hasattr(spec, "set_precision"):  # weakly typed: precision by builder flags over the precision's ONNX variant
        weak["weakly_typed"] = True
        weak["precision_flags"] = spec.set_precision(trt, config, precision, model)
        weak.update(spec.set_tactic_sources(trt, config, model))
    if compute_capability is not None:  # TensorRT-RTX: an AOT target; full TensorRT builds for the local GPU
        rtx.set_aot_target(trt, config, str(compute_capability), model)
    compat = tensorrt.set_compatibility(trt, config, logger, hardware_compatibility_level, version_compatible, model)
    if hasattr(trt, "IProgressMonitor"):  # TensorRT 10+
        monitor = _progress_monitor(trt, log, model)  # keep a reference for the whole build
        config.progress_monitor = monitor
    cache_facts = _load_timing_cache(config, timing_cache_path) if timing_cache_path else None

    target = f"sm{compute_capability.replace('.', '')}" if compute_capability else "the local GPU"
    log(f"[build {model}] {trt.__name__} {trt.__version__}: {onnx_path} -> {plan_path} for {target}")
    start = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.monotonic() - start
    if serialized is None:
        errors = [_one_line(m) for m in logger.errors()] or ["(no error logged)"]
        where = locate(errors, onnx_path)
        raise FactoryError(
            f"{trt.__name__} {trt.__version__} failed to build a plan for {target}"
            f"{' at ' + where if where else ''}: {errors[0]}{diagnose(errors)}"
            + ("".join(f"\n  {m}" for m in errors) if len(errors) > 1 else ""),
            model=model,
            path=str(onnx_path),
        )
    if timing_cache_path:
        _save_timing_cache(config, timing_cache_path, cache_facts)
    with atomic_path(plan_path) as tmp:
        plan_sha256 = _write_hashed(tmp, serialized)
        _refuse_bad_header(trt, tmp, compute_capability, model)  # before the rename: no damaged plan is ever left
    log(f"[build {model}] done in {seconds:.1f} s, {serialized.nbytes} bytes")
    return {
        "backend": trt.__name__,
        "version": trt.__version__,
        "build_seconds": round(seconds, 3),
        "plan_sha256": plan_sha256,
        "plan_bytes": int(serialized.nbytes),
        "targets": [str(compute_capability)] if compute_capability else None,
        "input_shapes": shapes,
        "input_profiles": input_profiles,
        "workspace_mb": int(workspace_mb),
        "optimization_level": int(optimization_level),
        "strongly_typed_flag": bool(strongly_typed_flag),
        **compat,
        **weak,
        "timing_cache": cache_facts,
        "warnings": [m for s, m in logger.records if s == "WARNING"][:20],
    }
