"""Calibration data (int8/fp8) and real samples (golden inputs): arrays named like the model's inputs, checked
against the input specs, from an .npz, a single .npy (one-input models) or a directory of them. Calibration also
comes from a directory of images (one image input) or from a Python callable named by import path that yields
batches (`{callable: "pkg.mod:fn", kwargs: {...}}`: user code by explicit opt-in, found through python_path).
At most MAX_SAMPLES samples and MAX_BYTES bytes; data that cannot represent real inputs (constant, identical samples,
uniformly random ids, image-shaped noise) is warned about (`calibration_warnings`).

Samples lie on each input's batch axis (`batch_axis`: 0 by default; a recurrent state `[2, batch, 16]` declares 1);
an input without one (`batch_axis: null`, the default of a scalar: a sample rate, a fixed state) is given once, in
its own shape, or taken from its configured `value`, and is the same in every calibration batch
(tensors.calibration_batches cuts the feeds ModelOpt gets).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..errors import FactoryError
from ..fingerprint import sha256
from ..tensors import array_headers, batch_axis, calibration_batches, declared_nbytes, sample_count, step_batch

MAX_SAMPLES = 4096  # calibration samples: entropy calibration gains nothing past a few hundred
MAX_BYTES = 1 << 30  # 1 GiB of calibration arrays in memory (ModelOpt's calibrator holds them all)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".webp")


def load_calibration(path, input_specs: dict, *, model: str, what: str = "calibration") -> dict[str, np.ndarray]:
    """Calibration inputs (or, `what="samples"`, golden samples) by name, cast to each input's dtype: an .npz
    (arrays named like the inputs), a single .npy (one-input models), or a directory of such files concatenated on
    each input's batch axis. Errors name the config key `models.<model>.<what>`, the file and the array.

    Calibration stacks samples on each input's batch axis (tensors.batch_axis); an input without one holds its
    own shape (or is filled from its `value`). Samples (`what="samples"`) are one feed of the model: every dim,
    the first included, must fit the input's profile (min..max; fixed dims exactly), so models with no batch axis
    shared by all inputs (a matmul of [3,4] by [4,5], a sequence model) take samples too."""
    key = f"models.{model}.{what}"
    if isinstance(path, dict):  # {callable, kwargs}: calibration only (the schema allows it nowhere else)
        data = _from_callable(path, input_specs, model=model, key=key)
        _check_steps(data, input_specs, model=model)
        return _check_size(data, input_specs, model=model, key=key)
    p = Path(path)
    label = "calibration data" if what == "calibration" else what
    if not p.exists():
        raise FactoryError(f"{label} not found", model=model, path=str(p), key=key)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix in (".npy", ".npz"))
        images = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if images and not files and what == "calibration":
            return _check_size(
                _from_images(images, input_specs, model=model, key=key, folder=p),
                input_specs,
                model=model,
                key=key,
                path=p,
            )
        if not files:
            raise FactoryError(
                "the directory holds no .npy or .npz file"
                + (f" (nor images: {', '.join(IMAGE_SUFFIXES)})" if what == "calibration" else ""),
                model=model,
                path=str(p),
                key=key,
            )
    else:
        files = [p]
    _check_declared(files, input_specs, model=model, key=key, label=label, calibration=what == "calibration")
    parts = [
        _read_calibration_file(f, input_specs, model=model, key=key, label=label, sample_axis=what == "calibration")
        for f in files
    ]
    data = _concatenate(parts, input_specs, model=model, key=key, where=str(p))
    if what != "calibration":
        return data
    _check_steps(data, input_specs, model=model)
    return _check_size(data, input_specs, model=model, key=key, path=p)


def _check_steps(data: dict, input_specs: dict, *, model: str) -> None:
    """One calibration step feeds every batched input the same number of samples (tensors.step_batch): an input
    fixed at another size on its batch axis would be cut there wrongly (a state [2, 1, 128] whose samples lie on
    axis 1, cut on axis 0 into 1-row pieces): refused, naming the key that says where its samples lie."""
    step, first = step_batch(data, input_specs), None
    for name, spec in input_specs.items():
        axis = batch_axis(spec)
        if axis is None:
            continue
        first = first or name
        d = spec["shape"][axis]
        if isinstance(d, int) and d != step:
            raise FactoryError(
                f"input '{name}' {spec['shape']} is fixed at {d} on its batch axis {axis}, but one calibration step "
                f"holds {step} sample(s) (the opt batch of input '{first}'): if its samples lie on another axis set "
                "`batch_axis` to it, or `batch_axis: null` for an input without one (one value for every sample)",
                model=model,
                key=f"models.{model}.inputs.{name}.batch_axis",
            )


def _concatenate(parts: list[dict], input_specs: dict, *, model: str, key: str, where: str) -> dict:
    """Parts of calibration data joined on each input's batch axis; an input without one must be the same in every
    part (it is one value for all samples)."""
    if len(parts) == 1:
        return parts[0]
    out = {}
    for name, spec in input_specs.items():
        axis = batch_axis(spec)
        if axis is not None:
            out[name] = np.concatenate([part[name] for part in parts], axis=axis)
            continue
        first = parts[0][name]
        if any(part[name].shape != first.shape or not np.array_equal(part[name], first) for part in parts[1:]):
            raise FactoryError(
                f"input '{name}' has no batch axis (batch_axis: null): one value for every sample, but the "
                f"parts of the calibration data (from {where}) give different ones",
                model=model,
                key=key,
            )
        out[name] = first
    return out


def _check_declared(files: list[Path], input_specs: dict, *, model: str, key: str, label: str, calibration: bool):
    """Refuse .npy/.npz data beyond the limits (samples: MAX_BYTES alone; they are one feed of the model) or holding
    Python objects, from the arrays' headers before anything is loaded: np.load of an .npz of 17 GB of zeros (17 MB
    on disk) is the OOM killer's, not a one-line error. An array named like an input counts at the larger of its
    dtype and the input's (it is cast to the input's). Other files are left to _read_calibration_file."""
    first = next(iter(input_specs))
    counted = next((n for n, s in input_specs.items() if batch_axis(s) is not None), first)  # samples come from it
    axis = batch_axis(input_specs[counted]) or 0
    total, samples = 0, 0
    for f in files:
        if f.suffix not in (".npy", ".npz"):
            continue
        try:
            headers = array_headers(f)
        except Exception as e:
            raise FactoryError(f"cannot read {label} ({type(e).__name__}: {e})", model=model, path=str(f), key=key)
        sizes = {}
        for name, (shape, dtype) in headers.items():
            name = first if name is None else name
            if dtype.hasobject:  # np.load would need allow_pickle: Python objects are code, never loaded
                raise FactoryError(
                    f"array '{name}' holds Python objects (dtype {dtype}, a pickle): give numeric arrays",
                    model=model,
                    path=str(f),
                    key=key,
                )
            want = np.dtype(input_specs[name].get("dtype", "float32")) if name in input_specs else dtype
            sizes[name] = declared_nbytes(shape, want if want.itemsize > dtype.itemsize else dtype)
        total += sum(sizes.values())
        shape = headers.get(counted, headers.get(None, ((),)))[0]
        samples += int(shape[axis]) if len(shape) > axis else 1
        if total > MAX_BYTES or (calibration and samples > MAX_SAMPLES):
            big = max(sizes, key=sizes.get)
            shape, dtype = headers[None if None in headers else big]
            mib, most = f"{total / 2**20:.0f} MiB", f"{MAX_BYTES // 2**20} MiB"
            held = f"holds {samples} samples, {mib}" if calibration else f"hold {mib}"
            limit = f"{MAX_SAMPLES} samples and {most}" if calibration else most
            raise FactoryError(
                f"{label} {held} by the arrays' headers (largest: array '{big}', {list(shape)} {dtype}, "
                f"{sizes[big] / 2**20:.0f} MiB); at most {limit} (a few hundred representative samples are "
                "enough): refused before loading it",
                model=model,
                path=str(f),
                key=key,
            )


def _check_size(data: dict, input_specs: dict, *, model: str, key: str, path=None) -> dict:
    n = sample_count(data, input_specs)
    size = sum(a.nbytes for a in data.values())
    if n > MAX_SAMPLES or size > MAX_BYTES:
        raise FactoryError(
            f"calibration data holds {n} samples, {size / 2**20:.0f} MiB; at most {MAX_SAMPLES} "
            f"samples and {MAX_BYTES // 2**20} MiB (a few hundred representative samples are enough)",
            model=model,
            key=key,
            **({"path": str(path)} if path else {}),
        )
    return data


def _image_layout(input_specs: dict, *, model: str, key: str) -> tuple[str, dict, str]:
    """(input name, spec, "NCHW"|"NHWC") of a model that takes one image: rank 4, 1 or 3 channels."""
    if len(input_specs) != 1:
        raise FactoryError(
            f"a directory of images calibrates a one-input model; this one has inputs "
            f"{list(input_specs)}: give an .npz with arrays named like the inputs",
            model=model,
            key=key,
        )
    name, spec = next(iter(input_specs.items()))
    shape = spec["opt"]
    layout = spec.get("layout") or ("NCHW" if len(shape) == 4 and shape[1] in (1, 3) else "NHWC")
    channels = shape[1] if layout == "NCHW" else shape[-1] if shape else None
    if len(shape) != 4 or channels not in (1, 3) or np.dtype(spec.get("dtype", "float32")).kind != "f":
        raise FactoryError(
            f"images calibrate a float input of rank 4 with 1 or 3 channels; input '{name}' is "
            f"{spec.get('dtype', 'float32')} {spec.get('shape')}",
            model=model,
            key=key,
        )
    return name, spec, layout


def _from_images(files: list[Path], input_specs: dict, *, model: str, key: str, folder: Path) -> dict:
    """Images as the input takes them: RGB (or grey for 1 channel), resized to the profile's opt height and width
    (bilinear), scaled to [0, 1], no mean/std normalization (give an .npz or a callable for that)."""
    name, spec, layout = _image_layout(input_specs, model=model, key=key)
    try:
        from PIL import Image
    except ImportError:
        raise FactoryError("reading images needs Pillow (in requirements.txt: make install)", model=model, key=key)
    shape = spec["opt"]
    h, w, c = (shape[2], shape[3], shape[1]) if layout == "NCHW" else (shape[1], shape[2], shape[3])
    if len(files) > MAX_SAMPLES:
        raise FactoryError(
            f"the directory holds {len(files)} images; at most {MAX_SAMPLES}", model=model, key=key, path=str(folder)
        )
    out = []
    for f in files:
        try:
            with Image.open(f) as im:
                a = np.asarray(im.convert("RGB" if c == 3 else "L").resize((w, h), Image.BILINEAR), np.float32)
        except Exception as e:
            raise FactoryError(f"cannot read the image ({type(e).__name__}: {e})", model=model, key=key, path=str(f))
        a = a.reshape(h, w, c) / np.float32(255.0)
        out.append(a.transpose(2, 0, 1) if layout == "NCHW" else a)
    return {name: np.ascontiguousarray(np.stack(out))}


def _from_callable(setting: dict, input_specs: dict, *, model: str, key: str) -> dict:
    """Batches from the user's callable (`pkg.mod:fn`, called with `kwargs`): each a dict of arrays named like the
    inputs, or one array for a one-input model; concatenated on the first axis up to MAX_SAMPLES (then it stops
    asking). Every batch is checked like a calibration file."""
    from ..modelcode import import_class

    fn = import_class(setting["callable"], model=model, key=f"{key}.callable", what="the calibration callable")
    batches, n = [], 0
    try:
        for batch in fn(**setting.get("kwargs", {})):
            if not isinstance(batch, dict):
                if len(input_specs) != 1:
                    raise FactoryError(
                        f"the callable yielded a {type(batch).__name__}; a model with inputs "
                        f"{list(input_specs)} needs dicts of arrays named like them",
                        model=model,
                        key=f"{key}.callable",
                    )
                batch = {next(iter(input_specs)): batch}
            batch = _check_arrays(
                {k: np.asarray(v) for k, v in batch.items()},
                input_specs,
                model=model,
                key=f"{key}.callable",
                label="calibration batch",
                where=setting["callable"],
            )
            batches.append(batch)
            n += sample_count(batch, input_specs)
            if n >= MAX_SAMPLES:
                break
    except FactoryError:
        raise
    except Exception as e:
        raise FactoryError(
            f"the calibration callable '{setting['callable']}' failed: {type(e).__name__}: {e}",
            model=model,
            key=f"{key}.callable",
        )
    if not batches:
        raise FactoryError(
            f"the calibration callable '{setting['callable']}' yielded no batch", model=model, key=f"{key}.callable"
        )
    data = _concatenate(batches, input_specs, model=model, key=f"{key}.callable", where=setting["callable"])
    if n > MAX_SAMPLES:  # the last batch went past the limit: cut on each input's batch axis
        data = calibration_batches(data, input_specs, MAX_SAMPLES)[0]
    return data


def _read_calibration_file(
    f: Path, input_specs: dict, *, model: str, key: str, label: str = "calibration data", sample_axis: bool = True
) -> dict[str, np.ndarray]:
    def error(msg):
        return FactoryError(msg, model=model, path=str(f), key=key)

    if f.suffix not in (".npy", ".npz"):
        raise error(f"{label} must be an .npz, an .npy or a directory of them")
    if f.suffix == ".npy" and len(input_specs) != 1:
        raise error(
            f"a .npy holds one array but the model has inputs {list(input_specs)}: use an .npz with "
            "arrays named like the inputs"
        )
    try:
        if f.suffix == ".npy":
            arrays = {next(iter(input_specs)): np.load(f, allow_pickle=False)}
        else:
            with np.load(f, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
    except Exception as e:
        raise error(f"cannot read {label} ({type(e).__name__}: {e})")
    return _check_arrays(arrays, input_specs, model=model, key=key, label=label, sample_axis=sample_axis, path=f)


def _check_arrays(
    arrays: dict,
    input_specs: dict,
    *,
    model: str,
    key: str,
    label: str,
    sample_axis: bool = True,
    path=None,
    where: str | None = None,
) -> dict[str, np.ndarray]:
    """The arrays by input name, checked against the specs (names, dtype kind, rank, dims, finite), cast."""

    def error(msg):
        return FactoryError(
            msg + (f" (from {where})" if where else ""), model=model, key=key, **({"path": str(path)} if path else {})
        )

    out, samples = {}, {}
    for name, spec in input_specs.items():
        axis = batch_axis(spec) if sample_axis else None  # samples: one feed, every dim within the profile
        opt, decl = spec["opt"], spec.get("shape", spec["opt"])
        if name not in arrays:
            if spec.get("value") is not None and (axis is None or not sample_axis):  # a sample rate, a zero state
                arrays = {**arrays, name: np.full(opt, spec["value"])}
            else:
                raise error(f"input '{name}' is missing from the {label} (arrays there: {sorted(arrays)})")
        a = arrays[name]
        want = np.dtype(spec.get("dtype", "float32"))
        if a.dtype.kind != want.kind and not (want.kind in "iu" and a.dtype.kind in "iu"):
            raise error(f"input '{name}' has dtype {a.dtype} in the {label}; the input is {want}")
        layout = [("N" if i == axis else d) for i, d in enumerate(decl)]
        if not sample_axis:
            where_samples = ""
        elif axis is None:
            where_samples = " (no batch axis, batch_axis: null: one value for every sample, in the input's own shape)"
        else:
            where_samples = f" (samples on axis {axis}: the input's batch_axis)"
        if a.ndim != len(opt):
            raise error(
                f"input '{name}' has shape {list(a.shape)} in the {label}; expected rank "
                f"{len(opt)} like {layout}{where_samples}"
            )
        for i in range(a.ndim):
            if i == axis:
                continue
            lo, hi = (spec["min"][i], spec["max"][i]) if "min" in spec and "max" in spec else (opt[i], opt[i])
            ok = a.shape[i] == decl[i] if isinstance(decl[i], int) else lo <= a.shape[i] <= hi
            if not ok:
                raise error(
                    f"input '{name}' has shape {list(a.shape)} in the {label}; dim {i} must be "
                    f"{decl[i] if isinstance(decl[i], int) else f'in [{lo}, {hi}]'} (expected {layout}){where_samples}"
                )
        if axis is not None:
            if a.shape[axis] < 1:
                raise error(f"input '{name}' has no samples in the {label}")
            samples[name] = a.shape[axis]
        elif not sample_axis and a.ndim and a.shape[0] < 1:
            raise error(f"input '{name}' has no samples in the {label}")
        if a.dtype.kind == "f" and not np.isfinite(a).all():  # NaN/Inf would silently change ModelOpt's calibrator
            bad = int((~np.isfinite(a)).sum())
            raise error(f"array '{name}' holds {bad} NaN or Inf value(s) of {a.size}: give finite values")
        out[name] = np.asarray(a, dtype=want, order="C")  # ascontiguousarray makes a scalar 1-D
    if sample_axis and len(set(samples.values())) > 1:
        raise error(f"inputs have different sample counts in the calibration data: {samples}")
    return out


def calibration_facts(
    path, data: dict[str, np.ndarray], *, code: dict | None = None, input_specs: dict | None = None
) -> dict:
    """Hashes that key a calibrated variant: of the arrays (names sorted; dtype, shape, bytes) and of the file(s)
    (a callable: its setting, and `code`, the digest of its package), plus the warnings of calibration_warnings.
    `input_specs` say where each input's samples lie (default: the first axis)."""
    specs = input_specs or {name: {"batch_axis": 0 if a.ndim else None} for name, a in data.items()}
    h = hashlib.sha256()
    for name in sorted(data):
        a = np.asarray(data[name], order="C")
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    if isinstance(path, dict):
        source = {"callable": path["callable"], "kwargs": path.get("kwargs", {}), "code": code}
    else:
        p = Path(path)
        suffixes = (".npy", ".npz", *IMAGE_SUFFIXES) if p.is_dir() else None
        source = {"path": str(p), "file_sha256": sha256(p, suffixes=suffixes)}
    return {
        **source,
        "data_sha256": h.hexdigest(),
        "samples": sample_count(data, specs),
        "shapes": {k: list(v.shape) for k, v in data.items()},
        "batch_axes": {k: batch_axis(specs[k]) for k in data if k in specs},
        "warnings": calibration_warnings(data, specs),
    }


