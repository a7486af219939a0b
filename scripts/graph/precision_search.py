"""Mixed-precision search: which nodes to keep out of a quantized type so that the variant meets its tolerance.

The precision stage made the variant (trial 0: ModelOpt's own choice). When its parity against the golden outputs
(onnxruntime, CPU; the same comparison the parity file holds) misses the tolerance, this module

1. ranks the quantized nodes by sensitivity: for each node, the variant with *only that node's* Q/DQ inputs kept
   (every other node reads the float tensors again) is run on the golden inputs; its output error against golden is
   the node's isolated damage. One onnxruntime run per node, no new calibration;
2. keeps the most sensitive prefix out of quantization (ModelOpt's `nodes_to_exclude`, one ModelOpt child per
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
from pathlib import Path

import numpy as np

SEARCH_DEFAULTS = {"fallback": "fp32", "budget_s": 300, "max_trials": 24}


def search_variant(first, *, precision: str, tool: str, searchable: bool, trial, source, golden_path,
                   tolerance: dict, settings: dict, describe, first_seconds: float = 0.0) -> tuple[Path, dict]:
    """The variant to write and the search's facts. `first`: trial 0's file; `trial(exclude, name) -> path` makes
    one variant with `exclude` kept out of `precision`; `describe(path)` gives its facts (precision.describe_variant)."""
    settings = {**SEARCH_DEFAULTS, **settings}
    t0 = time.perf_counter()
    state = _Search(precision, golden_path, tolerance, describe, settings, t0)
    base = state.record(first, [], "trial 0: the tool's own choice", seconds=first_seconds)
    if base["passes"]:
        return first, state.facts("not-needed", first)
    if not searchable:
        return first, state.facts("not-run", first, reason=f"the variant was made by {tool}, which the search "
                                                           "does not drive (its first choice failed)")
    ranking = rank_nodes(first, source, golden_path)
    state.ranking = ranking
    names = [r["node"] for r in ranking]
    if not names:  # e.g. "fp8 requested, 0 of 4 layers quantized": keeping nodes out cannot help
        return first, state.facts("not-run", first, reason=f"the tool quantized no node, so there is none to keep "
                                                           f"out of {precision}")

    def attempt(exclude, why):
        if not state.can_try():
            return None
        try:
            path = trial(exclude, f"trial-{len(state.trials)}")
        except Exception as e:  # a failed trial is recorded, not fatal: the search goes on
            state.trials.append({"trial": len(state.trials), "excluded": list(exclude), "why": why,
                                 "status": "error", "reason": f"{type(e).__name__}: {str(e)[-300:]}",
                                 "seconds": 0.0, "passes": False})
            return False
        return state.record(path, exclude, why)["passes"]

    # 1. doubling over the ranked prefix; 2. bisection down to the smallest passing prefix
    failing, passing, k = 0, None, 1
    while k <= len(names):
        ok = attempt(names[:k], f"keep the {k} most sensitive")
        if ok is None:
            break
        if ok:
            passing = k
            break
        failing = k
        if k == len(names):
            break
        k = min(2 * k, len(names))
    while passing is not None and passing - failing > 1:
        mid = (failing + passing) // 2
        ok = attempt(names[:mid], f"bisect: keep the {mid} most sensitive")
        if ok is None:
            break
        failing, passing = (failing, mid) if ok else (mid, passing)
    if passing is None:
        nxt = names[:k] if k <= len(names) and failing < len(names) else names
        status_reason = ("the budget ran out" if not state.can_try() else
                         f"even with all {len(names)} quantized nodes kept in {settings['fallback']} the variant "
                         "misses its tolerance")
        best = state.best()
        return best["path"], state.facts("fail", best["path"], reason=status_reason, would_need=nxt)
    # 3. prune: each kept node back into the quantized type, least sensitive first
    kept = list(names[:passing])
    for node in reversed(names[:passing]):
        if len(kept) == 1:
            break
        candidate = [n for n in kept if n != node]
        ok = attempt(candidate, f"prune: {node} back in {precision}")
        if ok is None:
            break
        if ok:
            kept = candidate
    chosen = next(t for t in reversed(state.trials) if t["passes"] and t["excluded"] == kept)
    return chosen["path"], state.facts("pass", chosen["path"])


class _Search:
    def __init__(self, precision, golden_path, tolerance, describe, settings, t0):
        self.precision, self.golden_path, self.tolerance = precision, golden_path, tolerance
        self.describe, self.settings, self.t0 = describe, settings, t0
        self.trials: list[dict] = []
        self.ranking: list[dict] = []
        self.last = t0

    def can_try(self) -> bool:
        """Within max_trials, and the next trial (as long as the slowest so far) ends within the budget."""
        if len(self.trials) - 1 >= self.settings["max_trials"]:  # trial 0 is the variant made anyway
            return False
        slowest = max((t["seconds"] for t in self.trials), default=0.0)
        return time.perf_counter() - self.t0 + slowest <= self.settings["budget_s"]

    def record(self, path, exclude, why, seconds: float | None = None) -> dict:
        from ..validation.validate import onnx_parity
        from .precision import label_problem

        parity = onnx_parity(str(path), self.golden_path, self.tolerance)
        facts = self.describe(path)
        problem = label_problem({**facts, "precision": self.precision})
        now = time.perf_counter()
        t = {"trial": len(self.trials), "excluded": list(exclude), "why": why, "status": parity["status"],
             "reason": problem or parity.get("reason", ""),
             "accuracy": {name: {m: o[m] for m in ("cosine", "top1_agreement", "max_abs") if m in o}
                          for name, o in (parity.get("outputs") or {}).items()},
             "quantized_layers": facts.get("quantized_layers"), "layers": facts.get("layers"),
             "seconds": round(now - self.last if seconds is None else seconds, 2), "passes": parity["status"] == "pass" and not problem,
             "path": path}
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
        out = {"status": status, "precision": self.precision, "settings": self.settings,
               "trials": len(self.trials) - 1,  # trial 0 is the variant the stage makes anyway
               "seconds": round(time.perf_counter() - self.t0, 2),
               "steps": [{k: v for k, v in t.items() if k != "path"} for t in self.trials],
               "kept": {self.settings["fallback"]: chosen["excluded"] if chosen else []},
               "chosen_trial": chosen["trial"] if chosen else None,
               "accuracy": chosen["accuracy"] if chosen else {}, "reason": reason}
        if self.ranking:
            out["sensitivity"] = self.ranking
        if would_need is not None:
            out["would_need"] = {self.settings["fallback"]: list(would_need)}
        return out


def score(t: dict) -> float:
    """One number per trial to compare them: the worst cosine over its outputs (top-1 agreement where lower)."""
    values = [min(v for k, v in o.items() if k in ("cosine", "top1_agreement")) for o in t["accuracy"].values()
              if any(k in o for k in ("cosine", "top1_agreement"))]
    return min(values) if values else float("-inf")


def summary(search: dict) -> str:
    """One line for parity reasons and the report."""
    kept = next(iter(search["kept"].items()))
    acc = search.get("accuracy") or {}
    cos = ", ".join(f"{k} cosine {v['cosine']:.4f}" for k, v in acc.items() if "cosine" in v)
    if search["status"] == "not-needed":
        return "precision search: not needed (the variant meets its tolerance)"
    if search["status"] == "pass":
        return (f"precision search: kept {len(kept[1])} node(s) in {kept[0]} ({', '.join(kept[1][:6])}) after "
                f"{search['trials']} trial(s), {search['seconds']:.1f} s; {cos}")
    if search["status"] == "not-run":
        return f"precision search: not run ({search['reason']})"
    need = next(iter((search.get("would_need") or {None: []}).items()))
    return (f"precision search failed after {search['trials']} trial(s), {search['seconds']:.1f} s "
            f"({search['reason']}); best: {cos or 'no measurement'}"
            + (f"; would need {need[0]} for {', '.join(need[1][:8])}" + (" ..." if len(need[1]) > 8 else "")
               if need[1] else ""))


# ---------------------------------------------------------------- sensitivity

def rank_nodes(variant, source, golden_path) -> list[dict]:
    """The variant's quantized nodes (those reading a Q -> DQ pair), most sensitive first: the output error of the
    variant with only that node quantized, on the golden inputs, against the golden outputs."""
    import onnx

    from ..tensors import output_metrics
    from ..validation.golden import load_golden

    proto = onnx.load(str(variant))
    inputs, expected = load_golden(golden_path)
    floats = _float_inputs(proto)  # node index -> {input slot: the float tensor its Q/DQ pair quantizes}
    order = [i for i, n in enumerate(proto.graph.node) if i in floats and n.name]
    ranking = []
    for i in order:
        isolated = onnx.ModelProto()
        isolated.CopyFrom(proto)
        for j, slots in floats.items():
            if j != i:
                for slot, name in slots.items():
                    isolated.graph.node[j].input[slot] = name
        actual = _run(isolated, inputs)
        worst = min((output_metrics(actual[k], v).get("cosine", 0.0) for k, v in expected.items() if k in actual),
                    default=0.0)
        node = proto.graph.node[i]
        ranking.append({"node": node.name, "op_type": node.op_type, "damage": round(float(1.0 - worst), 8),
                        "isolated_cosine": round(float(worst), 6)})
    ranking.sort(key=lambda r: -r["damage"])  # stable: ties keep graph order
    return ranking


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


def _run(proto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    from ..tensors import _session_feeds

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # as run_onnxruntime (why there)
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, _session_feeds(sess, feeds))))
