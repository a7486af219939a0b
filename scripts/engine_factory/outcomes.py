"""The outcome words every result carries: one string enum on the ground floor.

A `StrEnum` member *is* its value: `json.dumps`, f-strings, `str()` and `==` against the literal all give "pass",
"fail", "not-run" or "skipped", so every JSON and every comparison stays byte-identical to the plain strings.
"""

from __future__ import annotations

import enum


class Outcome(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NOT_RUN = "not-run"  # could not run here (no GPU, no backend); carries "not-run: <reason>", never a pass
    SKIPPED = "skipped"  # not asked for, or its input failed upstream
