# export: frozen artifact -> model.onnx (names, dynamic axes, opset from config); ONNX sources are imported here.


def export_params(wc):
    m = model_cfg(wc.model)
    return {"model": wc.model, "source_format": frozen_format(wc.model) or "onnx", "inputs": m["inputs"],
            "outputs": m.get("outputs"), "opset": model_settings(CFG, wc.model)["opset"]}


rule export:
    input:
        source=lambda wc: exported_from(wc.model),
    output:
        onnx=paths.ONNX,
        provenance=paths.provenance(paths.ONNX),
    params:
        **spec(export_params),
    log:
        paths.log("export", "{model}"),
    benchmark:
        paths.benchmark("export", "{model}")
    resources:
        mem_mb=3000,
    shell:
        stage("export")
