"""TensorFlow sources (`framework: tensorflow`): freeze (Keras `.keras`/`.h5`, SavedModel, TF1 checkpoint -> frozen
GraphDef), export
(tf2onnx), golden (TensorFlow fp32). Every later stage is the shared chain.

    freeze   model.pb          GraphDef with the variables folded in (convert_variables_to_constants[_v2])
             model.pb.io.json  its input/output tensors: config name, TF tensor name, shape, dtype, layout
    export   model.onnx        tf2onnx from_graph_def: the config's opset (<= 18), dynamic dims kept, names without
                               `:0`, NHWC inputs presented as NCHW where the config says `layout: NCHW`
    golden   TensorFlow on the original source (Keras model, SavedModel signature, TF1 session), fp32

Layout. TensorFlow image models take NHWC. An input's config `layout` is the layout the ONNX model and the plans
take: `NCHW` asks tf2onnx to transpose at the input (`inputs_as_nchw`), and then the config's shape, profile,
calibration data and samples are NCHW too. The sidecar records both the graph's layout and the presented one;
the export's provenance and the report say which layout the plan expects.

TensorFlow is imported lazily (the Snakefile imports this package at DAG time) and with its C++ logs quiet.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from pathlib import Path

import numpy as np

from .. import atomic, paths, provenance
from ..errors import FactoryError

TITLE = "TensorFlow"
FREEZE_RULE = "freeze_tf"
SOURCE_KEYS = ("checkpoint",)
SINGLE_FILE_SOURCE = False  # a file, a directory or a TF1 prefix: check_config checks its files
CONFIG_KEYS = ("format", "signature", "allow_ops")  # keys only this framework reads
# Ops that touch the file system or call into Python. A SavedModel or TF1 graph is code: one holding any of these is
# refused before anything of it runs (freeze, golden), unless the model's `allow_ops` names them. (The SavedModel's
# own checkpoint restore is not in the frozen signature and is not affected.)
UNSAFE_OPS = {
    "WriteFile",
    "ReadFile",
    "MatchingFiles",
    "DeleteFile",
    "PyFunc",
    "PyFuncStateless",
    "EagerPyFunc",
    "SaveV2",
    "Save",
    "SaveSlices",
    "MergeV2Checkpoints",
    "WholeFileReader",
    "WholeFileReaderV2",
    "TFRecordReader",
    "TFRecordReaderV2",
    "FixedLengthRecordReader",
    "FixedLengthRecordReaderV2",
    "TextLineReader",
    "TextLineReaderV2",
    "IdentityReader",
    "IdentityReaderV2",
    "LMDBReader",
    "CreateSummaryFileWriter",
    "WriteSummary",
    "WriteScalarSummary",
    "WriteHistogramSummary",
    "WriteImageSummary",
    "WriteAudioSummary",
    "WriteGraphSummary",
    "WriteRawProtoSummary",
    "ImmutableConst",
    "DebugIdentity",
    "DebugIdentityV2",
    "DebugNumericSummary",
    "SaveDataset",
    "DatasetToTFRecord",
    "ExperimentalDatasetToTFRecord",
}
INPUT_KEYS = {"layout": "tf2onnx can present NHWC inputs as NCHW"}  # input keys only it reads, and why
FORMATS = ("keras", "h5", "saved_model", "tf1_checkpoint")
MAX_OPSET = 18  # tf2onnx 1.17 converts to opsets <= 18
# mem_mb the TensorFlow jobs declare (config `mem_mb` overrides per model). Measured peaks for Keras ResNet50 /
# InceptionV3: freeze 1.7 / 1.6 GB, tf2onnx export 6.9 / 5.2 GB, golden 0.8 / 0.8 GB (benchmarks/tf_large_models.md).
MEM_MB = {"freeze": 3000, "export": 8000, "golden": 3000}
LAYOUT_OPS = {
    "Conv2D",
    "DepthwiseConv2dNative",
    "MaxPool",
    "AvgPool",
    "FusedBatchNorm",
    "FusedBatchNormV2",
    "FusedBatchNormV3",
    "Conv2DBackpropInput",
}


def import_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # oneDNN's fused kernels change fp32 results run to run across machines; the golden reference should not.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    return tf


# ---------------------------------------------------------------------------------------------- config (no TF)


def check_config(name: str, m: dict, cfg: dict, exists, settings: dict) -> None:
    """What the schema cannot say about a `framework: tensorflow` model. Cheap: runs at DAG time. `exists`: a
    test of configured paths (None: files are not checked); `settings`: the model's, as config settles them."""
    key = f"models.{name}"
    opset = settings["opset"]
    if "format" not in m:
        raise FactoryError(
            f"a TensorFlow model needs 'format' ({' | '.join(FORMATS)})", model=name, key=f"{key}.format"
        )
    if opset > MAX_OPSET:
        raise FactoryError(
            f"opset {opset}: tf2onnx 1.17 converts to opsets up to {MAX_OPSET}; set opset <= "
            f"{MAX_OPSET} for this model",
            model=name,
            key=f"{key}.opset",
        )
    if not m.get("outputs"):
        raise FactoryError(
            "a TensorFlow model needs 'outputs' (Keras: names in the model's output order; SavedModel: "
            "signature output keys; TF1: output node names)",
            model=name,
            key=f"{key}.outputs",
        )
    for what, names in (("inputs", list(m["inputs"])), ("outputs", m["outputs"])):
        for n in names:
            if ":" in n:
                raise FactoryError(
                    f"'{n}': name tensors without the ':0' suffix (the ONNX names drop it)",
                    model=name,
                    key=f"{key}.{what}",
                )
    for n, spec in m["inputs"].items():
        if "layout" in spec and len(spec["shape"]) != 4:
            raise FactoryError(
                f"layout applies to rank-4 image inputs; '{n}' has rank {len(spec['shape'])}",
                model=name,
                key=f"{key}.inputs.{n}.layout",
            )
    if "signature" in m and m["format"] != "saved_model":
        raise FactoryError("'signature' applies to SavedModels only", model=name, key=f"{key}.signature")
    path, fmt = m["checkpoint"], m["format"]
    suffixes = {"keras": (".keras",), "h5": (".h5", ".hdf5")}.get(fmt)
    if suffixes and not path.endswith(suffixes):
        raise FactoryError(
            f"format '{fmt}' needs a file ending in {' or '.join(suffixes)}",
            model=name,
            key=f"{key}.checkpoint",
            path=path,
        )
    if exists and not paths.made_by_workflow(path):
        files = checkpoint_files(path, fmt)
        for f in files.values():
            if not exists(f):
                raise FactoryError(
                    "file not found" if f == path else f"file not found (part of the checkpoint {path})",
                    model=name,
                    key=f"{key}.checkpoint",
                    path=f,
                )
        if fmt == "saved_model" and not exists(os.path.join(path, "saved_model.pb")):
            raise FactoryError(
                "not a SavedModel directory (no saved_model.pb in it)", model=name, key=f"{key}.checkpoint", path=path
            )


