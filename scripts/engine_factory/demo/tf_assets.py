"""The demo zoo's TensorFlow models, made by the project itself from fixed seeds (no downloads).

`make_tf_asset(path)` writes one asset under artifacts/demo/ (scripts/engine_factory/demo/assets.py dispatches here):
    tf_cnn.keras        Keras 3 CNN on NHWC [batch, 32, 32, 3], 10 classes (the demo presents it as NCHW)
    tf_two_head.h5      Keras model saved as legacy HDF5: one image input, two outputs (logits, embedding)
    tf1_mlp.ckpt/       a TF1 checkpoint (model.ckpt.meta/.index/.data-*): placeholder `features` -> node `scores`
    <model>.calib.npz   calibration inputs in the layout the plan takes (tf_cnn: NCHW)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import atomic
from ..errors import FactoryError

# name -> (asset kind, input shapes without batch, in the layout the plan takes)
TF_DEMO_MODELS = {
    "tf_cnn": ("keras", {"x": (3, 32, 32)}),
    "tf_two_head": ("h5", {"image": (16, 16, 3)}),
    "tf1_mlp": ("ckpt", {"features": (16,)}),
}
CALIBRATION_SAMPLES = 64
STEPS = 30


def _tf():
    from ..frameworks.tensorflow import import_tensorflow as quiet_tf

    return quiet_tf()


def _cnn(keras, width: int = 32):  # ModelOpt skips fp8/int8 for <= 16 channels: keep 32
    L = keras.layers
    x = inp = keras.Input((32, 32, 3), name="x")
    for filters, stride in ((width, 1), (2 * width, 2)):
        x = L.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.ReLU()(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(10, name="logits")(x), name="tf_cnn")


def _two_head(keras):
    L = keras.layers
    inp = keras.Input((16, 16, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = L.GlobalAveragePooling2D()(x)
    embedding = L.Dense(16, name="embedding")(x)
    logits = L.Dense(5, name="logits")(L.ReLU()(embedding))
    return keras.Model(inp, [logits, embedding], name="tf_two_head")


def _labels(x: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """A rule a pooled CNN can learn: the arg-max of a fixed projection of per-channel means and spreads."""
    f = np.concatenate([x.mean((1, 2)), x.std((1, 2))], 1)
    return ((f - f.mean(0)) / (f.std(0) + 1e-6) @ projection).argmax(1)


def _train_keras(tf, keras, net, shape, steps: int = STEPS):
    """Adam steps on a learnable rule, so that outputs carry a signal (clear top-1 margins: int8 is judged on them)."""
    rng = np.random.default_rng(1)
    opt = keras.optimizers.Adam(1e-2)
    classes = net.outputs[0].shape[-1]
    projection = np.random.default_rng(7).standard_normal((2 * shape[-1], classes)).astype(np.float32)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function  # traced once: eager steps cost seconds here
    def step(x, y):
        with tf.GradientTape() as tape:
            out = net(x, training=True)
            loss = loss_fn(y, out[0] if isinstance(out, (list, tuple)) else out)
        opt.apply_gradients(zip(tape.gradient(loss, net.trainable_variables), net.trainable_variables))

    for _ in range(steps):
        x = rng.standard_normal((32, *shape)).astype(np.float32)
        step(x, _labels(x, projection))
    return net


def _save_keras(net, p: Path) -> None:
    with atomic.atomic_path(p) as tmp:  # keeps the suffix: Keras picks the format from it
        net.save(str(tmp))


def _tf1_checkpoint(tf, p: Path) -> None:
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(0)
        x = v1.placeholder(tf.float32, [None, 16], name="features")
        y = v1.placeholder(tf.int64, [None], name="labels")
        init = v1.glorot_uniform_initializer(seed=1)
        h = tf.nn.relu(
            tf.matmul(x, v1.get_variable("dense1/kernel", [16, 32], initializer=init))
            + v1.get_variable("dense1/bias", [32], initializer=v1.zeros_initializer())
        )
        scores = tf.identity(
            tf.matmul(h, v1.get_variable("dense2/kernel", [32, 4], initializer=init))
            + v1.get_variable("dense2/bias", [4], initializer=v1.zeros_initializer()),
            name="scores",
        )
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=scores))
        train = v1.train.AdamOptimizer(1e-2).minimize(loss)  # training ops stay in the meta graph, as users' do
        saver = v1.train.Saver(save_relative_paths=True)
        rng = np.random.default_rng(1)
        with v1.Session(graph=graph) as sess, atomic.atomic_path(p) as tmp:
            sess.run(v1.global_variables_initializer())
            for _ in range(STEPS):
                xs = rng.standard_normal((32, 16)).astype(np.float32)
                sess.run(train, {x: xs, y: xs[:, :4].argmax(1)})
            tmp.mkdir()
            saver.save(sess, str(tmp / "model.ckpt"))


def make_tf_asset(p: Path, name: str, kind: str) -> None:
    want, shapes = TF_DEMO_MODELS[name]
    if kind == "calib.npz":
        rng = np.random.default_rng(1234)
        arrays = {k: rng.standard_normal((CALIBRATION_SAMPLES, *s)).astype(np.float32) for k, s in shapes.items()}
        with atomic.atomic_path(p) as tmp:
            np.savez(tmp, **arrays)
        return
    if kind != want:
        raise FactoryError(f"the demo model '{name}' is made as '{name}.{want}', not '{p.name}'", path=str(p))
    tf = _tf()
    if kind == "ckpt":
        return _tf1_checkpoint(tf, p)
    import keras

    if name == "tf_cnn":  # seed 1: clear top-1 margins (>= 10 % of the logits' spread) on the seeded golden inputs
        keras.utils.set_random_seed(1)
        _save_keras(_train_keras(tf, keras, _cnn(keras), (32, 32, 3), steps=60), p)
    else:
        keras.utils.set_random_seed(0)
        _save_keras(_train_keras(tf, keras, _two_head(keras), (16, 16, 3)), p)
