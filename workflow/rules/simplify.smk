# simplify: model.onnx -> model.sim.onnx, outputs compared before/after, with a recorded fallback path.


rule simplify:
    input:
        unpack(stage_inputs("simplify")),
    output:
        onnx=paths.SIM_ONNX,
        provenance=paths.provenance(paths.SIM_ONNX),
    log:
        paths.job_log("simplify"),
    resources:
        **slurm_resources(),
        mem_mb=model_mem_mb(3000),
    params:
        **spec("simplify"),
    run:
        run_stage("simplify", params, log)
