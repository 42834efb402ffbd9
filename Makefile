# Two commands do all set-up on a fresh machine: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# CPU torch on machines without a GPU (a plain `torch` requirement pulls a multi-GB CUDA build).
TORCH_SPEC ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo "torch>=2.4" || echo "torch==2.13.0")

# The embedded Prefect server: SQLite and settings under the project, analytics off.
PREFECT_ENV := PREFECT_HOME=$(CURDIR)/.prefect PREFECT_API_URL=http://127.0.0.1:4200/api \
	DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false \
	PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT=false

.PHONY: venv system-deps test lint demo local-demo down bench clean

## system-deps: ffmpeg/ffprobe binaries (Debian package) when they are not on PATH.
system-deps:
	@if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing ffmpeg (Debian package)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null; \
	  else \
	    echo "ffmpeg and ffprobe are needed on PATH: install your distribution's ffmpeg package" >&2; exit 1; \
	  fi; \
	fi

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

venv: system-deps $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: venv lint
	$(BIN)/python -m pytest -q

## demo: synthesise the demo data, start the Prefect server (127.0.0.1:4200), the cpu and gpu
## work pools with their deployments and a process worker each (flows/server.py), then run
## fineco/full with `fineco submit full --watch`; the stack stays up (make down).
demo: venv
	$(BIN)/fineco synth --config demo
	$(PREFECT_ENV) $(BIN)/python -m flows.server up
	$(PREFECT_ENV) $(BIN)/fineco submit full --watch
	@$(BIN)/fineco run --config demo --stages report 2>/dev/null | grep '^report:'
	@echo "dashboard: http://127.0.0.1:4200 (stop with: make down)"

## local-demo: the same pipeline without Prefect (plain stage functions).
local-demo: venv
	$(BIN)/fineco synth --config demo
	$(BIN)/fineco run --config demo

## down: stop exactly the server and worker processes `make demo` started.
down:
	$(PREFECT_ENV) $(BIN)/python -m flows.server down

bench: venv
	$(BIN)/fineco bench decode --config demo
	$(BIN)/fineco bench extract --config demo
	$(BIN)/fineco bench train --config demo

clean: down
	rm -rf artifacts .prefect .pytest_cache .ruff_cache
