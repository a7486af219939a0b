# build: model.{precision}.onnx -> plans/{backend}-{version}/sm{cc}/{precision}/model.plan, one job per key.


rule build:
    input:
        unpack(stage_inputs("build")),
    output:
        plan=paths.PLAN,
        provenance=paths.provenance(paths.PLAN),
        intoto=paths.intoto(paths.PLAN),
    params:
        **spec("build"),
    log:
        paths.job_log("build"),
    benchmark:
        paths.job_benchmark("build")
    resources:
        mem_mb=4000,
        **gpu_resources(lambda wc: BACKEND.builds_on_gpu),  # full TensorRT builds on a GPU of the key
        **slurm_resources(lambda wc: BACKEND.builds_on_gpu),  # ... in the Slurm pool of the key; RTX: CPU route
    shell:
        stage("build")
