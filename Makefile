# The two commands a fresh clone needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.ganbench-installed
RESULTS ?= results

.PHONY: demo test bench install clean-venv

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

## Run the quickstart: one real trial on the embedded defaults (CPU, offline).
demo: $(STAMP)
	$(VENV)/bin/ganbench trial studies/trials/dcgan-shapes-cpu.yaml --out $(RESULTS)/demo/dcgan-shapes-cpu
	@echo
	@echo "Outputs: $(RESULTS)/demo/dcgan-shapes-cpu/ (metrics.jsonl, samples/, checkpoints/, status.json)"

## Run the test suite (unit + tiny end-to-end); benchmarks are skipped here.
test: $(STAMP)
	$(PY) -m pytest -q --benchmark-skip

## Speed/memory targets (pytest-benchmark); compares against baselines in the same run.
bench: $(STAMP)
	$(PY) -m pytest -q tests/bench --benchmark-only --benchmark-columns=min,mean,max,rounds

clean-venv:
	rm -rf $(VENV)
