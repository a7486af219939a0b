# build: model.{precision}.onnx -> plans/{key}/sm{cc}/{precision}/model.plan. One job builds a target set (scripts/
# factory.py TargetSet): every TensorRT-RTX target of a precision at once (AOT on the CPU: one process, one ONNX
# parse); for full TensorRT one compute capability, on a GPU of that cc (locally pinned, or in its Slurm pool). Where
# no GPU can run a plan, the job also writes each plan's validation (scripts/engine_factory/factory.py `validates_in_build`).

for _targets in F.target_sets("build"):

    rule:
        name:
            _targets.rule("build")
        input:
            unpack(stage_inputs("build", _targets)),
        output:
            **paths.set_outputs("build", _targets.ccs),
            **(labelled_validations(_targets.ccs) if F.validates_in_build else {}),
        log:
            paths.set_job_log("build", _targets.tag),
        wildcard_constraints:
            precision="|".join(_targets.precisions),
        resources:
            **gpu_resources(_targets),
            **slurm_resources(_targets),
            mem_mb=model_mem_mb(4000),
        params:
            **spec("build", _targets),
        run:
            run_stage("build", params, log)
