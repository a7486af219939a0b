"""Calibration data (int8/fp8) and real samples (golden inputs): arrays named like the model's inputs, checked
against the input specs, from an .npz, a single .npy (one-input models) or a directory of them.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..errors import FactoryError
from ..fingerprint import sha256


def load_calibration(path, input_specs: dict, *, model: str, what: str = "calibration") -> dict[str, np.ndarray]:
    """Calibration inputs (or, `what="samples"`, golden samples) by name, cast to each input's dtype: an .npz
    (arrays named like the inputs), a single .npy (one-input models), or a directory of such files concatenated on
    the batch (first) axis. Errors name the config key `models.<model>.<what>`, the file and the array.

    Calibration stacks samples on the first axis. Samples (`what="samples"`) are one feed of the model: every dim,
    the first included, must fit the input's profile (min..max; fixed dims exactly), so models with no batch axis
    shared by all inputs (a matmul of [3,4] by [4,5], a sequence model) take samples too."""
    p = Path(path)
    key = f"models.{model}.{what}"
    label = "calibration data" if what == "calibration" else what
    if not p.exists():
        raise FactoryError(f"{label} not found", model=model, path=str(p), key=key)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix in (".npy", ".npz"))
        if not files:
            raise FactoryError("the directory holds no .npy or .npz file", model=model, path=str(p), key=key)
    else:
        files = [p]
    parts = [_read_calibration_file(f, input_specs, model=model, key=key, label=label,
                                    sample_axis=what == "calibration") for f in files]
    return {name: np.concatenate([part[name] for part in parts]) if len(parts) > 1 else parts[0][name]
            for name in input_specs}


def _read_calibration_file(f: Path, input_specs: dict, *, model: str, key: str, label: str = "calibration data",
                           sample_axis: bool = True) -> dict[str, np.ndarray]:
    def error(msg):
        return FactoryError(msg, model=model, path=str(f), key=key)

    if f.suffix not in (".npy", ".npz"):
        raise error(f"{label} must be an .npz, an .npy or a directory of them")
    if f.suffix == ".npy" and len(input_specs) != 1:
        raise error(f"a .npy holds one array but the model has inputs {list(input_specs)}: use an .npz with "
                    "arrays named like the inputs")
    try:
        if f.suffix == ".npy":
            arrays = {next(iter(input_specs)): np.load(f, allow_pickle=False)}
        else:
            with np.load(f, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
    except Exception as e:
        raise error(f"cannot read {label} ({type(e).__name__}: {e})")
    out, samples = {}, {}
    for name, spec in input_specs.items():
        if name not in arrays:
            raise error(f"input '{name}' is missing from the {label} (arrays there: {sorted(arrays)})")
        a = arrays[name]
        want = np.dtype(spec.get("dtype", "float32"))
        if a.dtype.kind != want.kind and not (want.kind in "iu" and a.dtype.kind in "iu"):
            raise error(f"input '{name}' has dtype {a.dtype} in the {label}; the input is {want}")
        opt, decl = spec["opt"], spec.get("shape", spec["opt"])
        layout = ["N", *decl[1:]] if sample_axis else list(decl)
        if a.ndim != len(opt):
            raise error(f"input '{name}' has shape {list(a.shape)} in the {label}; expected rank "
                        f"{len(opt)} like {layout}" + (" (samples on the first axis)" if sample_axis else ""))
        for i in range(1 if sample_axis else 0, a.ndim):
            lo, hi = (spec["min"][i], spec["max"][i]) if "min" in spec and "max" in spec else (opt[i], opt[i])
            ok = a.shape[i] == decl[i] if isinstance(decl[i], int) else lo <= a.shape[i] <= hi
            if not ok:
                raise error(f"input '{name}' has shape {list(a.shape)} in the {label}; dim {i} must be "
                            f"{decl[i] if isinstance(decl[i], int) else f'in [{lo}, {hi}]'} (expected {layout})")
        if a.ndim and a.shape[0] < 1:
            raise error(f"input '{name}' has no samples in the {label}")
        samples[name] = a.shape[0] if a.ndim else 1
        if a.dtype.kind == "f" and not np.isfinite(a).all():  # NaN/Inf would silently change ModelOpt's calibrator
            bad = int((~np.isfinite(a)).sum())
            raise error(f"array '{name}' holds {bad} NaN or Inf value(s) of {a.size}: give finite values")
        out[name] = np.ascontiguousarray(a, dtype=want)
    if sample_axis and len(set(samples.values())) > 1:
        raise error(f"inputs have different sample counts in the calibration data: {samples}")
    return out


def calibration_facts(path, data: dict[str, np.ndarray]) -> dict:
    """Hashes that key a calibrated variant: of the arrays (names sorted; dtype, shape, bytes) and of the file(s)."""
    h = hashlib.sha256()
    for name in sorted(data):
        a = np.ascontiguousarray(data[name])
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    p = Path(path)
    file_sha = sha256(p, suffixes=(".npy", ".npz") if p.is_dir() else None)
    return {"path": str(p), "file_sha256": file_sha, "data_sha256": h.hexdigest(),
            "samples": int(next(iter(data.values())).shape[0]),
            "shapes": {k: list(v.shape) for k, v in data.items()}}
