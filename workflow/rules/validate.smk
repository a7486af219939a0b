# validate: per plan, ONNX parity of its variant + plan header + plan execution (not-run where impossible).


def validate_params(wc):
    m = model_cfg(wc.model)
    return {"model": wc.model, "backend": BACKEND.name, "key": wc.key, "version": BACKEND.version,
            "compute_capability": paths.cc_dotted(wc.cc), "precision": wc.precision, "inputs": m["inputs"],
            "tolerance": model_settings(CFG, wc.model)["tolerances"][wc.precision],
            # a driver or CUDA change keeps the plans but re-runs their validation
            "driver": HOST.get("driver_version"), "cuda": HOST.get("cuda_driver_version")}


rule validate:
    input:
        plan=paths.PLAN,
        onnx=paths.PRECISION_ONNX,
        parity=lambda wc: paths.parity(wc.model, wc.precision),
        golden=paths.GOLDEN,
    output:
        json=paths.VALIDATION,
    params:
        **spec(validate_params),
    log:
        paths.log("validate", "{model}", "{key}", "sm{cc}", "{precision}"),
    resources:
        mem_mb=2000,
        **gpu_resources(lambda wc: True),  # plan execution holds one GPU of the plan's compute capability
        **slurm_resources(lambda wc: True),  # Slurm: the pool of the plan's cc, else the CPU route (not-run there)
    shell:
        stage("validate")
