# simplify: model.onnx -> model.sim.onnx, outputs compared before/after, with a recorded fallback path.


rule simplify:
    input:
        onnx=paths.ONNX,
    output:
        onnx=paths.SIM_ONNX,
        provenance=paths.provenance(paths.SIM_ONNX),
    params:
        **spec(lambda wc: {"model": wc.model, "inputs": model_cfg(wc.model)["inputs"],
                              "simplifier": model_settings(CFG, wc.model)["simplifier"]}),
    log:
        paths.log("simplify", "{model}"),
    benchmark:
        paths.benchmark("simplify", "{model}")
    resources:
        mem_mb=3000,
        **slurm_resources(),
    shell:
        stage("simplify")
