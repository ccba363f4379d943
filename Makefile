# Two commands on a fresh machine with Python >= 3.11 and make:
#   make demo   creates .venv, installs, runs the main job on the bundled sample
#   make test   creates .venv, installs, runs the test suite
# Installation is skipped when pyproject.toml and constraints.txt are unchanged.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# CPU torch from constraints.txt; on a CUDA host (nvidia-smi present) pip picks the CUDA build.
CONSTRAINTS := $(if $(shell command -v nvidia-smi 2>/dev/null),,-c constraints.txt)
EXTRAS ?= dev,live

.PHONY: demo test test-all lint typecheck bench clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), f"Python >= 3.11 needed, found {sys.version}"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(CONSTRAINTS) -e '.[$(EXTRAS)]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cappuccino demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ''

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m benchmarks.features
	$(BIN)/python -m benchmarks.env_steps
	$(BIN)/python -m benchmarks.ppo
	$(BIN)/python -m benchmarks.supervised
	$(BIN)/python -m benchmarks.tuning
	$(BIN)/python -m benchmarks.ft_encoder
	$(BIN)/python -m benchmarks.paper
	$(BIN)/python -m benchmarks.mappo
	$(BIN)/python -m benchmarks.scale

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
