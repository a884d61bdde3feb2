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

.DEFAULT_GOAL := help
.PHONY: help env demo test docs

help:
	@echo "make demo   run the demo: prune a small CNN to 95% sparsity, results in out/demo"
	@echo "make test   run every notebook in nbs/ and the tests in tests/ (one pytest run)"
	@echo "make docs   rebuild docs/ and README.md from the notebooks (offline)"
	@echo "make env    build or update the virtual environment .venv (the targets above do it when needed)"

env: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install torch  # first, alone: the version comes from constraints.txt
	$(BIN)/python -m pip install -e '.[dev]'
	@touch $@

demo: $(STAMP)
	$(BIN)/fasterprune demo --sparsity 95 --schedule sched_onecycle --epochs 10 --out out/demo

test: $(STAMP)
	$(BIN)/python -m pytest

docs: $(STAMP)
	$(BIN)/python tools/build_docs.py
