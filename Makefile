VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup test lint demo demo-down bench clean proto

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

# The controller API's protobuf code, committed; tests/unit/test_proto_in_sync.py checks it.
proto: setup
	$(PY) -m grpc_tools.protoc -I. --python_out=. --pyi_out=. controller/api/proto/shoal.proto

bench: setup
	$(PY) -m bench.container_start
	$(PY) -m bench.scheduling
	$(PY) -m bench.failover
	$(PY) -m bench.overlay_routes
	$(PY) -m bench.net_attach
	$(PY) -m bench.net_throughput
	$(PY) -m bench.service_start
	$(PY) -m bench.metrics_scrape

clean:
	rm -rf $(VENV) build *.egg-info

demo-down: setup
	$(PY) -m deploy.demo down
