# callgate developer entry points.
#   make run           start the gateway on the embedded defaults (config/gateway.toml)
#   make demo          three calls through a gateway with built-in phones, printed
#   make test          lint and run the whole test suite
#   make bench         run the benchmarks
#   make check-config  validate the settings file and summarise it
# Each target creates .venv and installs the project into it when needed;
# once that is done they start straight away.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= config/gateway.toml

.PHONY: run demo test bench check-config venv deps

run: venv
	$(BIN)/callgate run --config $(CONFIG)

demo: venv
	$(BIN)/callgate demo

check-config: venv
	$(BIN)/callgate check-config --config $(CONFIG)

test: venv deps
	$(BIN)/ruff check .
	$(BIN)/pytest

bench: venv deps
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]' && $(BIN)/python -m tests.bench

venv: $(STAMP)

deps:
	bash scripts/install-test-deps.sh

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstalled when pyproject.toml changes (new dependencies, entry points) or the
# native forwarder's source does (the install compiles it).
$(STAMP): pyproject.toml setup.py gateway/media/_fastpath.c | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@
