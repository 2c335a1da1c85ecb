VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup test lint demo demo-down bench clean

setup:
	@scripts/setup.sh

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: setup lint
	$(PY) -m pytest -q -p no:cacheprovider tests

demo: setup
	$(PY) -m deploy.demo

bench: setup
	$(PY) -m bench.container_start

clean:
	rm -rf $(VENV) build *.egg-info

demo-down: setup
	$(PY) -m deploy.demo down
