# build: model.{precision}.onnx -> plans/{backend}-{version}/sm{cc}/{precision}/model.plan, one job per key.


def build_params(wc):
    timing_cache = None if BACKEND.timing_cache_unused else paths.timing_cache(wc.key, wc.cc)  # none for RTX
    return {"model": wc.model, "backend": BACKEND.name, "key": wc.key, "compute_capability": paths.cc_dotted(wc.cc),
            "precision": wc.precision, "inputs": model_cfg(wc.model)["inputs"],
            "build": model_settings(CFG, wc.model)["build"], "timing_cache": timing_cache,
            **({"tensorrt": CFG["tensorrt"]} if BACKEND.short == "trt" else {})}


rule build:
    input:
        onnx=paths.PRECISION_ONNX,
    output:
        plan=paths.PLAN,
        provenance=paths.provenance(paths.PLAN),
        intoto=paths.intoto(paths.PLAN),
    params:
        **spec(build_params),
    log:
        paths.log("build", "{model}", "{key}", "sm{cc}", "{precision}"),
    benchmark:
        paths.benchmark("build", "{model}", "{key}", "sm{cc}", "{precision}")
    resources:
        mem_mb=4000,
        **gpu_resources(lambda wc: BACKEND.short == "trt"),  # full TensorRT builds on a GPU of the key
        **slurm_resources(lambda wc: BACKEND.short == "trt"),  # ... in the Slurm pool of the key; RTX: CPU route
    shell:
        stage("build")
