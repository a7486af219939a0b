# golden: reference outputs from the framework in fp32 (once per model); parity: the exported and simplified ONNX
# against them (the precision variants' parity is part of their precision job).


rule golden:
    input:
        unpack(stage_inputs("golden")),
    output:
        golden=paths.GOLDEN,
        provenance=paths.provenance(paths.GOLDEN),
    log:
        paths.job_log("golden"),
    resources:
        **slurm_resources(),
        mem_mb=framework_mem_mb("golden", 2000),
    params:
        **spec("golden"),
    run:
        run_stage("golden", params, log)


rule parity:  # the exported and the simplified ONNX of one model (each precision variant's: its precision job)
    input:
        unpack(stage_inputs("parity")),
    output:
        export=paths.PARITY.replace("{variant}", "export"),
        sim=paths.PARITY.replace("{variant}", "sim"),
    log:
        paths.job_log("parity"),
    resources:
        **slurm_resources(),
        mem_mb=model_mem_mb(2000),
    params:
        **spec("parity"),
    run:
        run_stage("parity", params, log)
