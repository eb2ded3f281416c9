# runwarden: `make run` serves the example config; `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= examples/runwarden.toml

.PHONY: run test lint migrate bench clean install image

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/runwarden serve --config $(CONFIG)

migrate: $(STAMP)
	$(BIN)/runwarden migrate

test: $(STAMP)
	$(BIN)/pytest -q

# Seeds (once) 2,000,000 runs into runwarden_bench, then every benchmark; see BENCHMARKS.md.
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The container image (Dockerfile); needs a Docker engine, which CI and these machines lack:
# tests/unit/test_container.py checks the Dockerfile and compose.yaml without one.
image:
	@command -v docker >/dev/null || { echo "make image: no docker command here" >&2; exit 1; }
	docker build --tag runwarden:latest .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
