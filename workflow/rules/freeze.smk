# freeze: checkpoint (state_dict + class from config) -> torch.export .pt2; TorchScript .pt -> frozen .pt


rule freeze:
    input:
        unpack(stage_inputs("freeze")),
    output:
        frozen=paths.FROZEN,
        provenance=paths.provenance(paths.FROZEN),
    log:
        paths.job_log("freeze"),
    resources:
        **slurm_resources(),
        mem_mb=framework_mem_mb("freeze", 2000),
    params:
        **spec("freeze"),
    run:
        run_stage("freeze", params, log)


# TensorFlow (Keras .keras/.h5, SavedModel, TF1 checkpoint) -> frozen GraphDef + the sidecar of its tensors/layouts


rule freeze_tf:
    input:
        unpack(stage_inputs("freeze_tf")),
    output:
        frozen=paths.FROZEN_PB,
        io=paths.FROZEN_PB_IO,
        provenance=paths.provenance(paths.FROZEN_PB),
    log:
        paths.job_log("freeze_tf"),
    resources:
        **slurm_resources(),
        mem_mb=framework_mem_mb("freeze_tf", 2000),
    params:
        **spec("freeze_tf"),
    run:
        run_stage("freeze_tf", params, log)