def checkpoint_files(path: str, fmt: str) -> dict[str, str]:
    """The labelled files of a TensorFlow source, for the rules' inputs: one file or directory, or a TF1
    checkpoint given by its `.meta` (or by its prefix, when `<prefix>.meta` exists) with its index and data shards.
    Any other TF1 path is a directory holding the checkpoint."""
    if fmt != "tf1_checkpoint" or not (path.endswith(".meta") or os.path.isfile(path + ".meta")):
        return {"source": path}
    prefix = path[: -len(".meta")] if path.endswith(".meta") else path
    shards = sorted(glob.glob(glob.escape(prefix) + ".data-*")) or [prefix + ".data-00000-of-00001"]
    return {
        "source": prefix + ".meta",
        "ckpt_index": prefix + ".index",
        **{f"ckpt_data_{i}": s for i, s in enumerate(shards)},
    }


def frozen_format(m: dict) -> str:
    return "pb"


def source_files(m: dict) -> dict[str, str]:
    return checkpoint_files(m["checkpoint"], m["format"])


def export_inputs(name: str, m: dict) -> dict[str, str]:
    """The frozen GraphDef and its tensor sidecar."""
    return {"source": paths.frozen(name, "pb"), "io": paths.frozen_io(name)}


def reference_inputs(name: str, m: dict) -> dict[str, str]:
    return {**source_files(m), "io": paths.frozen_io(name)}  # the sidecar says which inputs tf2onnx transposes


def freeze_settings(name: str, m: dict) -> dict:
    return {
        "model": name,
        "format": m["format"],
        "signature": m.get("signature", "serving_default"),
        "inputs": m["inputs"],
        "outputs": m["outputs"],
        "allow_ops": m.get("allow_ops", []),
    }


def export_settings(name: str, m: dict) -> dict:
    """Nothing beyond the common export settings."""
    return {}


def reference_settings(m: dict) -> dict:
    return {
        "framework": m["framework"],
        "kind": "tensorflow",
        "format": m["format"],
        "signature": m.get("signature"),
        "allow_ops": m.get("allow_ops", []),
    }


def freeze(inputs: dict, outputs: dict, p: dict) -> dict:
    """The freeze stage: the frozen GraphDef (its record is the stage runner's) and its tensor sidecar, which gets
    a provenance record of its own. Without one the sidecar was accounted for only as an input of the export's
    record, so while the export failed (an op tf2onnx cannot convert) `verify` called it orphaned, `--repair`
    removed it, the next run froze again to make it, and so on every night. A record left by an earlier freeze goes
    first: a freeze that fails leaves none (Snakemake removes the outputs it declares)."""
    record = paths.provenance(outputs["io"])
    if os.path.lexists(record):
        os.remove(record)
    facts = freeze_tf(
        inputs["source"],
        outputs["frozen"],
        outputs["io"],
        model=p["model"],
        fmt=p["format"],
        input_specs=p["inputs"],
        outputs=p["outputs"],
        signature=p["signature"],
        allow_ops=p.get("allow_ops", ()),
    )
    provenance.write(outputs["io"], stage="freeze", inputs=inputs, params=p, facts={"sidecar_of": outputs["frozen"]})
    return facts


