"""Operations over a workflow directory (README "Operations"): status, verify, prune, the scheduled run."""
from __future__ import annotations

import json


def emit(report: dict, render, as_json: bool, end: str = "\n") -> None:
    """Print a report as JSON (--json) or as its text form: every operation's output, one way."""
    print(json.dumps(report, indent=1) if as_json else render(report), end=end)
