# Two commands matter: `make run` and `make test`. Each sets up what it needs by itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_OUTDIR := cdk.out
# Imports dominate a cold start and every test process: keep compiled bytecode, even where
# the environment says not to write it.
unexport PYTHONDONTWRITEBYTECODE
# Debian packages the integration tests use as real peers (installed when root and missing).
DEBIAN_TOOLS := dcmtk orthanc chromium
# ...and the benchmarks' peers.
DEBIAN_BENCH_TOOLS := libvips42

.PHONY: run test lint synth layer tools bench bench-tools debian-packages clean

$(BIN)/.installed: requirements/dev.txt requirements/runtime.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements/dev.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	touch $@

run: $(BIN)/.installed
	$(BIN)/orca-imaging serve

tools:
	@$(MAKE) -s debian-packages PACKAGES="$(DEBIAN_TOOLS)"

bench-tools:
	@$(MAKE) -s debian-packages PACKAGES="$(DEBIAN_BENCH_TOOLS)"

debian-packages:
	@missing=""; for pkg in $(PACKAGES); do dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "not root: tests needing$$missing will be skipped"; fi; \
	fi

layer: $(BIN)/.installed
	$(BIN)/python -m infra.layer

test: $(BIN)/.installed node_modules/.installed tools lint
	$(BIN)/python -m pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check layers functions infra tests
	$(BIN)/mypy

synth: $(BIN)/.installed node_modules/.installed layer
	node_modules/.bin/cdk synth --quiet
	$(BIN)/cfn-lint --non-zero-exit-code error $(CDK_OUTDIR)/*.template.json

# Speed runs live here, never in `make test`: this machine is shared and noisy.
bench: $(BIN)/.installed bench-tools
	$(BIN)/python -m bench.upload_api
	$(BIN)/python -m bench.photo_pipeline
	$(BIN)/python -m bench.dicom_ingest
	$(BIN)/python -m bench.dicom_service

clean:
	rm -rf $(VENV) node_modules cdk.out build .orca-local