def reachable_ops(graph_def) -> set[str]:
    """The op types the graph's nodes run, following the functions they name (StatefulPartitionedCall's `f`, While's
    cond/body, a function called by its name as an op) through the library."""
    library = {f.signature.name: f for f in graph_def.library.function}
    ops, seen, todo = set(), set(), [graph_def.node]
    while todo:
        for node in todo.pop():
            ops.add(node.op)
            called = [node.op] if node.op in library else []
            for attr in node.attr.values():
                called += [attr.func.name] if attr.HasField("func") else []
                called += [f.name for f in attr.list.func]
            for name in called:
                if name in library and name not in seen:
                    seen.add(name)
                    todo.append(library[name].node_def)
    return ops


def refuse_unsafe_ops(graph_def, *, model: str, allowed=()) -> None:
    """Refuse a graph that would read or write files or call Python when it runs (UNSAFE_OPS), naming the ops.
    Judged on what the graph's nodes reach (library functions they call, transitively): a re-saved SavedModel's
    library may hold its saver functions (SaveV2, MergeV2Checkpoints) that the serving signature never runs."""
    ops = reachable_ops(graph_def)
    bad = sorted((ops & UNSAFE_OPS) - set(allowed))
    if bad:
        raise FactoryError(
            f"the graph holds ops that touch the file system or call Python ({', '.join(bad)}): refused "
            "before anything of it ran; name them in allow_ops to run it anyway (it then runs with this "
            "process's rights)",
            model=model,
            key=f"models.{model}.allow_ops",
        )


def export(inputs: dict, outputs: dict, p: dict) -> dict:
    return export_tf(
        inputs["source"],
        inputs["io"],
        outputs["onnx"],
        model=p["model"],
        input_specs=p["inputs"],
        outputs=p["outputs"],
        opset=p["opset"],
    )


def nchw_to_nhwc(shape: list) -> list:
    return [shape[0], shape[2], shape[3], shape[1]]


def tf_shape(spec: dict, key: str = "shape", transpose: bool = False) -> list:
    """A config shape as TensorFlow sees it: dynamic dims None, NCHW reordered to NHWC when presented transposed."""
    shape = [None if isinstance(d, str) else int(d) for d in spec[key]]
    return nchw_to_nhwc(shape) if transpose else shape


# ---------------------------------------------------------------------------------------------- freeze


def freeze_tf(
    source: str,
    out: str,
    io_out: str,
    *,
    model: str,
    fmt: str,
    input_specs: dict,
    outputs: list[str],
    signature: str = "serving_default",
    allow_ops=(),
) -> dict:
    """Any TensorFlow source -> `out` (frozen GraphDef) + `io_out` (its tensors and layouts)."""
    tf = import_tensorflow()
    layouts = {n: s.get("layout") for n, s in input_specs.items()}
    if fmt in ("keras", "h5"):
        graph_def, ins, outs = _freeze_keras(tf, source, model, input_specs, outputs, allow_ops)
    elif fmt == "saved_model":
        graph_def, ins, outs, loader = _freeze_saved_model(
            tf, source, model, input_specs, outputs, signature, allow_ops
        )
    elif fmt == "tf1_checkpoint":
        graph_def, ins, outs = _freeze_tf1(tf, source, model, input_specs, outputs, allow_ops)
    else:
        raise FactoryError(f"unknown TensorFlow format '{fmt}'", model=model, key=f"models.{model}.format")
    graph_format = graph_data_format(graph_def)
    for entry in ins:
        want = input_specs[entry["name"]].get("dtype", "float32")
        if entry["dtype"] != want:
            raise FactoryError(
                f"input '{entry['name']}' is {entry['dtype']} in the graph, the config says {want}",
                model=model,
                key=f"models.{model}.inputs.{entry['name']}.dtype",
            )
        entry["layout"] = _graph_layout(entry, graph_format)
        entry["presented_layout"] = _presented(entry, layouts[entry["name"]], model)
        entry["transpose_to_nchw"] = entry["layout"] == "NHWC" and entry["presented_layout"] == "NCHW"
        _check_shape(entry, input_specs[entry["name"]], model)
    io = {
        "format": fmt,
        "graph_data_format": graph_format,
        "inputs": ins,
        "outputs": outs,
        **({"signature": signature, **loader} if fmt == "saved_model" else {}),
    }
    with atomic.atomic_path(out) as tmp, atomic.atomic_path(io_out) as tmp_io:
        tmp.write_bytes(graph_def.SerializeToString())
        tmp_io.write_text(json.dumps(io, indent=2) + "\n")
    ops = {}
    for node in graph_def.node:
        ops[node.op] = ops.get(node.op, 0) + 1
    return {
        "format": fmt,
        "frozen": "GraphDef, variables folded into constants",
        "nodes": len(graph_def.node),
        "variable_ops_left": sum(v for k, v in ops.items() if "Variable" in k),
        "graph_data_format": graph_format,
        "layout": {e["name"]: e["presented_layout"] for e in ins},
        "inputs": ins,
        "outputs": outs,
        **{k: io[k] for k in ("loader", "why") if k in io},  # a SavedModel restored whole, or by its signature
    }


