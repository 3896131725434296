# AeroGrid — every job a developer or CI runs. `make demo` and `make test` set up
# everything they need on a fresh machine (Python 3.11, Java 17 + Maven, Node 20).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
UV_VERSION := 0.13.8
CACHE_DIR ?= $(HOME)/.cache/aerogrid
UV := $(CACHE_DIR)/uv-$(UV_VERSION)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
NODE_DIR := tests/excel/node
export UV_PYTHON_DOWNLOADS := never
export UV_CACHE_DIR ?= $(HOME)/.cache/uv
export AEROGRID_UV := $(UV)
EXCEL_DIR := excel
ADDIN := $(EXCEL_DIR)/dist/addin/functions.js
ADDIN_SOURCES := $(shell find $(EXCEL_DIR)/src $(EXCEL_DIR)/pages $(EXCEL_DIR)/scripts -type f 2>/dev/null) \
  $(EXCEL_DIR)/harness.html $(EXCEL_DIR)/package.json $(EXCEL_DIR)/tsconfig.json

.PHONY: help install demo test lint typecheck unit integration bench proto clean node kafka kcat compat-table k8s grpcurl conformance buf excel test-k8s k8s-node chromium binary dist excel-screenshot images schema-registry

help:  ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(CACHE_DIR)/uv-$(UV_VERSION)
	$(CACHE_DIR)/uv-$(UV_VERSION)/bin/pip install --quiet uv==$(UV_VERSION)

install: $(UV) $(ADDIN)  ## Create .venv with every component and dev tool, build the Excel add-in and its local manifest (idempotent)
	$(UV) sync --all-packages --frozen --python $(PYTHON) --quiet
	$(BIN)/aerogrid excel manifest --endpoint https://localhost:50051 --out $(EXCEL_DIR)/dist/manifest.xml
	@$(BIN)/aerogrid --version

$(NODE_DIR)/node_modules/.package-lock.json: $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --cache $(CACHE_DIR)/npm --loglevel=error
	touch $@

# The connect-es test client; it imports the add-in's generated code (excel/dist/gen, built with $(ADDIN)).
node: $(NODE_DIR)/node_modules/.package-lock.json $(ADDIN)

$(EXCEL_DIR)/node_modules/.package-lock.json: $(EXCEL_DIR)/package-lock.json
	cd $(EXCEL_DIR) && npm ci --no-audit --no-fund --cache $(CACHE_DIR)/npm --loglevel=error

# The add-in's bundle (functions, task pane, sign-in, harness; excel/dist/addin), rebuilt
# when a source changes.
$(ADDIN): $(EXCEL_DIR)/node_modules/.package-lock.json $(ADDIN_SOURCES)
	cd $(EXCEL_DIR) && npm run --silent build
	touch $@

excel: install  ## The Excel add-in: generated code fresh, unit tests (the build is part of install)
	cd $(EXCEL_DIR) && npm run --silent check-gen && npm test --silent

chromium:  ## Headless Chromium from Debian's packages (the add-in's harness page is tested in it)
	bash scripts/install_chromium.sh || [ $$? -eq 3 ]  # 3: cannot install here; the tests skip (fail if CI=true)

excel-screenshot: install excel chromium  ## Regenerate docs/excel-harness.png (the harness page in headless Chromium)
	$(BIN)/python scripts/harness_screenshot.py

binary: install excel  ## The desktop binary, one-dir (PyInstaller): dist/binary/onedir/aerogrid/aerogrid
	UV=$(UV) scripts/build_binary.sh onedir

