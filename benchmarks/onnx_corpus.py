"""The factory's chain on ONNX files from outside: the model tests shipped inside installed Python packages.

    .venv/bin/python benchmarks/onnx_corpus.py [--timeout 300] [--jobs 1] [--limit N] [--match SUBSTRING]

Collects every ONNX file shipped as a model test in the installed packages (onnx's backend test data: `simple`,
`pytorch-converted`, `pytorch-operator`, `light`, and `node`/`real` where the wheel ships them; onnxruntime's
`datasets`), and runs each, in its own process with a timeout, through the factory's own stage runners
(engine_factory.stages, with the inputs and settings engine_factory.factory resolves, as the workflow's jobs get
them) on a zoo written as a user would: `framework: onnx`, the inputs from the file's graph (dims and dtypes), the
test's own input and output tensors (`test_data_set_0`) as `samples` with reference outputs, `values` for small int
inputs (shape tensors), `cast_float64` where the file takes float64, `precisions: [fp32]`:

    import (export) -> simplify -> golden -> fp32 variant -> onnx parity vs golden -> build for every default
    TensorRT-RTX target

Writes benchmarks/results/onnx_corpus.json (every file: package, version, file, opset, IR, outcome, error line,
facts) and onnx_corpus.md (the table and the totals). Outcomes: `pass` (built for every target and onnx parity
passed), `built` (built, parity failed or not run), `failed:<stage>` (a FactoryError: its first line), `crash`
(any other exception: a defect), `timeout`. A benchmark, not a test: not run in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
ONNX_SUITES = ("node", "real", "simple", "pytorch-converted", "pytorch-operator", "light")
DTYPES = {1: "float32", 10: "float16", 11: "float64", 6: "int32", 7: "int64", 9: "bool"}
SHAPE_VALUES_MAX = 8  # int inputs of at most this many values get `values` (shape tensors: Expand, Reshape, ...)


# --------------------------------------------------------------------------------------------------- corpus
def collect() -> list[dict]:
    """Every model-test ONNX file of the installed packages: {package, version, file, data (its test data)}."""
    import onnx

    found = []
    data = Path(onnx.__file__).parent / "backend" / "test" / "data"
    for suite in ONNX_SUITES:
        for model in sorted((data / suite).glob("*/model.onnx")) if suite != "light" else []:
            found.append(
                {
                    "package": "onnx",
                    "version": version("onnx"),
                    "suite": suite,
                    "file": str(model),
                    "data": str(model.parent / "test_data_set_0"),
                }
            )
        if suite == "light":
            for model in sorted((data / suite).glob("*.onnx")):
                found.append(
                    {
                        "package": "onnx",
                        "version": version("onnx"),
                        "suite": suite,
                        "file": str(model),
                        "outputs_pb": str(model.with_name(model.stem + "_output_0.pb")),
                    }
                )
    try:
        import onnxruntime

        for model in sorted((Path(onnxruntime.__file__).parent / "datasets").glob("*.onnx")):
            found.append(
                {"package": "onnxruntime", "version": version("onnxruntime"), "suite": "datasets", "file": str(model)}
            )
    except ImportError:
        pass
    return found


def _read_pb(path):
    import onnx
    from onnx import numpy_helper

    t = onnx.TensorProto()
    t.ParseFromString(Path(path).read_bytes())
    return numpy_helper.to_array(t)


def test_data(entry: dict, proto) -> tuple[dict, dict]:
    """The test's own inputs and reference outputs, named like the graph's (input_0.pb... in graph order)."""
    inits = {i.name for i in proto.graph.initializer}
    in_names = [i.name for i in proto.graph.input if i.name not in inits]
    out_names = [o.name for o in proto.graph.output]
    ins, outs = {}, {}
    d = Path(entry.get("data") or "/nonexistent")
    if d.is_dir():
        for i, name in enumerate(in_names):
            if (d / f"input_{i}.pb").exists():
                ins[name] = _read_pb(d / f"input_{i}.pb")
        for i, name in enumerate(out_names):
            if (d / f"output_{i}.pb").exists():
                outs[name] = _read_pb(d / f"output_{i}.pb")
    if entry.get("outputs_pb") and Path(entry["outputs_pb"]).exists() and len(out_names) == 1:
        outs[out_names[0]] = _read_pb(entry["outputs_pb"])
    return ins, outs


def model_config(proto, ins: dict) -> tuple[dict, str | None]:
    """The `models.<m>` entry a user would write for this file (inputs from its graph and test data), or why the
    file's inputs cannot be described in the config at all."""
    inits = {i.name for i in proto.graph.initializer}
    inputs, cast = {}, False
    for v in proto.graph.input:
        if v.name in inits:
            continue
        tt = v.type.tensor_type if v.type.HasField("tensor_type") else None
        if tt is None:
            return {}, f"input '{v.name}' is not a tensor ({v.type.WhichOneof('value')}): TensorRT takes tensors only"
        dtype = DTYPES.get(tt.elem_type)
        if dtype is None:
            import onnx

            return {}, (
                f"input '{v.name}' has element type {onnx.TensorProto.DataType.Name(tt.elem_type)}, which "
                "TensorRT cannot take"
            )
        cast |= dtype == "float64"
        data = ins.get(v.name)
        shape, concrete = [], []
        for i, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value"):
                shape.append(int(d.dim_value))
                concrete.append(int(d.dim_value))
            else:
                size = int(data.shape[i]) if data is not None and data.ndim > i else 1
                shape.append(f"d{len(inputs)}_{i}")
                concrete.append(size)
        if data is not None and list(data.shape) != concrete:
            concrete = [int(x) for x in data.shape]
            shape = (
                [c if isinstance(s, int) else s for s, c in zip(shape, concrete)]
                if len(shape) == len(concrete)
                else concrete
            )
        spec = {"shape": shape, "dtype": dtype}
        if any(isinstance(s, str) for s in shape):
            spec.update(min=concrete, opt=concrete, max=concrete)
        if (
            dtype in ("int32", "int64")
            and data is not None
            and len(shape) <= 1
            and data.size <= SHAPE_VALUES_MAX
            and all(isinstance(s, int) for s in shape)
        ):
            vals = [int(x) for x in data.ravel()]
            spec["values"] = {"min": vals, "opt": vals, "max": vals}
        inputs[v.name] = spec
    return {"inputs": inputs, **({"cast_float64": True} if cast else {})}, None


