"""ONNX graphs between export and build: I/O checks (onnx_io), simplification, precision variants, calibration."""
