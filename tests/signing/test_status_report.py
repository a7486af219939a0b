"""status and the report say whether plans are signed: an envelope beside the plan or not (presence only; `verify`
checks signatures), and status says so when no signing key is configured."""

import hashlib
import json
from pathlib import Path

from test_signing import PLAN

from engine_factory import paths, signing
from engine_factory.ops import status
from engine_factory.report import summary

from helpers.report_zoo import rtx_plan_bytes

OTHER = PLAN.replace("fp32", "fp16")


def test_status_and_report_count_signed_and_unsigned_plans(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    signing.generate_key("k.key")
    for plan in (PLAN, OTHER):
        Path(plan).parent.mkdir(parents=True)
        data = rtx_plan_bytes(paths.parse_plan(plan)["cc"])  # a plan the report does not call damaged
        Path(plan).write_bytes(data)
        record = {"artifact": {"path": plan, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}}
        Path(paths.provenance(plan)).write_text(json.dumps(record))
        Path(paths.intoto(plan)).write_text('{"_type": "https://in-toto.io/Statement/v1"}')
    signing.sign_plan(PLAN, signing.Signer("k.key"))
    targets = [{"plan": p} for p in (PLAN, OTHER, PLAN.replace("m/", "gone/"))]
    state = status.signing_state(Path("."), targets, {"signing": {"key": "k.key"}})
    assert state == {"configured": True, "signed": 1, "unsigned": 1}
    report = {"counts": dict.fromkeys(status.STATES, 0), "keys": [], "snakemake_seconds": 0, "targets": []}
    report.update(not_produced=[], failed=0, needs_work=False, signing={**state, "configured": False})
    text = status.render(report)
    assert "signing: 1 plan(s) with a signed envelope, 1 unsigned (no signing.key configured" in text, text

    cells = [summary._validated_cell(paths.parse_plan(p)) for p in (PLAN, OTHER)]
    assert [c["signed"] for c in cells] == [True, False]
    assert cells[0]["links"]["signature"] == signing.envelope_path(PLAN)
    assert summary.signing_counts(cells) == {"signed": 1, "unsigned": 1}