# --------------------------------------------------------------------------------------------------- one file
def run_one(entry: dict, work: Path) -> dict:
    """The chain on one file, in this process (the parent gives each file its own process and a timeout)."""
    import numpy as np
    import onnx
    import yaml

    from engine_factory import config as config_mod
    from engine_factory import paths, stages
    from engine_factory.errors import FactoryError
    from engine_factory.factory import resolve

    result = {"outcome": None, "stage": None, "error": None}
    try:
        proto = onnx.load(entry["file"])
    except Exception as e:
        return {**result, "outcome": "failed:load", "error": f"not an ONNX file: {e}"[:300]}
    result["opset"] = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    result["ir"] = proto.ir_version
    ins, outs = test_data(entry, proto)
    name = Path(entry["file"]).parent.name if entry["file"].endswith("/model.onnx") else Path(entry["file"]).stem
    name = name.replace("test_", "", 1)[:100]
    m, problem = model_config(proto, ins)
    if problem:
        return {**result, "outcome": "failed:config", "stage": "config", "error": f"model '{name}': {problem}"}
    src = work / "model.onnx"
    src.write_bytes(Path(entry["file"]).read_bytes())
    m = {"framework": "onnx", "onnx": "model.onnx", "precisions": ["fp32"], **m}
    if ins and outs:
        np.savez(work / "samples.npz", **ins, **outs)
        m["samples"] = "samples.npz"
        result["golden_from"] = "test data (inputs and reference outputs)"
    elif ins:
        np.savez(work / "samples.npz", **ins)
        m["samples"] = "samples.npz"
    (work / "zoo.yaml").write_text(yaml.safe_dump({"backend": "tensorrt_rtx", "models": {name: m}}))
    os.chdir(work)
    stage = "config"
    try:
        cfg = config_mod.load([str(work / "zoo.yaml")])
        f = resolve(cfg)
        w = {"model": name}
        outputs = {
            "export": {"onnx": paths.onnx(name)},
            "simplify": {"onnx": paths.sim_onnx(name)},
            "golden": {"golden": paths.golden(name)},
            # the precision job writes its variant's parity; the parity job checks export and sim
            "precision": {"onnx": paths.precision_onnx(name, "fp32"), "parity": paths.parity(name, "fp32")},
            "parity": {"export": paths.parity(name, "export"), "sim": paths.parity(name, "sim")},
        }
        wildcards = {"export": w, "simplify": w, "golden": w, "precision": {**w, "precision": "fp32"}, "parity": w}
        facts = {}
        for stage in ("export", "simplify", "golden", "precision", "parity"):
            facts[stage] = stages.run(
                stage,
                {
                    "inputs": f.inputs(stage, wildcards[stage]),
                    "outputs": outputs[stage],
                    "params": f.settings(stage, wildcards[stage]),
                },
            )
        parity = json.loads(Path(paths.parity(name, "fp32")).read_text())
        result["parity"] = parity["status"]
        result["parity_reason"] = parity.get("reason", "")[:300]
        result["export"] = {
            k: facts["export"].get(k)
            for k in ("opset_converted", "opset_kept", "ir_normalised", "float64_cast")
            if facts["export"].get(k)
        }
        result["simplifier"] = facts["simplify"].get("simplifier_used")
        result["reference"] = facts["golden"].get("reference")
        if facts["golden"].get("degenerate_outputs"):
            result["degenerate"] = facts["golden"]["degenerate_outputs"]
        stage = "build"
        built = []
        for ts in f.target_sets("build"):  # one job per target set, as the workflow runs them
            jw = {"model": name, "key": f.key, "precision": "fp32", "targets": ts.tag}
            outs = {label: path.format(**jw) for label, path in paths.set_outputs("build", list(ts.ccs)).items()}
            stages.run("build", {"inputs": f.inputs("build", jw), "params": f.settings("build", jw), "outputs": outs})
            built += [job["cc"] for job in f.jobs if paths.cc_tag(job["cc"]) in ts.ccs]
        result["built"] = built
        result["skipped"] = [f"{s['cc']} {s['precision']}: {s['reason']}" for s in f.skipped]
        result["outcome"] = "pass" if parity["status"] == "pass" else "built"
    except FactoryError as e:
        result.update(outcome=f"failed:{stage}", stage=stage, error=str(e).strip().splitlines()[0][:400])
    return result


