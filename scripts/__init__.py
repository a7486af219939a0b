"""The engine factory's stage library: every Snakemake rule calls one function here (through `python -m scripts`).

Modules import heavy frameworks (torch, onnx, tensorrt_rtx, modelopt) inside functions only, so that the
Snakefile can import `scripts.config` and `scripts.paths` at DAG time without paying for them.
"""
