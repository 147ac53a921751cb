# The two commands a fresh clone needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.ganbench-installed
RESULTS ?= results

.PHONY: demo test bench docs install clean-venv

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

## Run the quickstart study: build the emoji datasets, pretrain the transfer source once,
## run 8 trials (scratch / finetune x 4 seeds, 25,600 samples each) on an embedded Ray,
## print the comparison against scratch and write the HTML report. Rerun: resumes.
demo: $(STAMP)
	@if [ -f $(RESULTS)/quickstart/study.yaml ]; then resume=--resume; else resume=; fi; \
	$(VENV)/bin/ganbench run studies/quickstart.yaml --results $(RESULTS) $$resume
	@echo
	$(VENV)/bin/ganbench table $(RESULTS)/quickstart --kind pairwise
	$(VENV)/bin/ganbench report $(RESULTS)/quickstart

## Run the test suite (unit + tiny end-to-end); benchmarks are skipped here.
test: $(STAMP)
	$(PY) -m pytest -q --benchmark-skip

## Speed/memory targets (pytest-benchmark); compares against baselines in the same run.
bench: $(STAMP)
	$(PY) -m pytest -q tests/bench --benchmark-only --benchmark-columns=min,mean,max,rounds

## Regenerate docs/config-reference.md and docs/cli-reference.md from the specs and the CLI.
docs: $(STAMP)
	COLUMNS=100 $(PY) -m harness.reference

clean-venv:
	rm -rf $(VENV)
