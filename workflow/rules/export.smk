# export: frozen artifact -> model.onnx (names, dynamic axes, opset from config); ONNX sources are imported here.


rule export:
    input:
        unpack(stage_inputs("export")),
    output:
        onnx=paths.ONNX,
        provenance=paths.provenance(paths.ONNX),
    log:
        paths.job_log("export"),
    resources:
        **slurm_resources(),
        mem_mb=framework_mem_mb("export", 3000),
    params:
        **spec("export"),
    run:
        run_stage("export", params, log)
