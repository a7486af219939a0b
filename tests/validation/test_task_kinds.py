"""Outputs judged by their task (issue 26, point 6): boxes by absolute error, embeddings by cosine, dense maps with a
share of values allowed off, classifiers by top-k; kinds inferred where safe and set in the config."""

import numpy as np

from engine_factory.config import model_settings
from engine_factory.precisions import DEFAULT_TOLERANCES
from engine_factory.tensors import compare_outputs, infer_kind

INT8 = DEFAULT_TOLERANCES["int8"]
FP16 = DEFAULT_TOLERANCES["fp16"]


def _boxes(rng):
    """A detector's [batch, N, 4] boxes in pixels of a 640-px image."""
    xy = rng.uniform(0, 560, size=(2, 50, 2))
    return np.concatenate([xy, xy + rng.uniform(10, 80, size=(2, 50, 2))], axis=-1).astype(np.float32)


def test_a_large_box_error_fails_though_cosine_passes():
    golden = {"boxes": _boxes(np.random.default_rng(0))}
    off = golden["boxes"].copy()
    off[0, 3, 2] += 98.0  # one box edge 98 px off: cosine still ~0.9999
    r = compare_outputs({"boxes": off}, golden, INT8)
    m = r["outputs"]["boxes"]
    assert m["cosine"] > INT8["min_cosine"] and m["kind"] == "boxes" and m["kind_source"] == "inferred"
    assert r["status"] == "fail" and "max abs error 98" in r["reason"]
    near = {"boxes": golden["boxes"] + 0.5}  # half a pixel everywhere: within 1 % of the spread
    assert compare_outputs(near, golden, INT8)["status"] == "pass"
    # in the output's units, from the config
    assert compare_outputs(near, golden, {**INT8, "outputs": {"boxes": {"max_abs_error": 0.25}}})["status"] == "fail"


def test_an_embedding_is_judged_by_cosine_not_top1():
    rng = np.random.default_rng(1)
    e = rng.standard_normal((8, 32)).astype(np.float32)
    golden = {"embedding": e}
    noisy = {"embedding": e + 0.05 * rng.standard_normal(e.shape).astype(np.float32)}  # arg-max moves, cosine ~0.999
    r = compare_outputs(noisy, golden, INT8)
    assert r["outputs"]["embedding"]["kind"] == "embedding"
    assert r["status"] == "pass", r["reason"]
    # an unnamed L2-normalised [batch, 32] output is an embedding too
    unit = e / np.linalg.norm(e, axis=1, keepdims=True)
    assert infer_kind("out0", unit) == "embedding"
    # the same tensor called a classifier in the config fails on top-1
    flipped = {"embedding": -e}
    assert (
        compare_outputs(flipped, golden, {**INT8, "outputs": {"embedding": {"kind": "classifier"}}})["status"] == "fail"
    )


def test_a_dense_map_with_a_few_values_off():
    rng = np.random.default_rng(2)
    g = rng.uniform(0, 1, size=(1, 1, 640, 640)).astype(np.float32)
    off = g.copy()
    off.flat[rng.choice(g.size, 388, replace=False)] += 0.5  # 388 of 409,600 values (0.095 %)
    golden = {"maps": g}
    r = compare_outputs({"maps": off}, golden, FP16)
    assert r["outputs"]["maps"]["kind"] == "dense" and r["status"] == "pass", r["reason"]
    assert abs(r["outputs"]["maps"]["mismatch_fraction"] - 388 / g.size) < 1e-9
    fp32 = DEFAULT_TOLERANCES["fp32"]  # fp32 allows no share off by default
    assert compare_outputs({"maps": off}, golden, {**fp32, "min_cosine": 0.99})["status"] == "fail"
    strict = {**FP16, "outputs": {"maps": {"max_mismatch_fraction": 0}}}
    r = compare_outputs({"maps": off}, golden, strict)
    assert r["status"] == "fail" and "388 of 409600 values" in r["reason"]
    many = g.copy()
    many.flat[: g.size // 50] += 0.5  # 2 %: beyond the default 0.1 %
    assert compare_outputs({"maps": many}, golden, FP16)["status"] == "fail"


def test_classifier_top_k():
    g = np.array([[3.0, 2.9, 0.0, -1.0], [0.0, 1.0, 2.0, 1.9]], dtype=np.float32)
    swapped = g[:, [1, 0, 2, 3]].copy()
    swapped[1] = g[1, [0, 1, 3, 2]]  # the top two swap in each row
    assert infer_kind("logits", g) == "classifier"
    assert compare_outputs({"logits": swapped}, {"logits": g}, INT8)["status"] == "fail"
    top2 = {**INT8, "outputs": {"logits": {"top_k": 2}}}
    r = compare_outputs({"logits": swapped}, {"logits": g}, top2)
    assert r["status"] == "pass" and r["outputs"]["logits"]["top2_agreement"] == 1.0


def test_output_kinds_from_the_config_reach_every_precision():
    cfg = {
        "models": {"m": {"output_kinds": {"feat": "embedding"}, "tolerances": {"int8": {"outputs": {"feat": {}}}}}},
        "tolerances": {},
        "precisions": ["fp32", "int8"],
        "simplifier": "onnxslim",
        "opset": 18,
        "build": {},
        "golden_seed": 0,
    }
    tol = model_settings(cfg, "m")["tolerances"]
    assert tol["fp32"]["outputs"]["feat"]["kind"] == "embedding"
    assert tol["int8"]["outputs"]["feat"]["kind"] == "embedding"
