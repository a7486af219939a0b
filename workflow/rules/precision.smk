# precision: model.sim.onnx -> model.{precision}.onnx (ModelOpt AutoCast for fp16/bf16, PTQ Q/DQ for int8/fp8).
# One process per variant: ModelOpt patches onnxruntime in-process.


rule precision:
    input:
        unpack(stage_inputs("precision")),
    output:
        onnx=paths.PRECISION_ONNX,
        provenance=paths.provenance(paths.PRECISION_ONNX),
    params:
        **spec("precision"),
    log:
        paths.job_log("precision"),
    benchmark:
        paths.job_benchmark("precision")
    resources:
        mem_mb=4000,
        **slurm_resources(),
    shell:
        stage("precision")
