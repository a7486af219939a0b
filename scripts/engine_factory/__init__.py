"""The engine factory's stage library: every Snakemake rule calls one function here (through `python -m
engine_factory`).

Modules import heavy frameworks (torch, onnx, tensorrt_rtx, modelopt) inside functions only, so that the
Snakefile can import `engine_factory.config` and `engine_factory.paths` at DAG time without paying for them.
"""


def __getattr__(name):  # the version is looked up only when asked: every job and the Snakefile import this package
    if name != "__version__":
        raise AttributeError(name)
    from importlib import metadata

    try:
        return metadata.version("engine-factory")
    except metadata.PackageNotFoundError:  # a checkout that `make install` has not installed
        return "0+unknown"
