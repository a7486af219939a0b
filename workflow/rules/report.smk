from engine_factory.deploy.gate import COMPARISON

# report: summary.json, index.html (overview + models), a page and a figure per model (scripts/engine_factory/report/); all flagged
# for `snakemake --report` with their labels. outcome: the run's verdict. Failed targets are results: the report shows
# them, and the run still exits non-zero.
# The upgrade gate's comparison (written by `promote` after a run) is an input while it exists: the report shows it
# (upgrade.html), and a new comparison makes the report again. The nightly writes the report again right after its
# gate (ops/scheduled.py: report_after_gate), with the settings this rule ran with.


rule report:
    input:
        lambda wc: F.report_inputs() + ([COMPARISON] if os.path.exists(COMPARISON) else []),
    output:
        json=report(
            paths.REPORT_JSON,
            caption="../report/summary.rst",
            category="Engine factory",
            labels={"result": "summary.json"},
        ),
        html=report(
            paths.REPORT_HTML, caption="../report/index.rst", category="Engine factory", labels={"result": "overview"}
        ),
        overview=report(
            paths.REPORT_OVERVIEW_CHART,
            caption="../report/overview.rst",
            category="Engine factory",
            labels={"result": "overview figure"},
        ),
        pages=report(
            directory(paths.REPORT_PAGES),
            patterns=["{model}.html"],
            caption="../report/model.rst",
            category="Models",
            labels={"model": "{model}", "result": "model page"},
        ),
        charts=report(
            directory(paths.REPORT_CHARTS),
            patterns=["{model}.svg"],
            caption="../report/charts.rst",
            category="Charts",
            labels={"model": "{model}", "result": "figure"},
        ),
    log:
        paths.job_log("report"),
    resources:
        **slurm_resources(),
    params:  # the settings come through a file (at 100 models they exceed the kernel's argument limit)
        settings=f"@{paths.REPORT_SPEC}",
        io=lambda wc, output: json.dumps({"inputs": {}, "outputs": dict(output.items())}),
        metrics=paths.job_benchmark("report"),
    run:
        run_stage("report", params, log)


rule outcome:  # fails while any target is failed (re-checked every run, so a cron job keeps alerting)
    input:
        paths.REPORT_JSON,
    output:
        paths.OUTCOME,
    log:
        paths.job_log("outcome"),
    localrule: True
    run:
        verdict(input[0], output[0], log[0])


onerror:
    # A job failed (with --keep-going the others ran): write the report from what exists now, failures included,
    # so one failure never hides the rest. The next run leaves recorded failures out of its jobs (scripts/engine_factory/failures.py).
    try:
        write_report(paths.REPORT_JSON, paths.REPORT_HTML, **resolve(CFG, HOST).report_settings())
        print(f"engine factory: report written with the failures: {paths.REPORT_HTML}", file=sys.stderr)
    except Exception as e:  # never hide Snakemake's own error
        print(f"engine factory: could not write the report after the failure: {e}", file=sys.stderr)
