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

## Run the quickstart: build the 110 emoji faces, train one real trial on them (CPU).
demo: $(STAMP)
	$(VENV)/bin/ganbench data build emoji-faces --resolution 32
	$(VENV)/bin/ganbench trial studies/trials/dcgan-emoji-faces-cpu.yaml --out $(RESULTS)/demo/dcgan-emoji-faces-cpu
	@echo
	@echo "Outputs: $(RESULTS)/demo/dcgan-emoji-faces-cpu/ (metrics.jsonl, samples/, checkpoints/, status.json)"

## Run the test suite (unit + tiny end-to-end); benchmarks are skipped here.
test: $(STAMP)
	$(PY) -m pytest -q --benchmark-skip

## Speed/memory targets (pytest-benchmark); compares against baselines in the same run.
bench: $(STAMP)
	$(PY) -m pytest -q tests/bench --benchmark-only --benchmark-columns=min,mean,max,rounds

clean-venv:
	rm -rf $(VENV)
