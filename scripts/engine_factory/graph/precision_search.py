"""Mixed-precision search: which nodes to keep out of a quantized type so that the variant meets its tolerance.

The precision stage made the variant (trial 0: ModelOpt's own choice). When its parity against the golden outputs
(onnxruntime, CPU; the same comparison the parity file holds) misses the tolerance, this module

1. ranks the quantized nodes by sensitivity: for each node, the variant with *only that node's* Q/DQ inputs kept
   (every other node reads the float tensors again) is run on the golden inputs; its output error against golden is
   the node's isolated damage. One onnxruntime run per node, no new calibration;
2. keeps the most sensitive prefix out of quantization (ModelOpt's `nodes_to_exclude`, one ModelOpt run per
   trial): prefix sizes 1, 2, 4, ... until a trial passes, then bisection down to the smallest passing prefix, then
   (budget left) each kept node tried back in, least sensitive first, so no single kept node is superfluous;
3. stops at the setting's `budget_s` (wall time) or `max_trials`.

Deterministic: the golden inputs are seeded and hashed, ModelOpt's calibration is deterministic on the same data,
and ties in the ranking break by graph order. The setting is part of the precision job's tracked settings, so an
unchanged rerun runs nothing (and so searches nothing).

A trial passes when its parity passes and the variant is still what its label says (at least one layer in the
quantized type: keeping everything out is no int8 plan). When no trial passes within the budget, the result is the
most accurate trial, the search's status is `fail`, and `would_need` names the nodes it would try next.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np

from ..outcomes import Outcome
from ..tensors import compare_outputs, load_golden, onnx_parity, output_metrics, run_onnxruntime
from .variant import LOW_TYPES, label_problem

SEARCH_DEFAULTS = {"fallback": "fp32", "budget_s": 300, "max_trials": 24}


def search_variant(
    first,
    *,
    precision: str,
    tool: str,
    searchable: bool,
    trial,
    source,
    golden_path,
    tolerance: dict,
    settings: dict,
    describe,
    first_seconds: float = 0.0,
) -> tuple[Path, dict]:
    """The variant to write and the search's facts. `first`: trial 0's file; `trial(exclude, name) -> path` makes
    one variant with `exclude` kept out of `precision`; `describe(path)` gives its facts (variant.describe_variant)."""
    settings = {**SEARCH_DEFAULTS, **settings}
    t0 = time.perf_counter()
    state = _Search(precision, golden_path, tolerance, describe, settings, t0, source)
    base = state.record(first, [], "trial 0: the tool's own choice", seconds=first_seconds)
    if base["passes"]:
        return first, state.facts("not-needed", first)
    if base["status"] == Outcome.PASS and base["label_problem"]:  # within tolerance, but not in the precision at all
        return first, state.facts(
            Outcome.NOT_RUN, first, reason=f"{base['label_problem']}; keeping nodes out of {precision} cannot help"
        )
    if not searchable:
        return first, state.facts(
            Outcome.NOT_RUN,
            first,
            reason=f"the variant was made by {tool}, which the search does not drive (its first choice failed)",
        )
    ranking = rank_nodes(first, source, golden_path, precision, deadline=t0 + settings["budget_s"])
    state.ranking = ranking
    state.op_types = _op_types(source)
    groups = [r.get("keeps") or [r["node"]] for r in ranking]  # what keeping each candidate out takes
    if not groups:  # e.g. "fp8 requested, 0 of 4 layers quantized": keeping nodes out cannot help
        return first, state.facts(
            Outcome.NOT_RUN, first, reason=f"the tool quantized no node, so there is none to keep out of {precision}"
        )

    def union(gs) -> list[str]:
        return list(dict.fromkeys(n for g in gs for n in g))

    def attempt(gs, why):
        exclude = union(gs)
        seen = next((t for t in state.trials if sorted(t["excluded"]) == sorted(exclude)), None)
        if seen is not None:  # the same set again (a prune back to a prefix tried before): its result, no new trial
            return seen["passes"]
        if not state.can_try():
            return None
        try:
            path = trial(exclude, f"trial-{len(state.trials)}")
        except Exception as e:  # a failed trial is recorded, not fatal: the search goes on
            state.trials.append(
                {
                    "trial": len(state.trials),
                    "excluded": exclude,
                    "why": why,
                    "status": "error",
                    "reason": f"{type(e).__name__}: {str(e)[-300:]}",
                    "seconds": 0.0,
                    "passes": False,
                    "accuracy": {},
                    "quantized_layers": None,
                }
            )
            return False
        return state.record(path, exclude, why)["passes"]

    # 1. doubling over the ranked prefix; 2. bisection down to the smallest passing prefix
    failing, passing, k, out_of_budget = 0, None, 1, False
    while k <= len(groups):
        ok = attempt(groups[:k], f"keep the {k} most sensitive")
        if ok is None:
            out_of_budget = True
            break
        if ok:
            passing = k
            break
        failing = k
        if k == len(groups):
            break
        k = min(2 * k, len(groups))
    while passing is not None and passing - failing > 1:
        mid = (failing + passing) // 2
        ok = attempt(groups[:mid], f"bisect: keep the {mid} most sensitive")
        if ok is None:
            break
        failing, passing = (failing, mid) if ok else (mid, passing)
    if passing is None:
        nxt = union(groups[:k]) if out_of_budget else union(groups)
        status_reason = (
            "the budget ran out"
            if out_of_budget
            else f"even with all {len(groups)} candidate nodes kept in {settings['fallback']} the variant "
            "misses its tolerance"
        )
        best = state.best()
        return best["path"], state.facts(Outcome.FAIL, best["path"], reason=status_reason, would_need=nxt)
    # 3. prune: each kept candidate back into the low precision, least sensitive first
    kept = list(groups[:passing])
    for g in reversed(groups[:passing]):
        if len(kept) == 1:
            break
        candidate = [x for x in kept if x is not g]
        ok = attempt(candidate, f"prune: {', '.join(g)} back in {precision}")
        if ok is None:
            break
        if ok:
            kept = candidate
    kept = union(kept)
    chosen = next(t for t in reversed(state.trials) if t["passes"] and t["excluded"] == kept)
    return chosen["path"], state.facts(Outcome.PASS, chosen["path"])


class _Search:
    def __init__(self, precision, golden_path, tolerance, describe, settings, t0, source):
        self.precision, self.golden_path, self.tolerance, self.source = precision, golden_path, tolerance, source
        self.describe, self.settings, self.t0 = describe, settings, t0
        self.trials: list[dict] = []
        self.ranking: list[dict] = []
        self.op_types: dict[str, str] = {}  # node name -> op type, for the kept nodes' summary
        self.last = t0

    def can_try(self) -> bool:
        """Within max_trials, and the next trial (as long as the slowest so far) ends within the budget."""
        if len(self.trials) - 1 >= self.settings["max_trials"]:  # trial 0 is the variant made anyway
            return False
        slowest = max((t["seconds"] for t in self.trials), default=0.0)
        return time.perf_counter() - self.t0 + slowest <= self.settings["budget_s"]

    def record(self, path, exclude, why, seconds: float | None = None) -> dict:
        parity = onnx_parity(str(path), self.golden_path, self.tolerance)
        if self.precision in LOW_TYPES and parity["status"] in (Outcome.PASS, Outcome.NOT_RUN):
            # onnxruntime's CPU provider runs fp16/bf16 ops that lack a kernel in fp32 and drops the Casts
            # around them, so an overflow does not show there, and it cannot run some at all (bf16 Conv, Sub):
            # judge the emulation too (emulated_low_precision)
            try:
                emulated = emulated_parity(path, self.source, self.golden_path, self.tolerance, self.precision)
            except Exception:  # the emulation cannot rebuild this model: onnxruntime's judgement stands
                emulated = {"status": Outcome.NOT_RUN}
            ort_not_run = parity["status"] == Outcome.NOT_RUN
            if emulated["status"] == Outcome.FAIL or (ort_not_run and emulated["status"] == Outcome.PASS):
                parity = {
                    **emulated,
                    "reason": f"emulated {self.precision}: {emulated.get('reason', '')}"
                    + (f" (onnxruntime: {parity['reason'][:120]})" if ort_not_run else ""),
                }
        facts = self.describe(path)
        problem = label_problem({**facts, "precision": self.precision})
        now = time.perf_counter()
        t = {
            "trial": len(self.trials),
            "excluded": list(exclude),
            "why": why,
            "status": parity["status"],
            "reason": problem or parity.get("reason", ""),
            "accuracy": {
                name: {m: o[m] for m in ("cosine", "top1_agreement", "max_abs") if m in o}
                for name, o in (parity.get("outputs") or {}).items()
            },
            "quantized_layers": facts.get("quantized_layers"),
            "layers": facts.get("layers"),
            "seconds": round(now - self.last if seconds is None else seconds, 2),
            "passes": parity["status"] == Outcome.PASS and not problem,
            "label_problem": problem,
            "path": path,
        }
        self.last = now
        self.trials.append(t)
        return t

    def best(self) -> dict:
        """The most accurate trial that is still what its label says (else the most accurate one)."""
        ran = [t for t in self.trials if t["status"] != "error"]
        labelled = [t for t in ran if t["quantized_layers"]] or ran
        return max(labelled, key=lambda t: (score(t), -t["trial"]))

    def facts(self, status, path, *, reason="", would_need=None) -> dict:
        chosen = next((t for t in reversed(self.trials) if t.get("path") == path), None)
        out = {
            "status": status,
            "precision": self.precision,
            "settings": self.settings,
            "trials": len(self.trials) - 1,  # trial 0 is the variant the stage makes anyway
            "seconds": round(time.perf_counter() - self.t0, 2),
            "steps": [{k: v for k, v in t.items() if k != "path"} for t in self.trials],
            "kept": {self.settings["fallback"]: chosen["excluded"] if chosen else []},
            "kept_op_types": dict(Counter(self.op_types.get(n, "?") for n in (chosen or {}).get("excluded", []))),
            "chosen_trial": chosen["trial"] if chosen else None,
            "accuracy": chosen["accuracy"] if chosen else {},
            "reason": reason,
        }
        if self.ranking:
            out["sensitivity"] = self.ranking
        if would_need is not None:
            out["would_need"] = {self.settings["fallback"]: list(would_need)}
        return out


def _op_types(source) -> dict[str, str]:
    import onnx

    return {n.name: n.op_type for n in onnx.load(str(source), load_external_data=False).graph.node}


def score(t: dict) -> float:
    """One number per trial to compare them: the worst cosine over its outputs (top-1 agreement where lower)."""
    values = [
        min(v for k, v in o.items() if k in ("cosine", "top1_agreement"))
        for o in t["accuracy"].values()
        if any(k in o for k in ("cosine", "top1_agreement"))
    ]
    return min(values) if values else float("-inf")


def summary(search: dict) -> str:
    """One line for parity reasons and the report."""
    kept = next(iter(search["kept"].items()))
    acc = search.get("accuracy") or {}
    cos = ", ".join(f"{k} cosine {v['cosine']:.4f}" for k, v in acc.items() if "cosine" in v)
    if search["status"] == "not-needed":
        return "precision search: not needed (the variant meets its tolerance)"
    if search["status"] == Outcome.PASS:
        return (
            f"precision search: kept {len(kept[1])} node(s) in {kept[0]} ({', '.join(kept[1][:6])}) after "
            f"{search['trials']} trial(s), {search['seconds']:.1f} s; {cos}"
        )
    if search["status"] == Outcome.NOT_RUN:
        return f"precision search: not run ({search['reason']})"
    need = next(iter((search.get("would_need") or {None: []}).items()))
    return (
        f"precision search failed after {search['trials']} trial(s), {search['seconds']:.1f} s "
        f"({search['reason']}); best: {cos or 'no measurement'}"
        + (
            f"; would need {need[0]} for {', '.join(need[1][:8])}" + (" ..." if len(need[1]) > 8 else "")
            if need[1]
            else ""
        )
    )


# ---------------------------------------------------------------- sensitivity


def rank_nodes(variant, source, golden_path, precision: str = "int8", *, deadline: float | None = None) -> list[dict]:
    """The candidate nodes, most sensitive first, by their isolated damage: the output error against the golden
    outputs (on the golden inputs) of a model where only that node is in `precision`.

    int8/fp8: the variant's quantized nodes (those reading a Q -> DQ pair); the model is the variant with every other
    node reading the float tensors again. fp16/bf16: the source's computing nodes; the model is the fp32 source
    with that node's outputs rounded to fp16/bf16 (Cast there and back: its range and its rounding). An output that
    turns non-finite where golden is finite (an fp16 overflow) is the worst damage (2.0). Nodes left unranked when
    `deadline` passes follow in graph order, damage unknown (None)."""
    import onnx

    inputs, expected = load_golden(golden_path)
    if precision in LOW_TYPES:
        proto = onnx.load(str(source))
        consumers: dict[str, list[str]] = {}
        for n in proto.graph.node:
            for name in n.input:
                consumers.setdefault(name, []).append(n.name)
        ranking = []
        for tensor, producer in _low_precision_candidates(proto):
            readers = [c for c in consumers.get(tensor, ()) if c]
            # a tensor stays fp32 only if its producer and its readers do (AutoCast casts between fp32 and fp16)
            keeps = list(dict.fromkeys([*([producer.name] if producer is not None else []), *readers]))
            if not keeps:
                continue
            entry = {
                "node": producer.name if producer is not None else f"input {tensor}",
                "op_type": producer.op_type if producer is not None else "graph input",
                "tensor": tensor,
                "keeps": keeps,
                "damage": None,
            }
            if deadline is None or time.perf_counter() < deadline:
                rounded = _rounded(proto, tensor, LOW_TYPES[precision])
                entry.update(_damage(run_onnxruntime(rounded, inputs), expected))
            ranking.append(entry)
    else:
        proto = onnx.load(str(variant))
        floats = _float_inputs(proto)  # node index -> {input slot: the float tensor its Q/DQ pair quantizes}
        ranking = []
        for i, n in enumerate(proto.graph.node):
            if i in floats and n.name:
                entry = {"node": n.name, "op_type": n.op_type, "damage": None}
                if deadline is None or time.perf_counter() < deadline:
                    entry.update(_damage(run_onnxruntime(_only_quantized(proto, floats, i), inputs), expected))
                ranking.append(entry)
    ranking.sort(key=lambda r: -(r["damage"] if r["damage"] is not None else -1.0))  # stable: ties in graph order
    return ranking


SHAPE_OPS = {
    "Shape",
    "Constant",
    "ConstantOfShape",
    "Reshape",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Gather",
    "Concat",
    "Slice",
    "Identity",
    "Flatten",
    "Cast",
    "Expand",
    "Range",
    "Size",
    "Split",
}


def _damage(actual: dict, expected: dict) -> dict:
    metrics = [output_metrics(actual[k], v) for k, v in expected.items() if k in actual]
    if any(m.get("nonfinite_mismatch") for m in metrics):
        return {"damage": 2.0, "isolated_cosine": None, "nonfinite": True}
    worst = min((m.get("cosine", 0.0) for m in metrics), default=0.0)
    return {"damage": round(float(1.0 - worst), 8), "isolated_cosine": round(float(worst), 6)}


def _only_quantized(proto, floats: dict, i: int):
    import onnx

    isolated = onnx.ModelProto()
    isolated.CopyFrom(proto)
    for j, slots in floats.items():
        if j != i:
            for slot, name in slots.items():
                isolated.graph.node[j].input[slot] = name
    return isolated


def _low_precision_candidates(proto) -> list[tuple[str, object]]:
    """(tensor, producer node or None) of the float32 graph inputs and of the float32 outputs of named computing
    nodes (not shape plumbing), in graph order (types by shape inference)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(proto)
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output)
    }
    inits = {i.name for i in proto.graph.initializer}
    out = [(i.name, None) for i in proto.graph.input if i.name not in inits and types.get(i.name) == 1]
    for n in proto.graph.node:
        if n.name and n.op_type not in SHAPE_OPS:
            out += [(o, n) for o in n.output if types.get(o) == 1]
    return out