dist: install excel  ## Wheels and sdists of every component, and the binary (one-dir and one-file), in dist/
	rm -rf dist/*.whl dist/*.tar.gz devkit/src/aerogrid_devkit/addin
	# the devkit's wheel ships the add-in bundle (served by aerogrid dev); the copy is only for the build
	cp -r excel/dist/addin devkit/src/aerogrid_devkit/addin
	$(UV) build --all-packages --quiet --out-dir dist || { rm -rf devkit/src/aerogrid_devkit/addin; exit 1; }
	rm -rf devkit/src/aerogrid_devkit/addin
	UV=$(UV) scripts/build_binary.sh onedir onefile
	@ls -1 dist/*.whl dist/*.tar.gz; du -sh dist/binary/onedir/aerogrid dist/binary/onefile/aerogrid

images: dist  ## Build the runtime, platform and builder images with buildah on local stand-ins for their public bases (cached; OCI archives in ~/.cache/aerogrid/images/)
	bash scripts/build_images.sh >/dev/null || [ $$? -eq 3 ]  # 3: not root / cannot install buildah; the tests skip (fail if CI=true)

kafka:  ## Fetch the Apache Kafka jars (the broker's, and the console tools') into the cache (once per version)
	bash scripts/fetch_kafka.sh >/dev/null
	bash scripts/fetch_kafka.sh tools >/dev/null

schema-registry:  ## Build the real Apicurio Registry 2.4.2.Final from Maven Central into the cache (once; the registry-format tests run it)
	bash scripts/build_schema_registry.sh >/dev/null || [ $$? -eq 3 ]  # 3: no Java/Maven; the tests skip (fail if CI=true)

kcat:  ## Debian's kcat (the broker compatibility suite runs it)
	bash scripts/install_kcat.sh || [ $$? -eq 3 ]  # 3: cannot install here; the tests skip (fail if CI=true)

compat-table: install kafka kcat  ## Rewrite the README's client compatibility table (and its data file) from what the suite sees
	AEROGRID_COMPAT_REFRESH=1 $(BIN)/pytest tests/devkit/compat -q

k8s:  ## Build etcd, kube-apiserver, controller-manager, scheduler, kubelet and kube-proxy from Go modules (once per version)
	bash scripts/build_k8s.sh >/dev/null || [ $$? -eq 3 ]  # 3: no Go; the tests skip (fail if CI=true)

k8s-node: k8s  ## The test bed's node: containerd, runc, CNI, skopeo (Debian), the local registry and pause image (once)
	bash scripts/build_node.sh >/dev/null || [ $$? -eq 3 ]  # 3: not root / no Go; the tests skip (fail if CI=true)

grpcurl:  ## Build grpcurl from the Go module proxy (once per version; the gRPC interop tests use it)
	bash scripts/build_grpcurl.sh >/dev/null || [ $$? -eq 3 ]  # 3: no Go; the tests skip (fail if CI=true)

conformance:  ## Build the Connect conformance runner from the Go module proxy (once per version)
	bash scripts/build_conformance.sh >/dev/null || [ $$? -eq 3 ]  # 3: no Go; the test skips (fail if CI=true)

buf:  ## Build buf (for `buf curl`) from the Go module proxy (once per version)
	bash scripts/build_buf.sh >/dev/null || [ $$? -eq 3 ]  # 3: no Go; the tests skip (fail if CI=true)

demo: install  ## The TUI on the orders app, the embedded broker and a feed of orders (q: back to the apps, q again: quit)
	$(BIN)/aerogrid demo $(if $(HEADLESS),--headless) $(if $(DURATION),--duration $(DURATION))

lint: install  ## ruff (lint and format)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install  ## mypy --strict
	$(BIN)/mypy

unit: install  ## Fast tests, no broker
	$(BIN)/pytest tests/runtime/unit -q

test: install node kafka schema-registry kcat k8s k8s-node grpcurl conformance buf excel chromium binary images lint typecheck  ## Everything: lint, types, unit and integration tests on real brokers
	$(BIN)/pytest -q -ra

test-k8s: install k8s k8s-node  ## The cloud tests against a real control plane (etcd, kube-apiserver, controllers) and a real node
	$(BIN)/pytest tests/cloud -q -ra

bench: install kafka k8s dist schema-registry  ## Benchmarks against Faust and a bare aiokafka loop (see benchmarks/README.md)
	$(BIN)/python -m benchmarks.run

proto: install  ## Regenerate the Python code of proto/
	PATH=$(BIN):$$PATH scripts/gen_proto.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
