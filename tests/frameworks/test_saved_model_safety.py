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
