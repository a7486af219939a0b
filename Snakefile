# The TensorRT engine factory: checkpoint -> frozen -> ONNX -> simplified ONNX -> precision variants -> plans
# -> validation -> report. Stage logic lives in the `scripts` package; each rule file is one stage.
# The zoo comes from --configfile (several: overlays), else config/config.yaml (the demo): no `configfile:` here,
# which Snakemake would merge into the user's zoo (workflow/rules/common.smk loads it).
# `snakemake --lint` (tests/workflow/test_lint.py, CI) is clean. Every stage runs in the one venv of requirements.txt
# on purpose, because torch, onnx, onnxruntime, ModelOpt and TensorRT-RTX are pinned to versions measured to work
# together (per-rule environments would each repeat the 3.3 GB and let the stages' versions drift apart); and the
# rules' `run:` blocks fork their stage from one preloaded process (scripts/engine_factory/jobs.py), which a per-rule environment
# could not share.
#
# Contents: common.smk (config, host, targets, helpers) -> demo -> freeze -> export -> simplify -> precision ->
# golden (+ parity) -> build -> validate (in the build job where no GPU runs plans) -> report (+ outcome) -> deploy
# (Triton repositories).

from snakemake.utils import min_version

min_version("9.27")


include: "workflow/rules/common.smk"


# A damaged artifact (emptied, halved, zeroed by a power loss) fails its own provenance record, but Snakemake judges by
# dates and would keep it. So a run that writes here first removes it, its records and what was made from it (a stat
# per file while nothing changed; scripts/engine_factory/factory.py: clear_damage), and then makes them again. Read-only
# calls (-n, --summary: `status`, --nolock) and a run beside a live one only say so.
from engine_factory.factory import read_only_call
from engine_factory.ops.runs import READ_ONLY, live_runs

NO_JOBS = (*READ_ONLY, "--report", "--dag", "--rulegraph", "--filegraph", "--touch", "-t")  # calls that make nothing

if workflow.is_main_process:  # a read-only call, or one beside a live run here (it may be writing them), only says so
    for _line in F.clear_damage(may_remove=lambda: not read_only_call(sys.argv[1:], NO_JOBS) and not live_runs(".")):
        print(_line, file=sys.stderr)


wildcard_constraints:  # before the rules: they take the global constraints when they are defined
    **paths.WILDCARDS,


include: "workflow/rules/demo.smk"
include: "workflow/rules/freeze.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/simplify.smk"
include: "workflow/rules/precision.smk"
include: "workflow/rules/golden.smk"
include: "workflow/rules/build.smk"
include: "workflow/rules/validate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/deploy.smk"
include: "workflow/rules/sign.smk"


rule all:
    input:
        # every result the report reads: one missing while the report exists (a job killed, an OOM, a failed Slurm
        # job; the report written after the failure) is made again, which Snakemake does not do for an input alone
        F.report_inputs(),
        paths.REPORT_JSON,
        paths.REPORT_HTML,
        paths.REPORT_OVERVIEW_CHART,
        paths.REPORT_PAGES,
        paths.REPORT_CHARTS,
        paths.OUTCOME,
        F.deploy_outputs(),  # Triton repositories' records (published or withheld), where deploy.triton is enabled
        # where the config names signing.key (rules/sign.smk): an envelope per plan; a model.sig per published
        # repository, known once its deploy checkpoint has run
        signing.outputs(CFG, F.buildable, []),
        lambda w: signing.outputs(CFG, [], F.deployed(checkpoints)) if signing.enabled(CFG) else [],
