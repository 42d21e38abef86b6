# Two entry points for a fresh machine: `make demo` and `make test`. Both bootstrap .venv from nothing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: test test-min demo lint bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[cpu,dev,ray,serve]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

# Every runtime dependency at its declared floor (constraints-min.txt), in its own venv and model cache:
# a floor in pyproject.toml is only true if it installs and the fast tests pass on it.
test-min:
	$(PYTHON) -m venv .venv-min
	.venv-min/bin/pip install --quiet --upgrade pip
	.venv-min/bin/pip install --quiet -e ".[cpu,dev,serve]" -c constraints-min.txt
	.venv-min/bin/pip check
	CAMGATE_CACHE=.camgate-cache-min .venv-min/bin/python -m pytest -q -m "not slow and not browser and not server and not ray"

demo: $(STAMP)
	$(BIN)/camgate demo

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_explain.py
	$(BIN)/python benchmarks/bench_audit.py

clean:
	rm -rf $(VENV) .venv-min camgate-report .camgate-cache .camgate-cache-min .demo mlflow.db