def calibration_warnings(data: dict[str, np.ndarray], input_specs: dict | None = None) -> list[str]:
    """What makes calibration data obviously unrepresentative, per input: constant values, every sample the same,
    integer ids spread uniformly at random (real token ids are heavily skewed), image-shaped float data whose
    neighbouring values are uncorrelated (noise, not images). An input without a batch axis (a sample rate, a
    fixed state) is one value by declaration: nothing to warn about."""
    out = []
    for name, a in sorted(data.items()):
        spec = (input_specs or {}).get(name, {"batch_axis": 0 if a.ndim else None})
        axis = batch_axis(spec)
        if a.size == 0 or axis is None:
            continue
        a = np.moveaxis(a, axis, 0) if axis else a  # samples first
        flat = a.reshape(-1)
        if np.all(flat == flat[0]):
            out.append(
                f"calibration input '{name}' is constant ({flat[0]!r} everywhere): the ranges calibrated on "
                "it mean nothing"
            )
            continue
        if a.ndim and a.shape[0] > 1 and np.all(a == a[:1]):
            out.append(f"every calibration sample of '{name}' is the same: one sample's ranges, not the data's")
            continue
        if a.dtype.kind in "iu" and flat.size >= 1000:
            values, counts = np.unique(flat, return_counts=True)
            spread = values.max() - values.min() + 1 <= 1.5 * len(values)  # the range is (nearly) all used
            if len(values) >= 50 and counts.max() <= 3 * counts.mean() and spread:
                out.append(
                    f"calibration input '{name}' looks like uniformly random ids ({len(values)} distinct "
                    f"values, the most frequent only {counts.max() / counts.mean():.1f}x the mean count; "
                    "real token ids are skewed): calibrate on real inputs"
                )
        if a.dtype.kind == "f" and a.ndim == 4 and min(a.shape[-1], a.shape[-2]) >= 4:
            x, y = a[..., :-1].reshape(-1).astype(np.float64), a[..., 1:].reshape(-1).astype(np.float64)
            correlation = np.corrcoef(x, y)[0, 1] if x.std() > 0 and y.std() > 0 else None
            if correlation is not None and abs(correlation) < 0.1:
                out.append(
                    f"calibration input '{name}' is image-shaped but neighbouring values are uncorrelated "
                    f"(correlation {correlation:.2f}; real images: > 0.5): it looks like random "
                    "noise, whose ranges differ from real images'"
                )
    return out
