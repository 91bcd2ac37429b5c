# Two commands for a newcomer: `make demo` and `make test`. Everything else is a helper.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export ENCAPTIO_DATA_DIR ?= $(CURDIR)/.encaptio

.PHONY: install demo ui prod-ui test services bench validate clean

# Re-install only when the pins or the project metadata change.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24"
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/encaptio demo

ui: install
	DAGSTER_HOME=$(ENCAPTIO_DATA_DIR)/dagster $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# The production profile: Dagster on PostgreSQL (ENCAPTIO_DAGSTER_PG_URL) with its run queue and daemon.
prod-ui: install
	scripts/run-production

services:
	bash .ci/services

validate: install
	DAGSTER_HOME=$(ENCAPTIO_DATA_DIR)/dagster $(BIN)/dagster definitions validate -w workspace.yaml

test: install services
	bash scripts/install-pgbackrest
	bash scripts/install-chromium
	$(BIN)/pytest -n 2 --dist loadgroup -q

bench: install
	$(BIN)/encaptio bench --help

clean:
	rm -rf $(ENCAPTIO_DATA_DIR) .pytest_cache
