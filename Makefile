# Everyday commands. `make demo` and `make test` work on a fresh machine: they create .venv themselves.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint typecheck unit integration bench worker redis clean docker-test package-test

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	touch $@

redis:
	@.ci/ensure-redis

## The whole pipeline against a slow SMTP server, next to stdlib SMTPHandler.
demo: $(VENV)/.installed redis
	$(BIN)/python examples/demo.py

## Lint, type-check, then every test (unit and integration: real Redis, worker processes, SMTP server).
test: $(VENV)/.installed redis lint typecheck
	$(BIN)/pytest --cov=alerting --cov-report=term-missing:skip-covered --cov-fail-under=78

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed
	$(BIN)/mypy

unit: $(VENV)/.installed
	$(BIN)/pytest tests/unit

integration: $(VENV)/.installed redis
	$(BIN)/pytest tests/integration

bench: $(VENV)/.installed redis
	$(BIN)/python benchmarks/run_all.py

worker: $(VENV)/.installed redis
	$(BIN)/alerting worker

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

## docker-compose.yml run for real: engine (installed/started if missing), stand-in base images when no registry
## answers, compose up, /boom mailed, three workers throttling, down. Root on a machine without Docker.
docker-test:
	.ci/docker-test

## The package as users install it: sdist and wheel built and checked, the wheel alone in a fresh venv running a
## real worker, an app, `alerting send-test` and each extra. The dev venv only runs the SMTP server.
package-test: $(VENV)/.installed
	PYTHON=$(PYTHON) DEV_PYTHON=$(BIN)/python .ci/package-test
