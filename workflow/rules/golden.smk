# golden: reference outputs from the framework in fp32 (once per model), and ONNX parity of every ONNX file.


rule golden:
    input:
        unpack(stage_inputs("golden")),
    output:
        golden=paths.GOLDEN,
        provenance=paths.provenance(paths.GOLDEN),
    params:
        **spec("golden"),
    log:
        paths.job_log("golden"),
    benchmark:
        paths.job_benchmark("golden")
    resources:
        mem_mb=framework_mem_mb("golden", 2000),
        **slurm_resources(),
    shell:
        stage("golden")


rule parity:
    input:
        unpack(stage_inputs("parity")),
    output:
        json=paths.PARITY,
    params:
        **spec("parity"),
    log:
        paths.job_log("parity"),
    benchmark:
        paths.job_benchmark("parity")
    resources:
        mem_mb=2000,
        **slurm_resources(),
    shell:
        stage("parity")
