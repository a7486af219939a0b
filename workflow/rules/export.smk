# export: frozen artifact -> model.onnx (names, dynamic axes, opset from config); ONNX sources are imported here.


def export_params(wc):
    m = model_cfg(wc.model)
    return {"model": wc.model, "source_format": frozen_format(wc.model) or "onnx", "inputs": m["inputs"],
            "outputs": m.get("outputs"), "opset": model_settings(CFG, wc.model)["opset"]}


def export_inputs(wc):
    tf = frozen_format(wc.model) == "pb"  # TensorFlow: the frozen GraphDef and its tensor sidecar
    return {"source": exported_from(wc.model), **({"io": paths.frozen_io(wc.model)} if tf else {})}


rule export:
    input:
        unpack(export_inputs),
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
        mem_mb=framework_mem_mb("export", 3000),
        **slurm_resources(),
    shell:
        stage("export")
