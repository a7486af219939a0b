# Two commands for a fresh machine:  make run  (install + build the demo zoo)   make test  (install + test suite)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all
# Your own zoo: make run ZOO=~/zoo/my-zoo.yaml [DIR=~/zoo] (several files: ZOO="zoo.yaml site.yaml", overlays).
# Without ZOO: the demo zoo, config/config.yaml. DIR: the working directory (where artifacts/ goes; default: here).
ZOO ?=
DIR ?=
WORKFLOW_ARGS := $(if $(ZOO),--configfile $(abspath $(ZOO))) $(if $(DIR),--directory $(abspath $(DIR)))
OPS_ARGS := $(if $(ZOO),--configfile $(abspath $(ZOO))) $(if $(DIR),-d $(abspath $(DIR)))
# RETRY_FAILED=1 retries the targets whose recorded failure would otherwise keep them out of the run.
export FACTORY_RETRY_FAILED := $(RETRY_FAILED)
SNAKEMAKE := $(BIN)/snakemake --workflow-profile workflow/profiles/default $(WORKFLOW_ARGS)

.PHONY: run lint format test test-slow test-slurm test-browser test-upgrade install check report clean bench status verify prune scheduled

# Your config files are read by the factory first: a YTE template (__use_yte__) is refused before Snakemake would run it.
run: $(STAMP)
	$(if $(ZOO),$(BIN)/python -c 'import sys; from engine_factory.config import read_file; from engine_factory.errors import guarded; sys.exit(guarded(lambda: [read_file(f) for f in sys.argv[1:]] and 0))' $(abspath $(ZOO)))
	$(SNAKEMAKE) --cores $(CORES)

# Lint first (CI runs it through `make test`): ruff (rules and format, line length 120), snakefmt on the Snakefile and
# the rules, and the house's import contracts (pyproject.toml [tool.importlinter]: no import runs back up, no circle).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/rules/*.smk
	$(BIN)/lint-imports

# What `make lint` asks for, applied (import-linter has nothing to fix: move the import instead).
format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	$(BIN)/snakefmt Snakefile workflow/rules/*.smk

test: $(STAMP) lint
	$(BIN)/python -m pytest -q tests

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow tests

# A real single-node Slurm (root): installs slurm-wlm and munge from Debian packages, starts munged, slurmctld and
# slurmd, runs the workflow through `--executor slurm`, stops them (~4 min; README "Running on Slurm"). CI runs it.
test-slurm: $(STAMP)
	$(BIN)/python tests/helpers/slurm_cluster.py install
	FACTORY_SLURM_REQUIRED=1 $(BIN)/python -m pytest -q -s -m slurm tests

# The report in headless Chromium (tests/report/test_browser.py): as root, installs Debian's chromium and
# chromium-driver when missing (measured: 105 s with apt-get update, 121 MB), then runs the `browser` tests on a real
# run of the tiny zoo; here a missing Chromium fails them instead of skipping. CI runs it.
# SCREENSHOT=docs/report-overview.png keeps the overview's screenshot.
test-browser: $(STAMP)
	command -v chromedriver >/dev/null || test "$$(id -u)" != 0 || { apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }
	FACTORY_BROWSER_REQUIRED=1 FACTORY_REPORT_SCREENSHOT=$(abspath $(SCREENSHOT)) \
	  $(BIN)/python -m pytest -q -m browser tests/report

# A real upgrade (tests/upgrade): pip downloads TensorRT-RTX 1.6.1.120 into ~/.cache/engine-factory (--no-deps
# --target, first on PYTHONPATH), builds a tiny zoo with it, then with the installed 1.7.1.116 (README "Upgrades").
test-upgrade: $(STAMP)
	$(BIN)/python -m pytest -q -m upgrade tests/upgrade

install: $(STAMP)

# Re-installs only when requirements.txt changes, so a no-op `make run` costs no pip time.
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/pip check
	# The package, editable (scripts/engine_factory): `engine-factory` and `python -m engine_factory` from any directory
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

check: $(STAMP)
	$(BIN)/python -m engine_factory check $(OPS_ARGS)

report: $(STAMP)
	$(SNAKEMAKE) --cores 1 --report artifacts/report/snakemake-report.html

# Operations (README "Operations"): exit status 1 means "needs work" (status) or "integrity problem" (verify).
status: $(STAMP)
	$(BIN)/python -m engine_factory status $(OPS_ARGS)

verify: $(STAMP)
	$(BIN)/python -m engine_factory verify $(OPS_ARGS)

# Lists the keys this host/config no longer builds; `make prune DELETE=1` removes them, KEEP="key ..." keeps some.
prune: $(STAMP)
	$(BIN)/python -m engine_factory prune $(OPS_ARGS) $(if $(DELETE),--delete) $(foreach k,$(KEEP),--keep $(k))

# The scheduled run (cron / systemd timer): factory, status, verify, artifacts/scheduled/last-run.md.
scheduled: $(STAMP)
	$(BIN)/python -m engine_factory scheduled $(OPS_ARGS) --cores $(CORES)

bench: $(STAMP)
	$(BIN)/python benchmarks/run_benchmarks.py

clean:
	rm -rf artifacts/* .snakemake
	touch artifacts/.gitkeep
