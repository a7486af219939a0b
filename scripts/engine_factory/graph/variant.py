"""What a precision variant holds, and whether it is what its label says: read from the ONNX file alone.

The precision stage (precision.py), its search (precision_search.py), parity and the report ask these; none of them
makes a variant, so both the maker and the search stand on this room.
"""

from __future__ import annotations

from collections import Counter

from ..precisions import QUANTIZED
from .onnx_io import model_opset

LOW_TYPES = {"fp16": 10, "bf16": 16}  # onnx.TensorProto.FLOAT16, BFLOAT16
# The layers whose precision a variant's label is about: every op with weights that a quantizer or TensorRT computes in
# the low type — convolutions, matrix products, recurrent cells and attention (an LSTM model's int8 once said
# "1 of 1 layers quantized" while its three LSTMs stayed fp32: they were not counted).
LAYER_OPS = (
    "Conv",
    "ConvTranspose",
    "Gemm",
    "MatMul",
    "Einsum",
    "LSTM",
    "GRU",
    "RNN",
    "Attention",
    "MultiHeadAttention",
)


def quantized_layers(proto) -> dict:
    """The variant's layers (LAYER_OPS nodes) and which of them read a DequantizeLinear output (computed in the
    quantized type by a strongly typed build)."""
    dq_outputs = {o for n in proto.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    layers = [n for n in proto.graph.node if n.op_type in LAYER_OPS]
    quantized = [n.name for n in layers if any(i in dq_outputs for i in n.input)]
    return {
        "layers": len(layers),
        "quantized_layers": len(quantized),
        "quantized": quantized,
        "not_quantized": [n.name for n in layers if n.name not in set(quantized)],
    }


def label_problem(facts: dict) -> str | None:
    """Why a variant is not what its label says (no layer in its precision), or None: what parity, validation and
    the report then say instead of a silent pass."""
    precision = facts.get("precision")
    if precision in QUANTIZED and "layers" in facts:
        if facts["quantized_layers"] == 0 and (facts["layers"] or not facts.get("dequantize_nodes")):
            return (
                f"{precision} requested, 0 of {facts['layers']} layers quantized: the variant computes in "
                f"{facts.get('fallback', 'fp32')}"
            )
    if precision in LOW_TYPES and facts.get("low_precision_tensors") == 0:
        return f"{precision} requested, no {precision} tensor in the variant: it computes in fp32"
    return None


def describe_variant(path, precision: str, *, fallback: str = "fp32") -> dict:
    """What the variant holds: opset, op counts, initializer dtypes, Q/DQ nodes and their dtype, how many of its
    layers are quantized (and which are not); warnings when nothing was converted (ModelOpt skips layers it deems
    not worth it, e.g. fp8 convs with <= 16 channels, Gemms with K or N below 16)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    name = onnx.TensorProto.DataType.Name
    ops = Counter(n.op_type for n in proto.graph.node)
    inits = Counter(name(i.data_type) for i in proto.graph.initializer)
    facts = {
        "opset": model_opset(proto),
        "nodes": len(proto.graph.node),
        "initializer_dtypes": dict(inits),
        "warnings": [],
    }
    if precision in LOW_TYPES:
        low = sum(i.data_type == LOW_TYPES[precision] for i in proto.graph.initializer) + sum(
            1
            for n in proto.graph.node
            if n.op_type == "Cast" and any(a.name == "to" and a.i == LOW_TYPES[precision] for a in n.attribute)
        )
        facts["low_precision_tensors"] = low  # none: label_problem's warning below says so
    else:
        inits_by_name = {i.name: i for i in proto.graph.initializer}
        qtypes = Counter()
        for n in proto.graph.node:
            if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in inits_by_name:
                qtypes[name(inits_by_name[n.input[2]].data_type)] += 1  # the zero point carries the type
        facts.update(
            quantize_nodes=ops["QuantizeLinear"],
            dequantize_nodes=ops["DequantizeLinear"],
            quantized_dtypes=dict(qtypes),
            fallback=fallback,
            **quantized_layers(proto),
        )
        if not ops["DequantizeLinear"]:
            facts["warnings"].append(f"no Q/DQ node in the result: the tool found no layer worth {precision}")
        elif facts["not_quantized"]:
            facts["warnings"].append(
                f"{facts['quantized_layers']} of {facts['layers']} layers quantized; in "
                f"{fallback}: {', '.join(facts['not_quantized'][:8])}"
                + (" ..." if len(facts["not_quantized"]) > 8 else "")
            )
    problem = label_problem({**facts, "precision": precision})
    if problem and problem not in facts["warnings"]:
        facts["warnings"].insert(0, problem)
    return facts
