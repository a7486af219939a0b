# validate: per plan, ONNX parity of its variant + plan header + plan execution (not-run where impossible). One job
# validates a target set, one cc per job: these jobs exist only where GPUs can run plans (each holds one of that
# cc); elsewhere the build job validates (scripts/engine_factory/factory.py `validates_in_build`).

for _targets in F.target_sets("validate"):

    rule:
        name:
            _targets.rule("validate")
        input:
            unpack(stage_inputs("validate", _targets)),
        output:
            **labelled_validations(_targets.ccs),
        log:
            paths.set_job_log("validate", _targets.tag),
        wildcard_constraints:
            precision="|".join(_targets.precisions),
        resources:
            **gpu_resources(_targets),
            **slurm_resources(_targets),
            mem_mb=model_mem_mb(2000),
        params:
            **spec("validate", _targets),
        run:
            run_stage("validate", params, log)
