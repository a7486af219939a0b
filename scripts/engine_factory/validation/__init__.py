"""Validation: golden reference outputs, ONNX parity and plan checks (the report reads them: engine_factory/report/)."""
