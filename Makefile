# Quickstart: `make run` (set up .venv/ and run the default experiment), `make test` (set up and
# run the test suite). Both work on a fresh machine with only python3 and pip.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= experiments/quickstart.toml

.PHONY: run test lint format bench clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/sciml run $(CONFIG)

test: $(STAMP)
	$(BIN)/ruff check sciml tests experiments
	$(BIN)/python -m pytest -q --durations=15

lint: $(STAMP)
	$(BIN)/ruff check sciml tests experiments
	$(BIN)/ruff format --check sciml tests experiments

format: $(STAMP)
	$(BIN)/ruff format sciml tests experiments
	$(BIN)/ruff check --fix sciml tests experiments

clean-venv:
	rm -rf $(VENV)
