# fasterprune: `make demo` and `make test` are all a fresh clone needs; each builds .venv first when it is missing
# or older than pyproject.toml / constraints.txt.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# NB_FLAGS: notebook cell flags to run as well (e.g. `make test NB_FLAGS=slow` runs the `#| slow` cells)
NB_FLAGS ?=
export NB_FLAGS

# Every pip install goes through the pins in constraints.txt (CPU torch; no CUDA packages).
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt

# Headless Chromium for tests/test_docs.py: the `chromium` on the PATH, else installed with apt (Debian/Ubuntu) as
# /usr/bin/chromium; as root, or through sudo
CHROMIUM ?= $(or $(shell command -v chromium 2>/dev/null),/usr/bin/chromium)
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.DEFAULT_GOAL := help
.PHONY: help env demo test docs chromium

help:
	@echo "make demo   run the demos: prune a small CNN to 95% sparsity (out/demo), and 50% of its filters, then compact it (out/demo-compact)"
	@echo "make test   run every notebook in nbs/ and the tests in tests/ (one pytest run)"
	@echo "make docs   rebuild docs/ and README.md from the notebooks (offline)"
	@echo "make env    build or update the virtual environment .venv (the targets above do it when needed)"
	@echo "make chromium  install headless Chromium (apt) for the docs tests when it is missing (make test does it)"

env: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install torch  # first, alone: the version comes from constraints.txt
	$(BIN)/python -m pip install -e '.[dev]'
	@touch $@

demo: $(STAMP)
	$(BIN)/fasterprune demo --sparsity 95 --schedule sched_onecycle --epochs 10 --out out/demo
	$(BIN)/fasterprune demo --sparsity 50 --granularity filter --schedule sched_agp --epochs 10 --compact --out out/demo-compact

chromium: $(CHROMIUM)

$(CHROMIUM):
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
	@test -x $@ || { echo "apt installed chromium, but $@ is missing: set CHROMIUM=/path/to/chromium"; exit 1; }

test: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest

docs: $(STAMP)
	$(BIN)/python tools/build_docs.py
