# Two commands for a newcomer:  `make demo`  and  `make test`.  Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
# torch is installed first so that pip does not pull a multi-GB CUDA build where a CPU one exists.
TORCH_SPEC ?= torch==2.13.0
# The oldest build and runtime versions pyproject.toml declares (setuptools 77.0.0 is yanked).
LOWEST_SETUPTOOLS ?= 77.0.1
LOWEST_PILLOW ?= 9.1.0
SCRATCH ?= /tmp/ablation-paths-lower-bounds
# A second environment with a real torchvision (not a dependency; the tutorial's ResNet-50).
TV_VENV ?= .venv-torchvision
TV_SPEC ?= torch==2.14.1 torchvision==0.29.1
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast test-torchvision lint typecheck check docs wheel lower-bounds clean mutants

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

# The own-model tutorial and the torchvision: specs against a real torchvision (a CUDA build of
# torch that runs on the CPU, several GB): tests that need torchvision fail instead of skipping.
$(TV_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(TV_VENV)
	$(TV_VENV)/bin/python -m pip install -q --upgrade pip
	$(TV_VENV)/bin/python -m pip install -q $(TV_SPEC)
	$(TV_VENV)/bin/python -m pip install -q -e ".[dev]" $(TV_SPEC)
	touch $@

test-torchvision: $(TV_VENV)/.installed
	ABLATION_PATHS_REQUIRE_TORCHVISION=1 $(TV_VENV)/bin/python -m pytest -q tests/test_own_model.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck

# The HTML API reference from the docstrings (pdoc) in build/api/; fails when a module cannot be
# imported or a public name has no entry.
docs: $(STAMP)
	rm -rf build/api
	$(BIN)/python scripts/api_docs.py --out build/api

# Mutation testing of the core modules, each against its own tests (see docs/testing.md): every
# module of `scripts/mutants.py --list`, one after the other (about 1.5 h on two cores).
# MODULES="reductions scores" restricts it; MUTANT_MINUTES=15 stops each module after 15 minutes
# (mutants not run by then are reported as "not checked"); each module's record (score,
# survivors) is appended to MUTANT_JSON, which `scripts/mutants.py --rerun FILE` reads.
MUTANT_MINUTES ?=
MUTANT_JSON ?= build/mutants.jsonl
mutants: $(STAMP)
	mkdir -p $(dir $(MUTANT_JSON))
	OMP_NUM_THREADS=1 nice -n 10 $(BIN)/python scripts/mutants.py $(MODULES) \
		$(if $(MUTANT_MINUTES),--minutes $(MUTANT_MINUTES)) --json $(MUTANT_JSON) --survivors

# The wheel (with the report's template files as package data) in dist/.
wheel:
	$(PYTHON) -m pip wheel --no-deps -w dist .

# Build with the oldest declared setuptools, install into a clean venv with the oldest declared
# Pillow, and run both commands there (needs the package index; not part of `make test`).
lower-bounds:
	rm -rf $(SCRATCH)
	$(PYTHON) -m venv $(SCRATCH)/build
	$(SCRATCH)/build/bin/python -m pip install -q "setuptools==$(LOWEST_SETUPTOOLS)"
	$(SCRATCH)/build/bin/python -m pip wheel -q --no-build-isolation --no-deps -w $(SCRATCH)/dist .
	$(PYTHON) -m venv $(SCRATCH)/run
	$(SCRATCH)/run/bin/python -m pip install -q "$(TORCH_SPEC)"
	$(SCRATCH)/run/bin/python -m pip install -q $(SCRATCH)/dist/*.whl "pillow==$(LOWEST_PILLOW)" "$(TORCH_SPEC)"
	cd $(SCRATCH) && run/bin/ablation-paths --version && run/bin/spiral-cnn --version
	cd $(SCRATCH) && run/bin/ablation-paths explain --out demo --max-iterations 3
	test -s $(SCRATCH)/demo/report.html

clean:
	rm -rf $(VENV) $(TV_VENV) demo_output dist build .pytest_cache .mypy_cache .ruff_cache
