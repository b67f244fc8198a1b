# tfs-traffic — every target sets up what it needs (venv, pip and Debian packages) by itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TFS_API_VERSION := 2.21.0
# Debian packages the tests and the demo use: a real Prometheus and promtool, Podman's Docker API,
# a static busybox for locally built base images, g++ for the patch code, h2load and wrk for benchmarks.
DEBIAN_PACKAGES := prometheus podman busybox-static g++ nghttp2-client wrk libgmock-dev

.PHONY: help setup system-deps test lint unit demo bench render clean

help:
	@echo "make demo   - run the retirement report on a simulated week of fleet history"
	@echo "make test   - lint (ruff, mypy) and run the test suite against real components"
	@echo "make bench  - benchmarks, printed as ratios measured in the same run"
	@echo "make render - regenerate queries/ and k8s/ from the package"

setup: system-deps $(STAMP)

system-deps:
	@bash .ci/debian-packages.sh $(DEBIAN_PACKAGES)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@# Its wheel depends on TensorFlow, but the config and API protos we read need protobuf only.
	$(PY) -m pip install -q --no-deps tensorflow-serving-api==$(TFS_API_VERSION)
	@touch $@

lint: setup
	$(BIN)/ruff check tfs_traffic tests bench
	$(BIN)/ruff format --check tfs_traffic tests bench
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest -q $(PYTEST_ARGS)

test: lint unit

demo: setup
	$(BIN)/tfs-traffic demo

bench: setup
	$(PY) -m bench

render: setup
	$(BIN)/tfs-traffic render --out .

clean:
	rm -rf $(VENV) out .mypy_cache .ruff_cache .pytest_cache
