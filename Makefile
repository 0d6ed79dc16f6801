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

.PHONY: run demo test bench check-config venv deps kernel-forwarder-check

run: venv
	$(BIN)/callgate run --config $(CONFIG)

demo: venv
	$(BIN)/callgate demo

check-config: venv
	$(BIN)/callgate check-config --config $(CONFIG)

# deps first: the install compiles the kernel forwarder where clang is present
# The suite runs on the compiled call path; its sources are the reference, so its
# unit tests run again on them (gateway/compiled.py).
test: deps venv
	$(BIN)/ruff check .
	$(BIN)/pytest
	CALLGATE_PURE_PYTHON=1 $(BIN)/pytest -q tests/unit/sip tests/unit/net tests/unit/calls \
		tests/unit/media

# the bench extra (Presidio) once; the project itself is installed by venv
bench: deps venv
	$(BIN)/python -c "import presidio_analyzer" 2>/dev/null \
		|| $(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	$(BIN)/python -m tests.bench

venv: kernel-forwarder-check $(STAMP)

# An install made before clang was there has no kernel forwarder: install again
# once clang and libbpf's headers are present.
kernel-forwarder-check:
	@if [ -e $(STAMP) ] && [ ! -e gateway/media/kernel_forward.bpf.o ] && command -v clang >/dev/null 2>&1 \
		&& [ -e /usr/include/bpf/bpf_helpers.h ]; then rm -f $(STAMP); fi

deps:
	bash scripts/install-test-deps.sh

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstalled when pyproject.toml changes (new dependencies, entry points) or the
# source of a compiled part does (the install compiles them): the forwarders, and the
# call path that mypyc compiles, with every module it reads types from
# (gateway/compiled.py).
COMPILED_SOURCES := $(shell find gateway dsp -name '*.py' -not -path '*/__pycache__/*')
$(STAMP): pyproject.toml setup.py $(COMPILED_SOURCES) \
		gateway/media/_fastpath.c gateway/media/kernel_forward.bpf.c | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@
