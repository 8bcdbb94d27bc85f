# syncyard — two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install run test test-unit test-integration lint format bench schema clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml sandbox/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]' -e ./sandbox
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install syncyard with its pinned dependencies

run: $(STAMP) ## start embedded NATS + PostgreSQL + provider sandbox + syncyard, and say where to look
	$(BIN)/syncyard up

test: $(STAMP) ## the whole suite: unit, integration and fault tests on real NATS and PostgreSQL
	$(BIN)/python -m pytest

test-unit: $(STAMP) ## the quick inner loop: unit tests only, no servers
	$(BIN)/python -m pytest -m unit

lint: $(STAMP) ## format check, ruff, mypy (strict), the layers between folders, and the dependencies
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/deptry .

format: $(STAMP) ## apply ruff's formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP) ## benchmarks side by side with their baselines; see docs/BENCHMARKS.md
	$(BIN)/python -m bench

schema: $(STAMP) ## write the JSON Schemas of every command, event and result, and the AsyncAPI document, to schema/
	$(BIN)/syncyard schema --out schema

clean: ## remove the virtual environment and the local state folder
	rm -rf $(VENV) .syncyard .pytest_cache .mypy_cache .ruff_cache
