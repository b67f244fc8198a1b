# tfs-traffic — every target sets up what it needs (venv, pip and Debian packages) by itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TFS_API_VERSION := 2.21.0
# Debian packages the tests and the demo use: a real Prometheus and promtool, VictoriaMetrics (the
# report's second query engine), Podman's Docker API,
# a static busybox for locally built base images, g++ for the patch code, h2load and wrk for benchmarks.
DEBIAN_PACKAGES := prometheus victoria-metrics podman busybox-static docker-registry g++ nghttp2-client wrk libgmock-dev rapidjson-dev libabsl-dev pkg-config

.PHONY: help setup system-deps test lint unit demo bench render clean patch-check test-upstream bench-patch upstream-suite

help:
	@echo "make demo   - run the retirement report on a simulated week of fleet history"
	@echo "make test   - lint (ruff, mypy) and run the test suite against real components"
	@echo "make bench  - benchmarks, printed as ratios measured in the same run"
	@echo "make upstream-suite TF_SERVING_SRC=DIR - TF Serving's own integration suite against the sim and the sidecar"
	@echo "make render - regenerate queries/, the chart's files/ and k8s/examples/ (Helm's engine)"
	@echo "make build-image TF_SERVING_VERSION=2.20.0 IMAGE=REPO/NAME:TAG [BAZEL_OPTIONS=..] [PUSH=1] [BUILD_WITH=docker|bazel]"
	@echo "             - patched TF Serving from source, packed into a runtime image (see build/)"

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
	$(BIN)/ruff check tfs_traffic tests bench tools
	$(BIN)/ruff format --check tfs_traffic tests bench tools
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest -q $(PYTEST_ARGS)

test: lint unit

demo: setup
	$(BIN)/tfs-traffic demo

bench: setup
	$(PY) -m bench

render: setup
	$(BIN)/tfs-traffic queries render --out queries
	$(BIN)/tfs-traffic k8s chart-files --chart k8s/chart
	@mkdir -p k8s/examples
	$(BIN)/tfs-traffic k8s render recommender --namespace serving --values k8s/values.example.yaml \
		--chart k8s/chart --out k8s/examples/recommender.yaml

# Dry run of the C++ patch series on a TF Serving source tree: make patch-check TF_SERVING_SRC=DIR
patch-check: setup
	@test -n "$(TF_SERVING_SRC)" || { echo "usage: make patch-check TF_SERVING_SRC=DIR [TF_SERVING_VERSION=V]"; exit 2; }
	$(BIN)/tfs-traffic patch check --source "$(TF_SERVING_SRC)" $(if $(TF_SERVING_VERSION),--version $(TF_SERVING_VERSION))

# The tests marked `upstream` (deselected in `make test`): the patch series on a real TF Serving checkout.
test-upstream: setup
	@test -n "$(TF_SERVING_SRC)" || { echo "usage: make test-upstream TF_SERVING_SRC=DIR"; exit 2; }
	TF_SERVING_SRC="$(TF_SERVING_SRC)" $(BIN)/pytest -q -m upstream tests/patches $(PYTEST_ARGS)

bench-patch: setup
	$(PY) -m bench patch

# TF Serving's own integration suite (tensorflow_model_server_test.py, run unchanged from the source tree)
# against `tfs-traffic sim`, directly and through the sidecar; not part of `make test` (tools/upstream_suite/).
upstream-suite: setup
	@test -n "$(TF_SERVING_SRC)" || { echo "usage: make upstream-suite TF_SERVING_SRC=DIR [UPSTREAM_SUITE_MODE=direct|sidecar|both]"; \
		echo "  DIR: a TF Serving source tree, e.g. an export of tag 2.20.0 of github.com/tensorflow/serving"; exit 2; }
	$(PY) tools/upstream_suite/run.py --source "$(TF_SERVING_SRC)" $(if $(UPSTREAM_SUITE_MODE),--mode $(UPSTREAM_SUITE_MODE))

# A patched TF Serving image (build/build-image.sh); docker-registry above serves its push tests.
# Variables given on the command line reach the script's environment (GNU make exports them).
.PHONY: build-image
build-image: $(STAMP)
	@TFS_TRAFFIC=$(BIN)/tfs-traffic $(SHELL) build/build-image.sh

clean:
	rm -rf $(VENV) out .mypy_cache .ruff_cache .pytest_cache
