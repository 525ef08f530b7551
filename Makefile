# Every target creates the virtual environment with pinned dependencies when it is missing.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# python3.12 matches the Lambda runtime; pyenv keeps it outside PATH on some machines.
PYTHON312 := $(shell for p in python3.12 /root/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12; do \
	if $$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1; then command -v $$p || echo $$p; break; fi; done)
# sam build looks for python3.12 on PATH: the venv provides it.
export PATH := $(abspath $(BIN)):$(PATH)
export AWS_DEFAULT_REGION ?= us-east-1
# Tests and benchmarks talk to moto only: never let the SDK look for an instance metadata endpoint.
export AWS_EC2_METADATA_DISABLED := true
export SAM_CLI_TELEMETRY := 0
# pip itself, pinned with the hashes of its wheel and sdist (the venv's bundled pip only installs it).
PIP_REQUIREMENT := pip==26.3 \
	--hash=sha256:6c36ae7da8695be67e3cd9f7d87919667ced53f57ce2ede75d89b5912ed2bc4c \
	--hash=sha256:f3b60b20ffaadd4415ed7957212a38ac63fa4c5fa375bd0f4a797777940fad13
# What `make lock` compiles the locks with, in a throwaway environment.
UV_REQUIREMENT := uv==0.13.8
LOCK_TOOLS := .lock-tools

.PHONY: install test test-reliability test-fast lint format build validate invoke run bench lock clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -n "$(PYTHON312)" || { echo "python3.12 is required (the Lambda runtime version)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON312) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r <(echo '$(PIP_REQUIREMENT)')
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

## The whole product on this machine, no AWS account: the embedded local stack runs the demo workload.
run: $(STAMP)
	$(BIN)/batchgate local demo

## The full check: lint, types, and every test (unit, integration, template validate and build).
test: lint
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

## The reliability run: every test of tests/reliability with the large counts and the local stack's
## load run (marked reliability_full, which `make test` leaves out). One process: its tally becomes
## docs/reliability.md when BATCHGATE_WRITE_RELIABILITY=1.
test-reliability: $(STAMP)
	$(BIN)/python -m pytest -q -m "" tests/reliability

## Unit tests only (in-process moto), for a quick loop.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not integration and not reliability_full"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	cd layers/batchgate && ../../$(BIN)/lint-imports --config ../../pyproject.toml

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

validate: $(STAMP)
	$(BIN)/sam validate --lint

# The functions' and the layer's architecture (template parameter Architecture). The layer's Makefile
# does not get it from sam build, hence BATCHGATE_LAYER_ARCHITECTURE. `make invoke` builds for this
# machine's architecture, so that sam local invoke runs the functions without an emulator.
ARCHITECTURE ?= arm64
HOST_ARCHITECTURE := $(if $(filter aarch64 arm64,$(shell uname -m)),arm64,x86_64)
ARCHITECTURE_FLAGS = --parameter-overrides Architecture=$(ARCHITECTURE)

build: $(STAMP)
	BATCHGATE_LAYER_ARCHITECTURE=$(ARCHITECTURE) $(BIN)/sam build $(ARCHITECTURE_FLAGS)

# The running local stack's env-vars file (`batchgate local up` writes it beside its state file), else
# the sample one; a container reaches the local endpoint on 127.0.0.1 through the host's network.
SAM_ENV ?= $(firstword $(wildcard $(or $(BATCHGATE_LOCAL_STATE:.json=-sam-env.json),$(HOME)/.batchgate/local-sam-env.json)) events/env.json)
SAM_INVOKE_FLAGS ?= $(if $(filter events/env.json,$(SAM_ENV)),,--docker-network host) $(ARCHITECTURE_FLAGS)

## sam local invoke needs Docker and the Lambda base image (see README).
invoke: ARCHITECTURE = $(HOST_ARCHITECTURE)
invoke: build
	$(BIN)/sam local invoke DispatchFunction --event events/sqs-submit-batch.json --env-vars $(SAM_ENV) $(SAM_INVOKE_FLAGS)
	$(BIN)/sam local invoke TrackFunction --event events/task-stopped-exit-0.json --env-vars $(SAM_ENV) $(SAM_INVOKE_FLAGS)
	$(BIN)/sam local invoke HistoryFunction --event events/job-stream-attempt-stopped.json --env-vars $(SAM_ENV) $(SAM_INVOKE_FLAGS)
	$(BIN)/sam local invoke JobEventsFunction --event events/job-stream-status-change.json --env-vars $(SAM_ENV) $(SAM_INVOKE_FLAGS)
	$(BIN)/sam local invoke SweepFunction --event events/sweep-schedule.json --env-vars $(SAM_ENV) $(SAM_INVOKE_FLAGS)

bench: $(STAMP)
	$(BIN)/python -m bench

## requirements.lock (development) and layers/batchgate/requirements.txt (the layer) from their .in
## files: every package pinned, with the hashes of each file of its release (the layer's arm64 and
## x86_64 wheels alike). Pins stay unless an .in
## file changes them; `make lock UPGRADE=--upgrade` moves every package to its latest release.
lock:
	@test -n "$(PYTHON312)" || { echo "python3.12 is required (the Lambda runtime version)"; exit 1; }
	rm -rf $(LOCK_TOOLS) && $(PYTHON312) -m venv $(LOCK_TOOLS)
	$(LOCK_TOOLS)/bin/python -m pip install --quiet $(UV_REQUIREMENT)
	$(LOCK_TOOLS)/bin/uv pip compile --quiet --generate-hashes --python-version 3.12 \
		--custom-compile-command "make lock" $(UPGRADE) requirements.in -o requirements.lock
	$(LOCK_TOOLS)/bin/uv pip compile --quiet --generate-hashes --python-version 3.12 \
		--python-platform aarch64-manylinux2014 --custom-compile-command "make lock" $(UPGRADE) \
		layers/batchgate/requirements.in -o layers/batchgate/requirements.txt
	rm -rf $(LOCK_TOOLS)

clean:
	rm -rf $(VENV) $(LOCK_TOOLS) .aws-sam .pytest_cache .mypy_cache .ruff_cache
