"""What the GPU hardware itself allows, whatever the backend: one place for the precision rules."""

from __future__ import annotations

# precision -> the oldest compute capability that has it
MIN_COMPUTE_CAPABILITY = {"fp8": (8, 9), "bf16": (8, 0)}


def hardware_support(cc: str, precision: str, *, what: str = "GPU") -> str | None:
    """None when compute capability `cc` can run `precision`, else the reason (`what`: "GPU" or "target")."""
    need = MIN_COMPUTE_CAPABILITY.get(precision)
    if need and tuple(int(x) for x in cc.split(".")) < need:
        return f"{precision} needs compute capability {need[0]}.{need[1]} or newer ({what} is {cc})"
    return None
