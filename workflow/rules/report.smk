# report: summary.json + index.html over models x precisions x targets (also flagged for `snakemake --report`).


def report_inputs(wc):
    validations = [paths.validation(**j) for j in PLAN_JOBS]
    per_model = []
    for model in CFG["models"]:
        per_model += [paths.parity(model, "export"), paths.parity(model, "sim"),
                      paths.provenance(paths.onnx(model)), paths.provenance(paths.sim_onnx(model))]
        per_model += [paths.parity(model, p) for p in model_settings(CFG, model)["precisions"]]
    return validations + per_model


rule report:
    input:
        report_inputs,
    output:
        json=report(paths.REPORT_JSON, caption="../report/summary.rst", category="Engine factory"),
        html=report(paths.REPORT_HTML, caption="../report/index.rst", category="Engine factory"),
    params:
        **spec(lambda wc: {"jobs": PLAN_JOBS, "skipped": SKIPPED, "backend": KEY,
                              "models": {m: {"framework": CFG["models"][m]["framework"],
                                             "precisions": model_settings(CFG, m)["precisions"]}
                                         for m in CFG["models"]}}),
    log:
        paths.log("report", "all"),
    resources:
        **slurm_resources(),
    shell:
        stage("report")
