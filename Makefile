# Two commands for a new user: `make demo` and `make test`. Both create .venv on first use
# and reinstall only when pyproject.toml changes (the package is installed editable).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
NT_VENV := .venv-nt
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: demo test test-slow test-all docs bench bench-quick lint format clean help

help:
	@echo "make demo       set up .venv and run the seed experiment (ntkflow demo)"
	@echo "make test       set up .venv with the test extra and run the fast test suite"
	@echo "make test-slow  run only the tests marked slow"
	@echo "make test-all   run every test (but the built site's: make docs)"
	@echo "make docs       build the docs site (site/) with the tutorials executed, strict,"
	@echo "                and check it (tests/test_site.py)"
	@echo "make bench      NTK benchmarks (MLP structured, the generic path, a CNN) vs plain"
	@echo "                JAX, neural-tangents and torch.func, the flow"
	@echo "                solvers' benchmark and the deep-MLP scale table (bench/results/)"
	@echo "make lint       ruff (lint + format check) and pyright"
	@echo "make clean      remove .venv and caches"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.stamp-run: pyproject.toml | $(BIN)/python
	$(PIP) -e .
	@touch $@

# The tests cover the PyTorch and Flax adapters and the Ray executor too: their extras are
# installed, not skipped.
$(VENV)/.stamp-test: pyproject.toml | $(BIN)/python
	$(PIP) -e ".[test,torch,flax,ray]"
	@touch $@

$(VENV)/.stamp-docs: pyproject.toml | $(BIN)/python
	$(PIP) -e ".[test,torch,flax,ray,docs]"
	@touch $@

$(VENV)/.stamp-dev: pyproject.toml | $(BIN)/python
	$(PIP) -e ".[test,dev,torch,flax,ray]"
	@touch $@

demo: $(VENV)/.stamp-run
	$(BIN)/ntkflow demo

# neural-tangents' own venv is the reference of empirical_ntk_fn's test (tests/test_ntk_fn.py).
# The everyday suite compiles thousands of small programs and runs each a few times, so it
# asks XLA to compile fast rather than optimise: no LLVM optimisation and XLA's classic
# elemental emitter for fusions instead of its newer fusion emitters (a tiny MLP run's
# compiling 4.5 s -> 2.2 s; results agree to rounding). The neural-tangents subprocesses
# (jax 0.4.25, which has no fusion emitters) get the first two (NT_XLA_FLAGS,
# tests/helpers.py). make test-slow, docs, demo and bench compile at XLA's defaults, so CI
# runs both.
FAST_COMPILE = --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true
test: $(VENV)/.stamp-test $(NT_VENV)/.stamp
	XLA_FLAGS="$(FAST_COMPILE) --xla_cpu_use_fusion_emitters=false $$XLA_FLAGS" \
	NT_XLA_FLAGS="$(FAST_COMPILE)" \
	$(BIN)/python -m pytest -m "not slow and not site" -n auto --dist loadfile $(PYTEST_ARGS)

test-slow: $(VENV)/.stamp-test $(NT_VENV)/.stamp
	$(BIN)/python -m pytest -m slow -n auto --dist loadfile $(PYTEST_ARGS)

test-all: $(VENV)/.stamp-test $(NT_VENV)/.stamp
	$(BIN)/python -m pytest -m "not site" -n auto --dist loadfile $(PYTEST_ARGS)

# The site: mkdocs-material in strict mode, the API reference from the docstrings, and the
# tutorials (docs/tutorials/*.py, jupytext) executed; then the checks of what was built.
docs: $(VENV)/.stamp-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
	$(BIN)/python -m pytest -m site tests/test_site.py $(PYTEST_ARGS)

# neural-tangents 0.6.5 runs all three of its methods only on jax 0.4.25: its own venv.
$(NT_VENV)/.stamp:
	$(PYTHON) -m venv $(NT_VENV)
	$(NT_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		jax==0.4.25 jaxlib==0.4.25 neural-tangents==0.6.5 "numpy<2"
	@touch $@

bench: $(VENV)/.stamp-test $(NT_VENV)/.stamp
	$(BIN)/python bench/ntk.py --nt-python $(NT_VENV)/bin/python
	$(BIN)/python bench/generic.py --nt-python $(NT_VENV)/bin/python
	$(BIN)/python bench/cnn.py --nt-python $(NT_VENV)/bin/python
	$(BIN)/python bench/cnn_limit.py --nt-python $(NT_VENV)/bin/python
	$(BIN)/python bench/disk_kernel.py throughput
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/flows.py
	$(BIN)/python bench/flows_scale.py

bench-quick: $(VENV)/.stamp-run $(NT_VENV)/.stamp
	$(BIN)/python bench/ntk.py --quick --nt-python $(NT_VENV)/bin/python
	$(BIN)/python bench/flows.py --quick --out /tmp/ntkflow-bench-quick

lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check src tests bench docs/tutorials
	$(BIN)/ruff format --check src tests bench docs/tutorials
	$(BIN)/pyright

format: $(VENV)/.stamp-dev
	$(BIN)/ruff check --fix src tests bench docs/tutorials
	$(BIN)/ruff format src tests bench docs/tutorials

clean:
	rm -rf $(VENV) $(NT_VENV) .pytest_cache .ruff_cache .hypothesis build dist site
