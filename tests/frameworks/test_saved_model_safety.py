"""Issue 28 (6): a SavedModel's safety is judged on what its serving signature runs — the saver functions its
library holds (SaveV2, MergeV2Checkpoints; what tf.saved_model.save writes) are no refusal; a graph that calls them
still is. The SavedModel is written here with tf.Module + tf.saved_model.save."""

import os

import pytest

from engine_factory.errors import FactoryError
from engine_factory.frameworks.tensorflow import import_tensorflow, reachable_ops, refuse_unsafe_ops


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    tf = import_tensorflow()

    class Scorer(tf.Module):
        def __init__(self):
            self.w = tf.Variable(tf.ones([4, 3]))

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.matmul(x, self.w)}

    m = Scorer()
    path = tmp_path_factory.mktemp("sm") / "scorer"
    tf.saved_model.save(m, str(path), signatures={"serving_default": m.serve})
    return tf, str(path)


def _saver_functions(tf, path):
    """The library functions of the SavedModel that write checkpoints (tf.saved_model.save's traced save)."""
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        sm.ParseFromString(f.read())
    lib = sm.meta_graphs[0].graph_def.library.function
    return [f for f in lib if {"SaveV2", "MergeV2Checkpoints"} & {n.op for n in f.node_def}]


def test_saver_ops_the_signature_never_runs_are_no_refusal(saved):
    tf, path = saved
    sig = tf.saved_model.load(path).signatures["serving_default"]
    graph_def = sig.graph.as_graph_def()
    savers = _saver_functions(tf, path)
    assert savers, "tf.saved_model.save wrote no saver function: the test would prove nothing"
    graph_def.library.function.extend(savers)  # as a re-saved SavedModel's signature graph carries them
    assert "MatMul" in reachable_ops(graph_def)
    assert not {"SaveV2", "MergeV2Checkpoints"} & reachable_ops(graph_def)
    refuse_unsafe_ops(graph_def, model="scorer")  # no refusal
    # a node that calls the saver: refused, naming the op
    call = graph_def.node.add(name="save_call", op="StatefulPartitionedCall")
    call.attr["f"].func.name = savers[0].signature.name
    with pytest.raises(FactoryError, match="SaveV2"):
        refuse_unsafe_ops(graph_def, model="scorer")


def test_signature_freezes_without_variable_reads(saved, tmp_path):
    from engine_factory.frameworks.tensorflow import freeze_tf

    _, path = saved
    specs = {"x": {"shape": ["batch", 4], "min": [1, 4], "opt": [2, 4], "max": [4, 4], "dtype": "float32"}}
    facts = freeze_tf(
        path,
        str(tmp_path / "f.pb"),
        str(tmp_path / "io.json"),
        model="scorer",
        fmt="saved_model",
        input_specs=specs,
        outputs=["y"],
    )
    assert facts["variable_ops_left"] == 0


# ------------------------------------------------------------- Keras 2 era: an object graph this TensorFlow refuses
def keras2_era_saved_model(tf, path) -> str:
    """A SavedModel whose object graph carries an optimizer's slot variable, as TF 2.x/Keras 2 wrote them with the
    optimizer: this TensorFlow revives the optimizer as a plain object and fails on it (`'_UserObject' object has no
    attribute 'add_slot'`, what basic-pitch's SavedModel raises). The serving signature and its variables are fine."""
    import numpy as np
    from tensorflow.core.protobuf import saved_model_pb2

    class Net(tf.Module):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.w = tf.Variable(rng.standard_normal((4, 3)).astype(np.float32))
            self.b = tf.Variable(rng.standard_normal((3,)).astype(np.float32))
            self.optimizer = tf.Module()
            self.optimizer.m = tf.Variable(tf.zeros((4, 3)))

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.nn.relu(tf.matmul(x, self.w) + self.b), "s": tf.reduce_sum(x, axis=1, keepdims=True)}

    net = Net()
    tf.saved_model.save(net, str(path), signatures={"serving_default": net.serve})
    pb = os.path.join(path, "saved_model.pb")
    sm = saved_model_pb2.SavedModel()
    with open(pb, "rb") as f:
        sm.ParseFromString(f.read())
    nodes = sm.meta_graphs[0].object_graph_def.nodes
    child = {(i, c.local_name): c.node_id for i, n in enumerate(nodes) for c in n.children}
    opt = child[0, "optimizer"]
    slot = nodes[opt].slot_variables.add()
    slot.original_variable_node_id, slot.slot_name, slot.slot_variable_node_id = child[0, "w"], "m", child[opt, "m"]
    with open(pb, "wb") as f:
        f.write(sm.SerializeToString())
    return str(path)


