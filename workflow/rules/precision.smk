# precision: model.sim.onnx -> model.{precision}.onnx (ModelOpt AutoCast for fp16/bf16, PTQ Q/DQ for int8/fp8).
# One process per variant: ModelOpt patches onnxruntime in-process.


def calibration_input(wc):
    return {"calibration": model_cfg(wc.model)["calibration"]} if wc.precision in ("int8", "fp8") else {}


rule precision:
    input:
        unpack(calibration_input),
        onnx=paths.SIM_ONNX,
    output:
        onnx=paths.PRECISION_ONNX,
        provenance=paths.provenance(paths.PRECISION_ONNX),
    params:
        **spec(lambda wc: {"model": wc.model, "precision": wc.precision, "inputs": model_cfg(wc.model)["inputs"]}),
    log:
        paths.log("precision", "{model}", "{precision}"),
    benchmark:
        paths.benchmark("precision", "{model}", "{precision}")
    resources:
        mem_mb=4000,
        **slurm_resources(),
    shell:
        stage("precision")
