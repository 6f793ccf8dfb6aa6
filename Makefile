# Two commands on a fresh machine: `make demo` (the main job on the embedded
# default) and `make test` (the test suite, the same command CI runs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install system-deps demo test ui status benchmark clean

$(BIN)/irisdag: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/irisdag

demo: install
	$(BIN)/irisdag demo

system-deps:
	bash scripts/install-system-deps.sh

test: install system-deps
	$(BIN)/python -m pytest irisdag_tests -q -p no:cacheprovider

ui: install
	$(BIN)/irisdag ui

status: install
	$(BIN)/irisdag status

clean:
	rm -rf .irisdag

benchmark: install
	$(BIN)/python -m benchmarks