def _tensor_entry(name: str, t) -> dict:
    shape = t.shape.as_list() if t.shape.rank is not None else None
    return {"name": name, "tensor": t.name, "shape": shape, "dtype": t.dtype.name}


# (what TensorFlow raises, the cause in words, the next step) for errors that name neither
TF_CAUSES = (
    (
        "add_slot",
        "the SavedModel was written by TensorFlow 2.x/Keras 2 with its optimizer, whose slot variables this Keras "
        "cannot restore (a known TensorFlow issue)",
        "it is then loaded by its signature alone (its graph and variables); where that fails too, re-save it "
        "where it was trained without the optimizer (Keras 2: model.export(path), or tf.saved_model.save after "
        "model.optimizer = None), or convert it there with tf2onnx and give the ONNX file (framework: onnx)",
    ),
    (
        "_UserObject",
        "the SavedModel holds Keras objects of another Keras version, restored as plain '_UserObject's",
        "re-save it with this TensorFlow (model.export(path)), or convert it where it was written with tf2onnx and "
        "give the ONNX file (framework: onnx)",
    ),
    (
        "ReadVariableOp",
        "variables are still read at run time: the graph was not frozen before conversion",
        "give the SavedModel with a serving signature so freeze folds its variables into constants",
    ),
)


def _traced(what: str, e: BaseException, limit: int) -> str:
    """`e` in one line of at most `limit` characters; its full traceback to the job's log (stderr) under `what`."""
    import sys
    import traceback

    print(f"{what}; the full traceback:", file=sys.stderr)
    traceback.print_exception(e, file=sys.stderr)
    return f"{type(e).__name__}: {' '.join(str(e).split())[:limit]}"


def tf_error(what: str, e: BaseException, *, model: str, path: str) -> FactoryError:
    """A one-line error naming the model, the cause in words and the next step where the TensorFlow error is of a
    known kind; the full traceback goes to the job's log (stderr), which the record points to."""
    text = _traced(f"{what} for model '{model}'", e, 400)
    hint = next(
        (f"; cause: {why}; next: {step.format(model=model)}" for needle, why, step in TF_CAUSES if needle in text), ""
    )
    return FactoryError(f"{what}: {text}{hint} (full traceback in the job log)", model=model, path=path)


def load_keras(path: str, *, model: str):
    import_tensorflow()
    import keras

    try:  # safe_mode (the default) refuses to deserialize Lambda-layer code from the file
        return keras.models.load_model(path, compile=False)
    except Exception as e:
        raise tf_error("cannot load the Keras model", e, model=model, path=path)


def keras_function(tf, net, input_specs: dict, outputs: list[str], *, model: str):
    """A tf.function over the Keras model: inputs in the config's order, outputs as a tuple in the config's order."""
    n_in = len(net.inputs)
    if n_in != len(input_specs):
        raise FactoryError(
            f"the Keras model has {n_in} input(s) {[tuple(t.shape) for t in net.inputs]}, the config "
            f"names {len(input_specs)}: {list(input_specs)}",
            model=model,
            key=f"models.{model}.inputs",
        )

    def call(*args):
        result = net(list(args) if n_in > 1 else args[0], training=False)
        return _pick_outputs(result, outputs, model=model, what="the Keras model")

    # autograph off: `call` has no tensor-dependent Python control flow to convert, and with it on, a FactoryError
    # raised while tracing (the outputs do not match) reached the caller as a StagingError quoting file paths first
    return tf.function(call, autograph=False)


def _pick_outputs(result, outputs: list[str], *, model: str, what: str) -> tuple:
    if isinstance(result, dict):
        missing = [k for k in outputs if k not in result]
        if missing:
            raise FactoryError(
                f"{what} returns outputs {sorted(result)}; the config names {missing} that it lacks",
                model=model,
                key=f"models.{model}.outputs",
            )
        return tuple(result[k] for k in outputs)
    result = tuple(result) if isinstance(result, (list, tuple)) else (result,)
    if len(result) != len(outputs):
        raise FactoryError(
            f"{what} returns {len(result)} output(s), the config names {len(outputs)}: {outputs}",
            model=model,
            key=f"models.{model}.outputs",
        )
    return result


def _specs(tf, input_specs: dict, transposed: dict[str, bool]) -> list:
    return [
        tf.TensorSpec(tf_shape(s, transpose=transposed[n]), tf.as_dtype(s.get("dtype", "float32")), name=n)
        for n, s in input_specs.items()
    ]


def _assumed_transposes(input_specs: dict) -> dict[str, bool]:
    """Before the graph is known: an input presented NCHW is fed to TensorFlow as NHWC."""
    return {n: s.get("layout") == "NCHW" for n, s in input_specs.items()}


