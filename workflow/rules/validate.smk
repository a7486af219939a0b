# validate: per plan, ONNX parity of its variant + plan header + plan execution (not-run where impossible).


rule validate:
    input:
        unpack(stage_inputs("validate")),
    output:
        json=report(paths.VALIDATION, caption="../report/validation.rst", category="Validation",
                    subcategory="{model}", labels={"model": "{model}", "precision": "{precision}", "target": "sm{cc}"}),
    params:
        **spec("validate"),
    log:
        paths.job_log("validate"),
    benchmark:
        paths.job_benchmark("validate")
    resources:
        mem_mb=2000,
        **gpu_resources(lambda wc: True),  # plan execution holds one GPU of the plan's compute capability
        **slurm_resources(lambda wc: True),  # Slurm: the pool of the plan's cc, else the CPU route (not-run there)
    shell:
        stage("validate")
