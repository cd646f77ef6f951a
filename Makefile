# The interface: CI and the GitHub workflows call these targets, nothing else.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
LINT_VENV := .venv-lint
UV_VERSION := 0.13.9
IMAGE ?= abalone-model:local
PYTEST_ARGS ?=

help: ## list the targets
	@grep -hE '^[a-z][a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

# --- virtualenvs (each target installs what it needs; uv makes a fresh install fast) ---------------
$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.pipeline: requirements/pipeline.txt pyproject.toml | $(BIN)/uv
	$(BIN)/uv pip install -q --python $(BIN)/python -r requirements/pipeline.txt
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	touch $@

$(VENV)/.dev: requirements/dev.txt pyproject.toml | $(BIN)/uv
	$(BIN)/uv pip install -q --python $(BIN)/python -r requirements/dev.txt
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	touch $@ $(VENV)/.pipeline

$(LINT_VENV)/.lint: requirements/lint.txt | $(BIN)/uv
	$(BIN)/uv venv -q --allow-existing --python $(PYTHON) $(LINT_VENV)
	$(BIN)/uv pip install -q --python $(LINT_VENV)/bin/python -r requirements/lint.txt
	touch $@

install: $(VENV)/.dev ## create .venv with everything the tests need

venv: $(VENV)/.pipeline ## create .venv with the pipeline only (the mlops CLI), as the deploy jobs use

# --- the two README commands --------------------------------------------------------------------
test: $(VENV)/.dev ## run the whole test suite (unit, integration, system against local endpoints)
	$(BIN)/python -m pytest -n auto --dist loadfile $(PYTEST_ARGS)

pipeline: $(VENV)/.pipeline ## run the whole pipeline offline (moto control plane, real compute)
	$(BIN)/mlops run --local --approve

# --- the rest -----------------------------------------------------------------------------------
lint: $(LINT_VENV)/.lint ## every linter, as pre-commit runs them
	$(LINT_VENV)/bin/pre-commit run --all-files

bench: $(VENV)/.dev ## serving benchmark: this server vs the seeds' Flask/gunicorn design
	$(BIN)/python scripts/bench/serving.py

container-test: $(VENV)/.dev ## build the image and run train, evaluate and serve in it for real
	IMAGE=$(IMAGE) bash scripts/container-test

lock: $(BIN)/uv ## re-pin requirements/*.txt from pyproject.toml
	UV=$(BIN)/uv scripts/lock

clean: ## remove virtualenvs and run folders
	rm -rf $(VENV) $(LINT_VENV) runs .pytest_cache

.PHONY: help install venv test pipeline lint bench container-test lock clean