def _freeze_keras(tf, path, model, input_specs, outputs, allow_ops=()):
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    net = load_keras(path, model=model)
    transposed = _assumed_transposes(input_specs)
    for (name, spec), t in zip(input_specs.items(), net.inputs):  # the model's declared shapes vs the config
        _check_shape({"name": name, "shape": list(t.shape), "transpose_to_nchw": transposed[name]}, spec, model)
    fn = keras_function(tf, net, input_specs, outputs, model=model)
    try:
        concrete = fn.get_concrete_function(*_specs(tf, input_specs, transposed))
        refuse_unsafe_ops(concrete.graph.as_graph_def(), model=model, allowed=allow_ops)
        frozen = convert_variables_to_constants_v2(concrete)
    except FactoryError:
        raise
    except Exception as e:
        raise tf_error(
            "cannot trace and freeze the Keras model with the config's input specs", e, model=model, path=path
        )
    ins = [_tensor_entry(n, t) for n, t in zip(input_specs, frozen.inputs)]
    outs = [_tensor_entry(n, t) for n, t in zip(outputs, frozen.outputs)]
    return frozen.graph.as_graph_def(), ins, outs


def restore_object_graph(tf, path: str):
    """(the SavedModel restored whole by tf.saved_model.load, None), or (None, why it does not restore): then it is
    loaded by its signature alone (SignatureGraph); the traceback goes to the job's log."""
    try:
        return tf.saved_model.load(path), None
    except Exception as e:
        return None, f"its object graph does not restore ({_traced('the SavedModel does not restore whole', e, 200)})"


def signature_of(loaded, signature: str, *, model: str, path: str):
    if signature not in loaded.signatures:
        raise _no_signature(signature, sorted(loaded.signatures), model=model, path=path)
    return loaded.signatures[signature]


def _no_signature(signature: str, have, *, model: str, path: str) -> FactoryError:
    return FactoryError(
        f"the SavedModel has no signature '{signature}' (it has {have})",
        model=model,
        key=f"models.{model}.signature",
        path=path,
    )


def _check_signature_names(sig, input_specs: dict, outputs: list[str], *, model: str, path: str):
    _, kw = sig.structured_input_signature
    out_keys = sorted(sig.structured_outputs) if isinstance(sig.structured_outputs, dict) else None
    _check_keys(set(kw), out_keys, input_specs, outputs, model=model, path=path)
    return kw, out_keys


def _check_keys(in_keys: set, out_keys, input_specs: dict, outputs: list[str], *, model: str, path: str) -> None:
    if set(in_keys) != set(input_specs):
        raise FactoryError(
            f"the signature's inputs are {sorted(in_keys)}, the config names {sorted(input_specs)}",
            model=model,
            key=f"models.{model}.inputs",
            path=path,
        )
    if out_keys is None or not set(outputs) <= set(out_keys):
        raise FactoryError(
            f"the signature's outputs are {sorted(out_keys) if out_keys is not None else None}, the config names "
            f"{outputs}",
            model=model,
            key=f"models.{model}.outputs",
            path=path,
        )


