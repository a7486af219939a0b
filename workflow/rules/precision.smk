# precision: model.sim.onnx -> model.{precision}.onnx (ModelOpt AutoCast for fp16/bf16 on the calibration data, else the
# golden inputs; PTQ Q/DQ for int8/fp8 on the calibration data; each tool's output must load in onnxruntime).
# Then the variant against the golden outputs in onnxruntime (its parity). ModelOpt runs in a fork of the job's
# process: it patches onnxruntime in-process (scripts/engine_factory/graph/precision.py).


rule precision:
    input:
        unpack(stage_inputs("precision")),
    output:
        onnx=paths.PRECISION_ONNX,
        provenance=paths.provenance(paths.PRECISION_ONNX),
        parity=paths.PARITY.replace("{variant}", "{precision}"),
    log:
        paths.job_log("precision"),
    resources:
        **slurm_resources(),
        mem_mb=model_mem_mb(4000),
    params:
        **spec("precision"),
    run:
        run_stage("precision", params, log)
