# The TensorRT engine factory: checkpoint -> frozen -> ONNX -> simplified ONNX -> precision variants -> plans
# -> validation -> report. Stage logic lives in the `scripts` package; each rule file is one stage.
# The zoo comes from --configfile (several: overlays), else config/config.yaml (the demo): no `configfile:` here,
# which Snakemake would merge into the user's zoo (workflow/rules/common.smk loads it).


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/freeze.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/simplify.smk"
include: "workflow/rules/precision.smk"
include: "workflow/rules/golden.smk"
include: "workflow/rules/build.smk"
include: "workflow/rules/validate.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        paths.REPORT_JSON,
        paths.REPORT_HTML,
        paths.OUTCOME,