class SignatureGraph:
    """A SavedModel by its signature alone, for one whose object graph this TensorFlow cannot restore (TF 2.x/Keras 2
    with its optimizer: `'_UserObject' object has no attribute 'add_slot'`, a known TensorFlow issue). Its MetaGraph
    is loaded into a graph session with the variables restored from its own checkpoint; no Python object (a Keras
    layer, an optimizer) is revived. Before anything of it runs, the ops the signature's outputs and the loader's init
    op reach are judged (refuse_unsafe_ops): a re-saved model's saver functions, which the signature never runs, are
    not among them. `freeze` inlines the functions the signature calls (Grappler's function optimizer: a TF2
    SavedModel's graph is one StatefulPartitionedCall) and folds the variables, keeping what the outputs reach."""

    def __init__(self, tf, path: str, signature: str, input_specs, outputs: list[str], *, model: str, allowed=()):
        """Refuses, before anything is loaded: ops that touch files or call Python, then a signature without the
        config's inputs and outputs (keys)."""
        from tensorflow.python.saved_model import loader_impl

        v1 = tf.compat.v1
        try:
            saved = loader_impl.parse_saved_model(path)
        except Exception as e:
            raise tf_error("cannot read the SavedModel", e, model=model, path=path)
        meta = next((m for m in saved.meta_graphs if "serve" in m.meta_info_def.tags), None)
        if meta is None or signature not in meta.signature_def:
            have = sorted(meta.signature_def) if meta is not None else "no 'serve' graph"
            raise _no_signature(signature, have, model=model, path=path)
        sig = meta.signature_def[signature]
        self.inputs = {k: t.name for k, t in sig.inputs.items()}
        self.outputs = {k: t.name for k, t in sig.outputs.items()}
        init = (
            [t.name for t in meta.signature_def["__saved_model_init_op"].outputs.values()]
            if ("__saved_model_init_op" in meta.signature_def)
            else []
        )
        for key in ("saved_model_main_op", "legacy_init_op"):
            if key in meta.collection_def:
                init += list(meta.collection_def[key].node_list.value)
        reached = [n.split(":")[0].lstrip("^") for n in [*self.outputs.values(), *init]]
        refuse_unsafe_ops(v1.graph_util.extract_sub_graph(meta.graph_def, reached), model=model, allowed=allowed)
        _check_keys(set(self.inputs), set(self.outputs), input_specs, outputs, model=model, path=path)
        self.tf, self.model, self.path = tf, model, path
        self.graph = tf.Graph()
        self.session = v1.Session(graph=self.graph)
        try:
            with self.graph.as_default():
                v1.saved_model.loader.load(self.session, list(meta.meta_info_def.tags), path)
        except Exception as e:
            self.session.close()
            raise tf_error("cannot load the SavedModel's graph", e, model=model, path=path)

    def run(self, feeds: dict, outputs: list[str]) -> list:
        with self.graph.as_default():
            return self.session.run([self.outputs[k] for k in outputs], {self.inputs[n]: a for n, a in feeds.items()})

    def freeze(self, outputs: list[str]):
        """The frozen GraphDef of `outputs` (signature keys)."""
        from tensorflow.core.protobuf import config_pb2, meta_graph_pb2
        from tensorflow.python.grappler import tf_optimizer

        v1 = self.tf.compat.v1
        nodes = sorted({self.outputs[k].split(":")[0] for k in outputs})
        try:
            with self.graph.as_default():
                meta = v1.train.export_meta_graph(graph_def=self.graph.as_graph_def(), graph=self.graph)
                fetch = meta_graph_pb2.CollectionDef()
                fetch.node_list.value.extend(nodes)
                meta.collection_def["train_op"].CopyFrom(fetch)  # what Grappler keeps: the outputs
                config = config_pb2.ConfigProto()
                config.graph_options.rewrite_options.optimizers.append("function")  # inlining only
                config.graph_options.rewrite_options.min_graph_nodes = -1
                inlined = tf_optimizer.OptimizeGraph(config, meta)
                frozen = v1.graph_util.convert_variables_to_constants(self.session, inlined, nodes)
                return v1.graph_util.extract_sub_graph(frozen, nodes)
        except Exception as e:
            raise tf_error("cannot freeze the signature's graph", e, model=self.model, path=self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.session.close()


def _freeze_saved_model(tf, path, model, input_specs, outputs, signature, allow_ops=()):
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    loaded, why = restore_object_graph(tf, path)
    if loaded is None:
        print(f"note: {why}: loaded by its signature alone", flush=True)
        graph_def, ins, outs = _freeze_signature_graph(tf, path, model, input_specs, outputs, signature, allow_ops)
        return graph_def, ins, outs, {"loader": "signature graph", "why": why}
    sig = signature_of(loaded, signature, model=model, path=path)
    refuse_unsafe_ops(sig.graph.as_graph_def(), model=model, allowed=allow_ops)
    kw, out_keys = _check_signature_names(sig, input_specs, outputs, model=model, path=path)
    try:
        frozen = convert_variables_to_constants_v2(sig)
    except Exception as e:
        raise tf_error(f"cannot freeze the signature '{signature}'", e, model=model, path=path)
    by_input = dict(zip(sorted(kw), frozen.inputs))  # flattened structures follow sorted dict keys
    by_output = dict(zip(out_keys, frozen.outputs))
    ins = [_tensor_entry(n, by_input[n]) for n in input_specs]
    outs = [_tensor_entry(n, by_output[n]) for n in outputs]
    return frozen.graph.as_graph_def(), ins, outs, {"loader": "object graph"}


def _freeze_signature_graph(tf, path, model, input_specs, outputs, signature, allow_ops=()):
    with SignatureGraph(tf, path, signature, input_specs, outputs, model=model, allowed=allow_ops) as sg:
        graph_def = sg.freeze(outputs)
    refuse_unsafe_ops(graph_def, model=model, allowed=allow_ops)
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    ins = [_tensor_entry(n, graph.get_tensor_by_name(sg.inputs[n])) for n in input_specs]
    outs = [_tensor_entry(n, graph.get_tensor_by_name(sg.outputs[n])) for n in outputs]
    return graph_def, ins, outs


def tf1_prefix(path: str, *, model: str) -> str:
    """A TF1 checkpoint's prefix from its `.meta`, its prefix, or a directory holding it."""
    if os.path.isdir(path):
        metas = sorted(glob.glob(os.path.join(glob.escape(path), "*.meta")))
        if len(metas) == 1:
            return metas[0][: -len(".meta")]
        tf = import_tensorflow()
        latest = tf.train.latest_checkpoint(path)
        if latest and os.path.exists(latest + ".meta"):
            return latest
        raise FactoryError(
            f"the directory holds {len(metas)} .meta files and no usable 'checkpoint' state file: name "
            "the .meta to use",
            model=model,
            key=f"models.{model}.checkpoint",
            path=path,
        )
    return path[: -len(".meta")] if path.endswith(".meta") else path


def tf1_session(tf, path: str, *, model: str):
    """(graph, session) with the checkpoint's meta graph imported and its variables restored."""
    v1 = tf.compat.v1
    prefix = tf1_prefix(path, model=model)
    graph = tf.Graph()
    sess = v1.Session(graph=graph)
    try:
        with graph.as_default():
            saver = v1.train.import_meta_graph(prefix + ".meta", clear_devices=True)
            if saver is not None:
                saver.restore(sess, prefix)
    except Exception as e:
        sess.close()
        raise FactoryError(
            f"cannot restore the TF1 checkpoint '{prefix}': {type(e).__name__}: {e}", model=model, path=path
        )
    return graph, sess


def _tf1_tensor(graph, name: str, *, model: str, key: str, placeholder: bool):
    try:
        op = graph.get_operation_by_name(name)
    except KeyError:
        hint = sorted(o.name for o in graph.get_operations() if o.type in ("Placeholder", "PlaceholderV2"))
        raise FactoryError(
            f"the graph has no node '{name}'" + (f" (its placeholders: {hint})" if placeholder else ""),
            model=model,
            key=key,
        )
    if placeholder and not op.type.startswith("Placeholder"):
        raise FactoryError(f"node '{name}' is a {op.type}, not a Placeholder", model=model, key=key)
    return op.outputs[0]


def _freeze_tf1(tf, path, model, input_specs, outputs, allow_ops=()):
    v1 = tf.compat.v1
    graph, sess = tf1_session(tf, path, model=model)
    with sess:
        _refuse_tf1(v1, graph, outputs, model=model, allowed=allow_ops)
        ins = [
            _tensor_entry(n, _tf1_tensor(graph, n, model=model, key=f"models.{model}.inputs", placeholder=True))
            for n in input_specs
        ]
        outs = [
            _tensor_entry(n, _tf1_tensor(graph, n, model=model, key=f"models.{model}.outputs", placeholder=False))
            for n in outputs
        ]
        try:
            graph_def = v1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), list(outputs))
        except Exception as e:
            raise FactoryError(
                f"cannot fold the variables into constants: {type(e).__name__}: {e}", model=model, path=path
            )
    return graph_def, ins, outs


