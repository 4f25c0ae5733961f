# unipelt: `make run` trains the default run, `make test` runs the test suite. `make help` lists all.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
# Real GLUE lives beside the checkout in this workplace; elsewhere set UNIPELT_GLUE_DIR yourself.
SHARED_GLUE := $(abspath ../shared/data/glue)
ifneq ($(wildcard $(SHARED_GLUE)/SST-2/train.tsv),)
export UNIPELT_GLUE_DIR ?= $(SHARED_GLUE)
endif

.PHONY: help install run test lint format bench mutate clean

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## create the virtual environment and install unipelt with its test tools

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# setuptools' editable finder prints an "Editable installation" notice on every install: nothing to act on
	PYTHONWARNINGS='ignore:Editable installation' $(PY) -m pip install -q -e '.[test]'
	touch $@

run: install ## train the default run: UniPELT (APL) on MiniLM, SST-2, K=100
	$(VENV)/bin/unipelt train task=sst2

test: install ## run the test suite (unit tests on tiny models, a few on the real backbone and data)
	$(PY) -m pytest -q

lint: install ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install ## apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install ## run the benchmarks under bench/
	$(PY) bench/run.py

# Modules to mutate (default: every core module, see scripts/mutate.py): make mutate MODULES="unipelt_cli/metrics.py"
MODULES ?=

$(VENV)/.mutate: $(VENV)/.installed
	PYTHONWARNINGS='ignore:Editable installation' $(PY) -m pip install -q -e '.[mutate]'
	touch $@

mutate: $(VENV)/.mutate ## mutation score (mutmut) of the core modules; slow, not in CI: writes outputs/mutate/report.md
	nice -n 15 $(PY) scripts/mutate.py $(MODULES)

clean: ## remove the virtual environment and build leftovers (keeps outputs/)
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
