# sign: each plan's in-toto statement in a DSSE envelope (<plan>.intoto.dsse.json) and each Triton model directory as
# a whole (model.sig, model-signing's Sigstore bundle), where the config names `signing.key` (scripts/engine_factory/
# signing.py). Local rules: signing runs on the host that has the key; Slurm nodes never need it. The key's path or
# URI is a param (a new key re-signs everything); its bytes never enter params, logs or artifacts.
from engine_factory import signing


localrules:
    sign_plan,
    sign_repository,


rule sign_plan:
    input:
        plan=paths.PLAN,
        statement=paths.intoto(paths.PLAN),
    output:
        envelope=signing.envelope_path(paths.PLAN),
    log:
        paths.LOG.format(rule="sign", name="{model}.{key}.sm{cc}.{precision}"),
    params:
        signer=signing.settings(CFG)["key"],
    run:
        signing.sign_stage(log[0], plans=[input.plan], cfg=CFG)


rule sign_repository:
    input:
        record=paths.DEPLOY_RECORD,  # asked for only where it says published (Snakefile, rule all)
    output:
        signature=signing.model_signature(paths.TRITON_MODEL),
    log:
        paths.LOG.format(rule="sign", name="{repository}"),
    params:
        signer=signing.settings(CFG)["key"],
    run:
        signing.sign_stage(log[0], repository=paths.triton_config(wildcards.repository), cfg=CFG)