SPECS = {"x": {"shape": ["batch", 4], "min": [1, 4], "opt": [2, 4], "max": [8, 4], "dtype": "float32"}}


def test_a_keras2_era_saved_model_is_frozen_by_its_signature(tmp_path):
    import numpy as np

    from engine_factory.frameworks.tensorflow import freeze_tf, reference_outputs

    tf = import_tensorflow()
    path = keras2_era_saved_model(tf, tmp_path / "keras2")
    with pytest.raises(AttributeError, match="add_slot"):  # what TensorFlow's own loader does with it
        tf.saved_model.load(path)
    facts = freeze_tf(
        path, str(tmp_path / "f.pb"), str(tmp_path / "io.json"), model="k2", fmt="saved_model", input_specs=SPECS,
        outputs=["y", "s"],
    )  # fmt: skip
    assert facts["loader"] == "signature graph" and "add_slot" in facts["why"], facts
    assert facts["variable_ops_left"] == 0 and [o["name"] for o in facts["outputs"]] == ["y", "s"]
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString((tmp_path / "f.pb").read_bytes())
    ops = {n.op for n in graph_def.node}
    assert not ops & {"ReadVariableOp", "VarHandleOp", "StatefulPartitionedCall"} and not graph_def.library.function
    # golden runs the same route: the variables' values, not zeros or an error
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    source = {"format": "saved_model", "path": path, "io": str(tmp_path / "io.json")}
    out = reference_outputs(source, {"x": x}, ["y", "s"], model="k2")
    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((3,)).astype(np.float32)
    np.testing.assert_allclose(out["y"], np.maximum(x @ w + b, 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["s"], x.sum(axis=1, keepdims=True))


def test_the_signature_route_refuses_unsafe_ops_before_loading(tmp_path):
    """Judged on the MetaGraph before the loader runs anything: a signature that writes a file is refused."""
    tf = import_tensorflow()

    class Writer(tf.Module):
        def __init__(self):
            self.optimizer = tf.Module()
            self.optimizer.m = tf.Variable(tf.zeros((4,)))
            self.w = tf.Variable(tf.ones((4,)))

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            tf.io.write_file(str(tmp_path / "pwned"), tf.strings.as_string(tf.reduce_sum(x)))
            return {"y": x * self.w}

    from engine_factory.frameworks.tensorflow import freeze_tf

    net = Writer()
    path = tmp_path / "writer"
    tf.saved_model.save(net, str(path), signatures={"serving_default": net.serve})
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((path / "saved_model.pb").read_bytes())
    nodes = sm.meta_graphs[0].object_graph_def.nodes
    child = {(i, c.local_name): c.node_id for i, n in enumerate(nodes) for c in n.children}
    slot = nodes[child[0, "optimizer"]].slot_variables.add()
    slot.original_variable_node_id, slot.slot_name = child[0, "w"], "m"
    slot.slot_variable_node_id = child[child[0, "optimizer"], "m"]
    (path / "saved_model.pb").write_bytes(sm.SerializeToString())
    with pytest.raises(FactoryError, match="WriteFile"):
        freeze_tf(
            str(path), str(tmp_path / "f.pb"), str(tmp_path / "io.json"), model="w", fmt="saved_model",
            input_specs=SPECS, outputs=["y"],
        )  # fmt: skip
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "f.pb").exists()


def test_the_frozen_signature_exports_to_onnx_that_matches(tmp_path):
    import numpy as np
    import onnxruntime as ort

    from engine_factory.frameworks.tensorflow import export_tf, freeze_tf, reference_outputs

    tf = import_tensorflow()
    path = keras2_era_saved_model(tf, tmp_path / "keras2")
    io = str(tmp_path / "io.json")
    freeze_tf(path, str(tmp_path / "f.pb"), io, model="k2", fmt="saved_model", input_specs=SPECS, outputs=["y", "s"])
    export_tf(str(tmp_path / "f.pb"), io, str(tmp_path / "m.onnx"), model="k2", input_specs=SPECS,
              outputs=["y", "s"], opset=17)  # fmt: skip
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"x": x})))
    want = reference_outputs({"format": "saved_model", "path": path, "io": io}, {"x": x}, ["y", "s"], model="k2")
    for name in ("y", "s"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6)