def child_result(fn) -> int:
    """In the child: fn()'s result dict as the last stdout line (`RESULT {...}`), the stages' own prints held back;
    any exception that escapes is a crash (a defect of ours), reported with its type, first line and traceback."""
    import contextlib
    import io

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            result = fn()
    except BaseException as e:
        import traceback

        result = {
            "outcome": "crash",
            "error": f"{type(e).__name__}: {str(e).strip()[:300]}",
            "traceback": traceback.format_exc()[-1500:],
        }
    print("RESULT " + json.dumps(result, default=str))
    return 0


def run_isolated(cmd: list[str], timeout: int) -> dict:
    """`cmd` (a child that ends with child_result) in its own process and session, the checkout on its PYTHONPATH,
    one thread for OpenMP: its result, or `crash` (no result line: its exit status and last stderr line) or
    `timeout`."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its session: ModelOpt's and the builder's children too
        proc.communicate()
        return {"outcome": "timeout", "error": f"no result within {timeout} s"}
    line = next((x for x in reversed(stdout.splitlines()) if x.startswith("RESULT ")), None)
    if line:
        return json.loads(line[7:])
    return {
        "outcome": "crash",
        "error": f"exit {proc.returncode}: {(stderr.strip().splitlines() or [''])[-1]}"[:300],
    }


def _worker(args) -> int:
    entry = json.loads(args.one)

    def one():
        with tempfile.TemporaryDirectory(prefix="onnx-corpus-") as d:
            return run_one(entry, Path(d))

    return child_result(one)


def run_corpus(entries, timeout: int, jobs: int) -> list[dict]:
    from concurrent.futures import ThreadPoolExecutor

    def one(entry):
        start = time.monotonic()
        result = run_isolated([sys.executable, str(Path(__file__).resolve()), "--one", json.dumps(entry)], timeout)
        rel = entry["file"].split("site-packages/")[-1]
        out = {
            "package": entry["package"],
            "version": entry["version"],
            "suite": entry["suite"],
            "file": rel,
            **result,
            "seconds": round(time.monotonic() - start, 1),
        }
        print(f"{out['outcome']:16} {out['seconds']:6.1f}s {rel}  {out.get('error') or ''}"[:220], flush=True)
        return out

    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(one, entries))


def summarise(results: list[dict]) -> dict:
    n = len(results)
    built = sum(r["outcome"] in ("pass", "built") for r in results)
    passed = sum(r["outcome"] == "pass" for r in results)
    return {
        "files": n,
        "built_all_targets": built,
        "parity_pass": passed,
        "built_pct": round(100 * built / n, 1) if n else 0,
        "parity_pct": round(100 * passed / n, 1) if n else 0,
        "crashes": sum(r["outcome"] == "crash" for r in results),
        "timeouts": sum(r["outcome"] == "timeout" for r in results),
        "outcomes": {o: sum(r["outcome"] == o for r in results) for o in sorted({r["outcome"] for r in results})},
    }


def write_tables(results, summary, meta) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "onnx_corpus.json").write_text(
        json.dumps({"meta": meta, "summary": summary, "results": results}, indent=1, default=str)
    )
    lines = [
        "# ONNX corpus through the factory's chain",
        "",
        f"Run {meta['date']} on {meta['machine']} ({meta['cpus']} CPUs, no GPU), `benchmarks/onnx_corpus.py`; "
        f"chain: import -> simplify -> golden -> fp32 -> onnx parity -> TensorRT-RTX "
        f"{meta['packages'].get('tensorrt-rtx-cu13')} builds for {', '.join(meta['targets'])}.",
        "",
        "Packages: " + ", ".join(f"{k} {v}" for k, v in meta["packages"].items()),
        "",
        f"**{summary['files']} files: {summary['built_all_targets']} built for every target "
        f"({summary['built_pct']} %), {summary['parity_pass']} pass onnx parity ({summary['parity_pct']} %), "
        f"{summary['crashes']} crashes, {summary['timeouts']} timeouts.** Outcomes: "
        + ", ".join(f"{k} {v}" for k, v in summary["outcomes"].items()),
        "",
        "| package | version | file | opset | IR | outcome | reference | note / error |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        note = r.get("error") or ""
        if not note and r.get("parity") != "pass":
            note = f"parity {r.get('parity')}: {r.get('parity_reason', '')}"
        extra = [k for k in ("opset_kept", "ir_normalised", "float64_cast") if k in (r.get("export") or {})]
        if r.get("degenerate"):
            extra.append("degenerate golden")
        if extra:
            note = (note + " " if note else "") + f"[{', '.join(extra)}]"
        note = note.replace("|", "\\|").replace("\n", " ")[:260]
        lines.append(
            f"| {r['package']} | {r['version']} | {r['file'].split('/data/')[-1]} | {r.get('opset', '')} | "
            f"{r.get('ir', '')} | {r['outcome']} | {r.get('reference') or ''} | {note} |"
        )
    (RESULTS / "onnx_corpus.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timeout", type=int, default=300, help="seconds per file (default 300)")
    ap.add_argument("--jobs", type=int, default=1, help="files at once (default 1)")
    ap.add_argument("--limit", type=int, help="only the first N files")
    ap.add_argument("--match", help="only files whose path contains this")
    ap.add_argument("--no-write", action="store_true", help="print, do not write the result files")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        return _worker(args)
    entries = [e for e in collect() if not args.match or args.match in e["file"]][: args.limit]
    start = time.monotonic()
    results = run_corpus(entries, args.timeout, args.jobs)
    summary = summarise(results)
    from engine_factory.config import DEFAULTS

    packages = {d: version(d) for d in ("onnx", "onnxruntime", "onnxslim", "onnxsim", "tensorrt-rtx-cu13", "numpy")}
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "packages": packages,
        "targets": DEFAULTS["targets"]["rtx"],
        "timeout_s": args.timeout,
        "wall_s": round(time.monotonic() - start, 1),
    }
    print(json.dumps(summary, indent=1))
    if not args.no_write:
        write_tables(results, summary, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
