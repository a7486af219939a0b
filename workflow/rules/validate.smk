# validate: per plan, ONNX parity of its variant + plan header + plan execution (not-run where impossible). One job
# validates a target set (one cc per job where there are GPUs to run plans on: each holds one of that cc). Each
# validation.json is flagged for `snakemake --report`, labelled by model, precision and target.


def _labelled_validations(ccs):
    return {label: report(path, caption="../report/validation.rst", category="Validation", subcategory="{model}",
                          labels={"model": "{model}", "precision": "{precision}", "target": f"sm{label[len('json_sm'):]}"})
            for label, path in paths.set_outputs("validate", ccs).items()}


for _targets in F.target_sets("validate"):

    rule:
        name:
            _targets.rule("validate")
        input:
            unpack(stage_inputs("validate", _targets)),
        output:
            **_labelled_validations(_targets.ccs),
        wildcard_constraints:
            precision="|".join(_targets.precisions),
        params:
            **spec("validate", _targets),
        log:
            paths.set_job_log("validate", _targets.tag),
        resources:
            mem_mb=2000,
            **gpu_resources(_targets),
            **slurm_resources(_targets),
        run:
            run_stage("validate", params, log)
