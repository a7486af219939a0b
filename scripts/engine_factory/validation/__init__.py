"""Validation: golden reference outputs, ONNX parity and plan checks (the report reads them: scripts/engine_factory/report/)."""