def low_precision_overflow(variant, source, golden_path, tolerance: dict, precision: str) -> dict | None:
    """For an fp16/bf16 variant: the emulated parity when the emulation turns an output non-finite where golden is
    finite (an overflow the plan would show and onnxruntime's CPU run hides), with a reason; else None."""
    if precision not in LOW_TYPES:
        return None
    try:
        result = emulated_parity(variant, source, golden_path, tolerance, precision)
    except Exception:  # a model the emulation cannot rebuild (unmatched names, an op without a float kernel):
        return None  # no judgement; onnxruntime's own parity stands
    bad = {k: o["nonfinite_mismatch"] for k, o in result.get("outputs", {}).items() if o.get("nonfinite_mismatch")}
    if not bad:
        return None
    return {
        **result,
        "status": Outcome.FAIL,
        "reason": f"emulated {precision} overflows: "
        + ", ".join(f"{k}: {v} non-finite value(s)" for k, v in bad.items())
        + " where golden is finite (onnxruntime's CPU run computes such ops in fp32 and hides it)",
    }


def emulated_parity(variant, source, golden_path, tolerance: dict, precision: str) -> dict:
    """Parity of an fp16/bf16 variant emulated in fp32 (emulated_low_precision) against the golden outputs."""
    import onnx

    inputs, expected = load_golden(golden_path)
    model = emulated_low_precision(onnx.load(str(variant)), onnx.load(str(source)), LOW_TYPES[precision])
    return compare_outputs(run_onnxruntime(model, inputs), expected, tolerance)


