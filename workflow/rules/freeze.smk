# freeze: checkpoint (state_dict + class from config) -> torch.export .pt2; TorchScript .pt -> frozen .pt


def freeze_params(wc):
    m = model_cfg(wc.model)
    return {"model": wc.model, "source_kind": source_kind(wc.model),
            "model_ref": m.get("model"), "model_kwargs": m.get("model_kwargs", {}), "inputs": m["inputs"]}


rule freeze:
    input:
        source=lambda wc: source_path(wc.model),
    output:
        frozen=paths.FROZEN,
        provenance=paths.provenance(paths.FROZEN),
    params:
        **spec(freeze_params),
    log:
        paths.log("freeze", "{model}", "{fmt}"),
    benchmark:
        paths.benchmark("freeze", "{model}", "{fmt}")
    resources:
        mem_mb=framework_mem_mb("freeze", 2000),
        **slurm_resources(),
    shell:
        stage("freeze")


# TensorFlow (Keras .keras/.h5, SavedModel, TF1 checkpoint) -> frozen GraphDef + the sidecar of its tensors/layouts


def freeze_tf_params(wc):
    m = model_cfg(wc.model)
    return {"model": wc.model, "format": m["format"], "signature": m.get("signature", "serving_default"),
            "inputs": m["inputs"], "outputs": m["outputs"]}


rule freeze_tf:
    input:
        unpack(lambda wc: source_inputs(wc.model)),
    output:
        frozen=paths.FROZEN_PB,
        io=paths.FROZEN_PB_IO,
        provenance=paths.provenance(paths.FROZEN_PB),
    params:
        **spec(freeze_tf_params),
    log:
        paths.log("freeze", "{model}", "pb"),
    benchmark:
        paths.benchmark("freeze", "{model}", "pb")
    resources:
        mem_mb=framework_mem_mb("freeze", 2000),
        **slurm_resources(),
    shell:
        stage("freeze_tf")
