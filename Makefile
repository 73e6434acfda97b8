# Two commands for a newcomer:  `make demo`  and  `make test`.  Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
# torch is installed first so that pip does not pull a multi-GB CUDA build where a CPU one exists.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint typecheck check clean mutants

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ablation-paths explain --out demo_output

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck

# Mutation testing of the core modules, each against its own tests (see docs/testing.md);
# MODULES="reductions scores" restricts it.
mutants: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python scripts/mutants.py $(MODULES)

clean:
	rm -rf $(VENV) demo_output .pytest_cache .mypy_cache .ruff_cache