def emulated_low_precision(variant, source, to: int):
    """The fp32 `source` computing what the AutoCast `variant` computes in the low type `to`: every tensor the
    variant holds in that type (outputs of its low-precision nodes, the fp32 tensors it casts down, its converted
    weights) rounded to it (Cast there and back, which onnxruntime keeps in an fp32 graph), the arithmetic in fp32
    (TensorRT accumulates fp16 GEMMs in fp32 too). A tensor is rounded for all its readers."""
    import onnx
    from onnx import numpy_helper

    inferred = onnx.shape_inference.infer_shapes(variant)
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.graph.value_info, *inferred.graph.output)}
    low_inits = {i.name for i in variant.graph.initializer if i.data_type == to}
    names = {o for n in source.graph.node for o in n.output} | {i.name for i in source.graph.input}
    rounded = []
    for n in variant.graph.node:
        if n.op_type == "Cast":
            if any(a.name == "to" and a.i == to for a in n.attribute) and n.input[0] in names:
                rounded.append(n.input[0])
        else:
            rounded += [o for o in n.output if types.get(o) == to and o in names]
    m = onnx.ModelProto()
    m.CopyFrom(source)
    low = {10: np.float16}.get(to)
    for init in m.graph.initializer:
        if init.name in low_inits and init.data_type == 1:
            a = numpy_helper.to_array(init)
            a = a.astype(low).astype(np.float32) if low else _round_bf16(a)
            init.CopyFrom(numpy_helper.from_array(a, init.name))
    for tensor in dict.fromkeys(rounded):
        m = _rounded(m, tensor, to)
    return m


