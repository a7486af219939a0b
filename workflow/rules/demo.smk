# The demo zoo's own files (checkpoints, an old-opset ONNX, calibration sets), made from fixed seeds.


rule demo_asset:
    output:
        asset=paths.DEMO,
    log:
        paths.job_log("demo"),
    resources:
        **slurm_resources(),
    params:
        **spec("demo"),
    run:
        run_stage("demo", params, log)


rule demo_asset_dir:  # a TF1 checkpoint is several files (.meta, .index, .data-*): one directory
    output:
        asset=directory(paths.DEMO_DIR),
    log:
        paths.log("demo", "{asset}.ckpt"),
    resources:
        **slurm_resources(),
    params:
        **spec("demo"),
    run:
        run_stage("demo", params, log)


ruleorder: demo_asset_dir > demo_asset
