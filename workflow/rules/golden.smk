# golden: reference outputs from the framework in fp32 (once per model), and ONNX parity of every ONNX file.


def golden_inputs(wc):
    m = model_cfg(wc.model)
    samples = m.get("samples")
    io = {"io": paths.frozen_io(wc.model)} if m["framework"] == "tensorflow" else {}  # which inputs tf2onnx transposes
    return {**source_inputs(wc.model), **io, **({"samples": samples} if samples else {})}


def golden_params(wc):
    m = model_cfg(wc.model)
    kind = source_kind(wc.model)
    if kind == "tensorflow":
        source = {"kind": kind, "format": m["format"], "signature": m.get("signature")}
    else:
        source = {"kind": kind, "model_ref": m.get("model"), "model_kwargs": m.get("model_kwargs", {})}
    return {"model": wc.model, "inputs": m["inputs"], "outputs": m.get("outputs"),
            "seed": model_settings(CFG, wc.model)["golden_seed"], "device": CFG["golden_device"], "source": source}


rule golden:
    input:
        unpack(golden_inputs),
    output:
        golden=paths.GOLDEN,
        provenance=paths.provenance(paths.GOLDEN),
    params:
        **spec(golden_params),
    log:
        paths.log("golden", "{model}"),
    benchmark:
        paths.benchmark("golden", "{model}")
    resources:
        mem_mb=framework_mem_mb("golden", 2000),
        **slurm_resources(),
    shell:
        stage("golden")


def parity_onnx(wc):
    if wc.variant == "export":
        return paths.onnx(wc.model)
    if wc.variant == "sim":
        return paths.sim_onnx(wc.model)
    return paths.precision_onnx(wc.model, wc.variant)


def parity_params(wc):
    precision = "fp32" if wc.variant in ("export", "sim") else wc.variant
    return {"variant": wc.variant, "tolerance": model_settings(CFG, wc.model)["tolerances"][precision]}


rule parity:
    input:
        onnx=parity_onnx,
        golden=paths.GOLDEN,
    output:
        json=paths.PARITY,
    params:
        **spec(parity_params),
    log:
        paths.log("parity", "{model}", "{variant}"),
    resources:
        mem_mb=2000,
        **slurm_resources(),
    shell:
        stage("parity")
