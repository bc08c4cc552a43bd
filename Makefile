# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export RAY_USAGE_STATS_ENABLED := 0
export DAGSTER_DISABLE_TELEMETRY := 1

.PHONY: install run dev test lint bench clean

# Reinstall only when the dependencies change.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Lint, format and type checks first (seconds), then the whole suite, naming its slowest tests.
test: lint
	$(BIN)/python -m pytest --durations=15

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Demo slides (when WSI_SLIDE_ROOT is unset), every table of every slide materialized through
# Dagster in the persistent instance (DAGSTER_HOME = project root, data in .dagster/), summary.
run: $(STAMP) .env
	mkdir -p .dagster
	DAGSTER_HOME="$(CURDIR)" $(BIN)/python -m wsi_assets.run_demo

# The Dagster UI, daemon, sensor and schedule on the same instance.
dev: $(STAMP) .env
	mkdir -p .dagster
	DAGSTER_HOME="$(CURDIR)" $(BIN)/dagster dev

# Lets a bare `dagster dev` in the project root use dagster.yaml (written once, never replaced).
.env:
	printf '# Written by make run: dagster dev reads this and uses the instance in dagster.yaml.\nDAGSTER_HOME=%s\n' "$(CURDIR)" > $@

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
