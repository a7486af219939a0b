"""The precisions a plan is built in and the tolerances each is judged by: vocabulary every floor shares.

Ground floor: the config's defaults, the precision variants, the report and the comparator all read it here.
"""

from __future__ import annotations

PRECISIONS = ["fp32", "fp16", "bf16", "int8", "fp8"]  # in this order everywhere (config, report columns)
QUANTIZED = {"int8", "fp8"}  # Q/DQ variants: need calibration data, judged at task level

DEFAULT_TOLERANCES = {
    # Elementwise |a-g| <= atol + rtol*|g| on every output, plus cosine similarity; classifier outputs also
    # need top-1 agreement. Quantized variants are judged at task level (cosine, top-1), not elementwise.
    "fp32": {"atol": 1e-4, "rtol": 1e-3, "min_cosine": 0.9999},
    # dense maps (task kind "dense"): a share of values may miss atol/rtol in fp16/bf16 (edges, near-ties)
    "fp16": {"atol": 1e-2, "rtol": 1e-2, "min_cosine": 0.999, "max_mismatch_fraction": 1e-3},
    "bf16": {"atol": 5e-2, "rtol": 5e-2, "min_cosine": 0.995, "max_mismatch_fraction": 1e-3},
    "int8": {"min_cosine": 0.98, "min_top1_agreement": 0.9},
    "fp8": {"min_cosine": 0.97, "min_top1_agreement": 0.85},
}
