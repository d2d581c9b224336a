# The two commands a person needs: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench clean deploy-test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m example_server --sandbox $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check plugin example_server tests bench docs
	$(BIN)/ruff format --check plugin example_server tests bench docs

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy --strict docs/examples

unit: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

deploy-test: $(STAMP)
	$(BIN)/python deploy/check.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
