# deploy: one Triton model repository entry per (model, precision), artifacts/triton/<name>/ (config.pbtxt and 1/
# with a plan per compute capability), from the plans whose validation the config's deploy.triton policy accepts.


rule deploy:
    input:
        unpack(stage_inputs("deploy")),
    output:
        config=paths.TRITON_CONFIG,
    log:
        paths.job_log("deploy"),
    resources:
        **slurm_resources(),
    params:
        **spec("deploy"),
    run:
        run_stage("deploy", params, log)