def _refuse_tf1(v1, graph, outputs, *, model: str, allowed=()) -> None:
    """The ops the outputs depend on (the checkpoint's own save/restore ops are not among them)."""
    try:
        sub = v1.graph_util.extract_sub_graph(graph.as_graph_def(), list(outputs))
    except (AssertionError, KeyError):  # an unknown output node: the caller names it
        return
    refuse_unsafe_ops(sub, model=model, allowed=allowed)


def graph_data_format(graph_def) -> str | None:
    """NHWC or NCHW from the graph's convolution/pooling ops; None when it has none (e.g. an MLP)."""
    formats = set()
    for node in graph_def.node:
        if node.op in LAYOUT_OPS and "data_format" in node.attr:
            formats.add(node.attr["data_format"].s.decode())
    if not formats:
        return None
    return "NCHW" if formats == {"NCHW"} else "NHWC"


def _graph_layout(entry: dict, graph_format: str | None) -> str | None:
    if entry["shape"] is None or len(entry["shape"]) != 4:
        return None
    return graph_format or "NHWC"  # TensorFlow's default data_format


def _presented(entry: dict, wanted: str | None, model: str) -> str | None:
    have = entry["layout"]
    if wanted is None or wanted == have:
        return have
    if have == "NHWC" and wanted == "NCHW":
        return "NCHW"
    raise FactoryError(
        f"input '{entry['name']}' is {have or 'not an image (rank != 4)'} in the graph; "
        f"tf2onnx can present NHWC inputs as NCHW, nothing else",
        model=model,
        key=f"models.{model}.inputs.{entry['name']}.layout",
    )


def _check_shape(entry: dict, spec: dict, model: str) -> None:
    """The graph's input shape (None = dynamic) must admit the config's shape (in the graph's layout)."""
    have = entry["shape"]
    if have is None:
        return
    want = tf_shape(spec, transpose=entry["transpose_to_nchw"])
    key = f"models.{model}.inputs.{entry['name']}.shape"
    hint = (
        "; the config's shape is in the presented layout (NCHW)"
        if entry["transpose_to_nchw"]
        else "; for an NCHW plan from an NHWC model, set layout: NCHW and give NCHW shapes"
        if len(want) == 4
        else ""
    )
    if len(have) != len(want):
        raise FactoryError(
            f"input '{entry['name']}' has rank {len(have)} in the graph {have}, {len(want)} in the config",
            model=model,
            key=key,
        )
    for i, (h, w) in enumerate(zip(have, want)):
        if h is not None and w is not None and h != w:
            raise FactoryError(
                f"input '{entry['name']}' is {have} in the graph, the config gives {spec['shape']}{hint}",
                model=model,
                key=key,
            )
        if h is not None and w is None:
            raise FactoryError(
                f"input '{entry['name']}' is {have} in the graph (dim {i} fixed), the config gives "
                f"{spec['shape']} with that dim dynamic{hint}",
                model=model,
                key=key,
            )


