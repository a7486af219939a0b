# freeze: checkpoint (state_dict + class from config) -> torch.export .pt2; TorchScript .pt -> frozen .pt


def freeze_params(wc):
    m = model_cfg(wc.model)
    return {"model": wc.model, "source_kind": "checkpoint" if "checkpoint" in m else "torchscript",
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
        mem_mb=2000,
    shell:
        stage("freeze")