def _round_bf16(a: np.ndarray) -> np.ndarray:
    """float32 values rounded to bfloat16 (nearest even), as float32."""
    bits = np.ascontiguousarray(a, np.float32).view(np.uint32)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.astype(np.uint32).view(np.float32)


def _rounded(proto, tensor: str, to: int):
    """A copy of `proto` where `tensor` passes through Cast(to) -> Cast(float) before its readers (and before the
    graph's output of that name): its range and rounding in the low type, everything else in fp32."""
    import onnx
    from onnx import helper

    m = onnx.ModelProto()
    m.CopyFrom(proto)
    nodes = list(m.graph.node)
    at = next((k + 1 for k, n in enumerate(nodes) if tensor in n.output), 0)
    if tensor in {o.name for o in m.graph.output}:  # keep the output's name: its producer writes a renamed tensor
        for n in nodes:
            n.output[:] = [f"{tensor}__raw" if o == tensor else o for o in n.output]
            n.input[:] = [f"{tensor}__raw" if i == tensor else i for i in n.input]
        source, target = f"{tensor}__raw", tensor
    else:
        for n in nodes:
            n.input[:] = [f"{tensor}__rounded" if i == tensor else i for i in n.input]
        source, target = tensor, f"{tensor}__rounded"
    casts = [
        helper.make_node("Cast", [source], [f"{tensor}__low"], to=to),
        helper.make_node("Cast", [f"{tensor}__low"], [target], to=1),
    ]
    m.graph.ClearField("node")
    m.graph.node.extend(nodes[:at] + casts + nodes[at:])
    return m


def _float_inputs(proto) -> dict[int, dict[int, str]]:
    producers = {o: n for n in proto.graph.node for o in n.output}
    out: dict[int, dict[int, str]] = {}
    for i, n in enumerate(proto.graph.node):
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for slot, name in enumerate(n.input):
            dq = producers.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producers.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                out.setdefault(i, {})[slot] = q.input[0]
    return out
