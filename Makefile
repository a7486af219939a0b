# Two commands for a fresh machine:  make run  (install + build the demo zoo)   make test  (install + test suite)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all
SNAKEMAKE := $(BIN)/snakemake --workflow-profile workflow/profiles/default

.PHONY: run test test-slow install check report clean bench

run: $(STAMP)
	$(SNAKEMAKE) --cores $(CORES)

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow tests

install: $(STAMP)

# Re-installs only when requirements.txt changes, so a no-op `make run` costs no pip time.
$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/pip check
	touch $(STAMP)

check: $(STAMP)
	$(BIN)/python -m scripts check config/config.yaml

report: $(STAMP)
	$(SNAKEMAKE) --cores 1 --report artifacts/report/snakemake-report.html

bench: $(STAMP)
	$(BIN)/python benchmarks/run_benchmarks.py

clean:
	rm -rf artifacts/* .snakemake
	touch artifacts/.gitkeep
