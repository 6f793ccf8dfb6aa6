# Two commands on a fresh machine: `make demo` (the main job on the embedded
# default) and `make test` (the test suite, the same command CI runs).
# Every target runs the venv's own tools: nothing needs activating.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install system-deps demo test ui status stop screenshots benchmark clean

$(BIN)/irisdag: setup.py
	@echo "== [1/3] creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	@echo "== [2/3] upgrading pip"
	$(BIN)/pip install --upgrade pip
	@echo "== [3/3] installing irisdag and its dependencies (first time: a few minutes)"
	$(BIN)/pip install -e '.[dev]'
	touch $@

install: $(BIN)/irisdag

demo: install
	$(BIN)/irisdag demo

system-deps:
	bash scripts/install-system-deps.sh

# Tests write only to temporary folders (the UI's screenshots too): `git status` stays clean.
test: install system-deps
	$(BIN)/python -m pytest irisdag_tests -q -p no:cacheprovider

# The UI on http://127.0.0.1:3000 (Ctrl-C stops it and everything it started).
ui: install
	$(BIN)/irisdag ui

status: install
	$(BIN)/irisdag status

# Stops this state folder's embedded Redis server (it keeps running between commands).
stop:
	@if [ -x $(BIN)/irisdag ]; then $(BIN)/irisdag stop; fi

# Refreshes the README's screenshots in docs/ (headless Chromium against the loopback stack).
screenshots: install system-deps
	IRISDAG_SCREENSHOTS_DIR=$(CURDIR)/docs $(BIN)/python -m pytest irisdag_tests/e2e/test_ui.py -q -p no:cacheprovider

benchmark: install
	$(BIN)/python -m benchmarks

clean: stop
	rm -rf .irisdag
