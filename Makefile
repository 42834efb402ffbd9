# Two commands do all set-up on a fresh machine: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# CPU torch on machines without a GPU (a plain `torch` requirement pulls a multi-GB CUDA build).
TORCH_SPEC ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo "torch>=2.4" || echo "torch==2.13.0")

.PHONY: venv system-deps test lint demo front-end bench clean

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

## demo: synthesise the demo data and run every stage on it; prints where the report is.
demo: venv
	$(BIN)/fineco synth --config demo
	$(BIN)/fineco run --config demo

bench: venv
	$(BIN)/fineco bench decode --config demo
	$(BIN)/fineco bench extract --config demo
	$(BIN)/fineco bench train --config demo

clean:
	rm -rf artifacts .pytest_cache .ruff_cache
