# deploy: one Triton model repository entry per (model, precision), artifacts/triton/<name>/ (config.pbtxt and 1/
# with a plan per compute capability), from the plans whose validation the config's deploy.triton policy accepts; where
# none does, the repository is withheld (no model directory). The job's output is its record, artifacts/deploy/<name>.json,
# published or withheld: a checkpoint, so that the Snakefile asks the sign rule only for a published directory.


checkpoint deploy:
    input:
        unpack(stage_inputs("deploy")),
    output:
        record=paths.DEPLOY_RECORD,
    log:
        paths.job_log("deploy"),
    resources:
        **slurm_resources(),
    params:
        **spec("deploy"),
    run:
        run_stage("deploy", params, log)