def read_io(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


# ---------------------------------------------------------------------------------------------- export


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def export_tf(
    frozen: str, io_path: str, out: str, *, model: str, input_specs: dict, outputs: list[str], opset: int
) -> dict:
    """tf2onnx on the frozen GraphDef: names without `:0`, dynamic dims kept, NCHW presentation where configured."""
    from ..graph.onnx_io import finish_onnx

    if opset > MAX_OPSET:
        raise FactoryError(
            f"tf2onnx converts to opsets up to {MAX_OPSET}, the config asks for {opset}",
            model=model,
            key=f"models.{model}.opset",
        )
    tf = import_tensorflow()
    import tf2onnx

    io = read_io(io_path)
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(Path(frozen).read_bytes())
    except Exception as e:
        raise FactoryError(f"not a GraphDef: {e}", model=model, path=frozen)
    ins, outs = io["inputs"], io["outputs"]
    if [e["name"] for e in ins] != list(input_specs) or [e["name"] for e in outs] != list(outputs):
        raise FactoryError(
            "the frozen graph's sidecar does not match the config's inputs/outputs: re-run freeze",
            model=model,
            path=io_path,
        )
    nchw = [e["tensor"] for e in ins if e["transpose_to_nchw"]]
    rename = {e["tensor"]: e["name"] for e in [*ins, *outs]}
    shapes = {e["tensor"]: tf_shape(input_specs[e["name"]], transpose=e["transpose_to_nchw"]) for e in ins}
    collect = _Collect()
    log = logging.getLogger("tf2onnx")
    log.addHandler(collect)
    try:
        with atomic.atomic_path(out) as tmp:
            try:
                proto, _ = tf2onnx.convert.from_graph_def(
                    graph_def,
                    name=model,
                    input_names=[e["tensor"] for e in ins],
                    output_names=[e["tensor"] for e in outs],
                    opset=opset,
                    inputs_as_nchw=nchw or None,
                    shape_override=shapes,
                    tensors_to_rename=rename,
                )
            except Exception as e:
                raise FactoryError(
                    f"tf2onnx {tf2onnx.__version__} failed: {type(e).__name__}: {e}"
                    + "".join(f"\n  tf2onnx: {m}" for m in collect.messages),
                    model=model,
                    path=frozen,
                )
            if collect.messages:  # from_graph_def continues past unsupported ops and leaves them in the graph
                raise FactoryError(
                    f"tf2onnx {tf2onnx.__version__} cannot convert the graph:\n  "
                    + "\n  ".join(f"tf2onnx: {m}" for m in collect.messages),
                    model=model,
                    path=frozen,
                )
            import onnx

            onnx.save(proto, str(tmp))
            facts = finish_onnx(tmp, model=model, input_specs=input_specs, outputs=outputs, opset=opset)
    finally:
        log.removeHandler(collect)
    layout = {e["name"]: e["presented_layout"] for e in ins}
    return {
        "exporter": f"tf2onnx {tf2onnx.__version__} (from_graph_def)",
        "tensorflow": tf.__version__,
        "inputs_as_nchw": [e["name"] for e in ins if e["transpose_to_nchw"]],
        "layout": layout,
        "tf_layout": {e["name"]: e["layout"] for e in ins},
        **facts,
    }


# ---------------------------------------------------------------------------------------------- golden


def reference_outputs(
    source: dict, feeds: dict[str, np.ndarray], outputs: list[str], *, model: str, device: str = "cpu"
) -> dict:
    """The source run by TensorFlow in fp32 on `feeds` (presented layout; transposed back where tf2onnx does)."""
    if device != "cpu":  # tensorflow-cpu: no GPU build
        raise FactoryError(
            "golden outputs of TensorFlow sources are computed on the CPU only", model=model, key="golden_device"
        )
    tf = import_tensorflow()
    io = read_io(source["io"])
    transposed = {e["name"]: e["transpose_to_nchw"] for e in io["inputs"]}
    tf_feeds = {n: np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if transposed[n] else a for n, a in feeds.items()}
    fmt, path = source["format"], source["path"]
    allowed = source.get("allow_ops", ())
    if fmt in ("keras", "h5"):
        net = load_keras(path, model=model)
        fn = keras_function(tf, net, tf_feeds, outputs, model=model)
        concrete = fn.get_concrete_function(*(tf.constant(a) for a in tf_feeds.values()))
        refuse_unsafe_ops(concrete.graph.as_graph_def(), model=model, allowed=allowed)
        result = concrete(*(tf.constant(a) for a in tf_feeds.values()))
    elif fmt == "saved_model":
        signature = source.get("signature") or "serving_default"
        loaded, _why = restore_object_graph(tf, path)
        if loaded is None:
            with SignatureGraph(tf, path, signature, tf_feeds, outputs, model=model, allowed=allowed) as sg:
                result = sg.run(tf_feeds, outputs)  # as freeze did
        else:
            sig = signature_of(loaded, signature, model=model, path=path)
            refuse_unsafe_ops(sig.graph.as_graph_def(), model=model, allowed=allowed)
            _check_signature_names(sig, tf_feeds, outputs, model=model, path=path)
            r = sig(**{n: tf.constant(a) for n, a in tf_feeds.items()})
            result = [r[k] for k in outputs]
    else:
        graph, sess = tf1_session(tf, path, model=model)
        with sess:
            _refuse_tf1(tf.compat.v1, graph, outputs, model=model, allowed=allowed)
            result = sess.run(
                [graph.get_tensor_by_name(f"{n}:0") for n in outputs],
                {graph.get_tensor_by_name(f"{n}:0"): a for n, a in tf_feeds.items()},
            )
    arrays = [np.asarray(r) for r in result]
    return {n: a.astype(np.float32) if np.issubdtype(a.dtype, np.floating) else a for n, a in zip(outputs, arrays)}
