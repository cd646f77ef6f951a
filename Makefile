# The interface: CI and the GitHub workflows call these targets, nothing else.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
LINT_VENV := .venv-lint
INFERENCE_VENV := .venv-inference
UV_VERSION := 0.13.9
IMAGE ?= abalone-model:local
PYTEST_ARGS ?=
# Python images and CI runners often set PYTHONDONTWRITEBYTECODE=1: every process then compiles
# every module it imports again (each test worker, each local job's subprocess; about 1.5 s each,
# a third of `make test`'s CPU). The project's own commands keep Python's default: bytecode cached
# in __pycache__ (git- and docker-ignored), written once by the first process that imports a module.
unexport PYTHONDONTWRITEBYTECODE

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

# The SageMaker SDK (~730 MB) that compiles the batch-inference pipeline's definition, apart from
# .venv: only `python -m mlops.inference_definition` runs here (the control plane runs it as a
# subprocess). The last line compiles a definition offline: a smoke test that also writes the
# bytecode of the modules it imports (~1700 of the SDK's 10000; the import then takes ~3 s, not 12).
# Only the lock is a prerequisite: the editable install reads nothing else from pyproject.toml.
$(INFERENCE_VENV)/.inference: requirements/inference.txt | $(BIN)/uv
	$(BIN)/uv venv -q --allow-existing --python $(PYTHON) $(INFERENCE_VENV)
	$(BIN)/uv pip install -q --python $(INFERENCE_VENV)/bin/python -r requirements/inference.txt
	$(BIN)/uv pip install -q --python $(INFERENCE_VENV)/bin/python --no-deps -e .
	echo '{"role_arn": "arn:aws:iam::123456789012:role/smoke"}' | \
		$(INFERENCE_VENV)/bin/python -m mlops.inference_definition --config /dev/stdin --out /dev/null
	touch $@

install: $(VENV)/.dev ## create .venv with everything the tests need

venv: $(VENV)/.pipeline ## create .venv with the pipeline only (the mlops CLI), as the deploy jobs use

inference-venv: $(INFERENCE_VENV)/.inference ## create .venv-inference: the SageMaker SDK for the inference pipeline

# --- the two README commands --------------------------------------------------------------------
test: ## run the whole test suite (unit, integration, system against local endpoints)
	@$(MAKE) --no-print-directory -j2 $(VENV)/.dev $(INFERENCE_VENV)/.inference  # both venvs at once
	$(BIN)/python -m pytest -n auto --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

pipeline: ## run the whole pipeline offline (moto control plane, real compute)
	@$(MAKE) --no-print-directory -j2 $(VENV)/.pipeline $(INFERENCE_VENV)/.inference
	$(BIN)/mlops run --local --approve

# --- a long-lived local AWS for your own dev loop (state in .mlops-local/) ---------------------
local-up: $(VENV)/.pipeline ## start the local AWS (moto, compute, endpoints, IAM); eval "$(make -s local-up)"
	@$(BIN)/mlops local up

local-status: $(VENV)/.pipeline ## is the local AWS running: pid, URLs, uptime, stacks, endpoints
	@$(BIN)/mlops local status

local-down: $(VENV)/.pipeline ## stop the local AWS (endpoints and compute with it)
	@$(BIN)/mlops local down

# --- the rest -----------------------------------------------------------------------------------
lint: $(LINT_VENV)/.lint ## every linter, as pre-commit runs them
	$(LINT_VENV)/bin/pre-commit run --all-files

bench: $(VENV)/.dev ## serving benchmark (this server vs the seeds' design) and batch transform cost
	$(BIN)/python scripts/bench/serving.py
	cd scripts/bench && ../../$(BIN)/python batch_transform.py

container-test: $(VENV)/.dev ## build the image and run train, evaluate and serve in it for real
	IMAGE=$(IMAGE) bash scripts/container-test

# The real workflows, run by nektos/act, on this machine (not in CI: it needs the actions' code):
# ci.yml as a pull request, then deploy.yml, rollback.yml and teardown.yml against the local AWS
# (a running `make local-up`, else one for the run). --approve approves prod, as for `pipeline`.
workflows: $(VENV)/.dev ## the real workflows under nektos/act; offline: ACTIONS_DIR=<owner/repo@sha folders>
	$(BIN)/python -m mlops.local.act.workflows --approve $(WORKFLOWS_ARGS)

lock: $(BIN)/uv ## re-pin requirements/*.txt from pyproject.toml
	UV=$(BIN)/uv scripts/lock

clean: ## remove virtualenvs and run folders
	rm -rf $(VENV) $(LINT_VENV) $(INFERENCE_VENV) runs .pytest_cache

.PHONY: help install venv inference-venv test pipeline local-up local-status local-down lint bench container-test workflows lock clean mutation

# --- mutation testing (not in CI: minutes, not seconds) -------------------------------------------
# The modules that protect prod: the gate, deploy, register, promote, rollback, the change-set
# deploy (stack), the server's parsing and limits, the ETL's validation
# (arguments, schema file, header, bad-row threshold; Spark-only code is left to the Spark tests).
MUTATE := mlops.steps.gate.* mlops.steps.deploy.* mlops.steps.register.* mlops.steps.promote.* \
	mlops.steps.rollback.* mlops.stack.* abalone_model.serve.parsing.* abalone_model.serve.app.* \
	abalone_model.etl.xǁConfigǁ* abalone_model.etl.xǁ_Parserǁ* abalone_model.etl.x_parse_args* \
	abalone_model.etl.x_load_schema* abalone_model.etl.x_read_raw* abalone_model.etl.x_check_bad_rows*
mutation: $(VENV)/.dev ## mutation testing with mutmut (pyproject [tool.mutmut]): score and survivors
	rm -rf mutants
	mkdir -p mutants && $(BIN)/mutmut run $(foreach m,$(MUTATE),'$(m)') >mutants/run.log 2>&1 || { tail -30 mutants/run.log; exit 1; }
	@$(BIN)/mutmut results --all true | $(BIN)/python -c 'import fnmatch, sys; \
	pats = sys.argv[1:]; \
	rows = [l.strip().rsplit(": ", 1) for l in sys.stdin if ": " in l]; \
	rows = [(k, s) for k, s in rows if any(fnmatch.fnmatchcase(k, p) for p in pats)]; \
	killed = sum(s == "killed" for _, s in rows); \
	[print(f"survived: {k} ({s})") for k, s in rows if s != "killed"]; \
	print(f"mutation score: {killed} killed / {len(rows)} mutants = {100 * killed / max(len(rows), 1):.1f}%")' $(MUTATE)
