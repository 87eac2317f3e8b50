# One target per job. `make test` and `make demo` set up everything they need on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
CLUSTER ?= dev
CACHE := $(or $(CONCH_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/conch)
# pytest-xdist workers for `make test` (0: in one process). Most integration tests wait on an
# API server, not a CPU: 2 workers took the suite from 14 min 51 s to 8 min 43 s
# (tests/conftest.py keeps a file, and every real-node test, on one worker).
WORKERS ?= 2

.PHONY: install system-deps image-deps images toolchain toolchain-pin crds lint test test-unit test-integration demo down bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

SYSTEM_DEPS := prometheus runc umoci  # each package's command has its name

system-deps:                ## Debian packages the tests start: Prometheus (rollout analysis); runc and umoci (the real node)
	@missing=$$(for dep in $(SYSTEM_DEPS); do command -v $$dep >/dev/null || test -x /usr/sbin/$$dep || echo $$dep; done); \
	[ -z "$$missing" ] || { \
	  command -v apt-get >/dev/null || { echo "install on PATH: $$missing"; exit 1; }; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; }

image-deps:                 ## Debian packages that build and run images without Docker
	@command -v mmdebstrap >/dev/null && command -v umoci >/dev/null && command -v runc >/dev/null || { \
	  command -v apt-get >/dev/null || { echo "install mmdebstrap, umoci and runc"; exit 1; }; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends mmdebstrap umoci runc >/dev/null; }

images: install image-deps  ## OCI archives of the operator, runtime and CPU Triton images (cached; docs/images.md)
	$(BIN)/conch dev images build

toolchain: install system-deps  ## build the pinned control-plane and real-node binaries once (cached outside the checkout)
	$(BIN)/conch dev toolchain build --node

toolchain-pin: install      ## regenerate operator/conch/dev/toolchain/go.mod from versions.py
	$(BIN)/conch dev toolchain pin

crds: install               ## regenerate crds/ from the API models (and the chart's copy)
	$(BIN)/conch crds
	cp crds/*.yaml charts/conch/crds/

lint: install                ## mypy's cache lives beside the toolchain's, so a fresh clone checks only what changed
	$(BIN)/ruff check operator runtime tests benchmarks
	$(BIN)/ruff format --check operator runtime tests benchmarks
	MYPY_CACHE_DIR=$(CACHE)/mypy $(BIN)/mypy

test: lint toolchain system-deps images  ## everything CI runs: lint, unit, image and integration tests
	$(BIN)/pytest -n $(WORKERS) --dist loadfile --no-loadscope-reorder  # work units: tests/conftest.py

test-unit: install
	$(BIN)/pytest tests/unit

test-integration: toolchain system-deps
	$(BIN)/pytest tests/integration

DEMO := $(HOME)/.cache/conch/demo

demo: toolchain             ## the local sandbox: control plane + operator + a real node; a model packaged (fp32 and int8), validated on a real Triton, pushed to the sandbox's S3 and answering from a pod on the real node
	@rm -rf $(DEMO) && \
	$(BIN)/python examples/models/digits.py $(DEMO) && \
	$(BIN)/conch package digits:build --search-path examples/models --weights $(DEMO)/weights.pt \
	  --example $(DEMO)/example.npz --output-names logits --validation $(DEMO)/validation.npz \
	  --quantize int8 --out $(DEMO)/pkg --name digits --version 2.0.0 && \
	$(BIN)/conch validate $(DEMO)/pkg && \
	$(BIN)/conch package digits:build --search-path examples/models --weights $(DEMO)/weights.pt \
	  --example $(DEMO)/example.npz --output-names logits --validation $(DEMO)/validation.npz \
	  --out $(DEMO)/pkg-fp32 --name digits --version 1.0.0 && \
	$(BIN)/conch validate $(DEMO)/pkg-fp32 && \
	KUBECONFIG=$$($(BIN)/conch dev cluster up --name $(CLUSTER) --operator --real-node) && \
	KUBECTL="$$($(BIN)/conch dev toolchain build)/kubectl --kubeconfig=$$KUBECONFIG" && \
	$$KUBECTL apply -f examples/ -f $(DEMO)/pkg/modelversion.yaml -f examples/demo/ && \
	$$KUBECTL wait --for=condition=Ready msvc --all --timeout=120s && \
	$$KUBECTL get nodes -L nvidia.com/gpu.product && \
	$$KUBECTL get mv,msvc,deploy,pods -o wide && \
	$(BIN)/conch dev demo $(DEMO)/pkg-fp32 --roll-out-to $(DEMO)/pkg --name $(CLUSTER) && \
	$$KUBECTL get msvc,pods -n conch-demo -o wide && \
	echo && echo "export KUBECONFIG=$$KUBECONFIG  # then: make down"

down: install               ## stop the sandbox started by `make demo`
	$(BIN)/conch dev cluster down --name $(CLUSTER)

bench: toolchain system-deps  ## every benchmark; each prints ratios against its baseline
	@command -v wrk >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq wrk >/dev/null; }
	$(BIN)/python benchmarks/control_plane.py
	$(BIN)/python benchmarks/rollout.py
	$(BIN)/python benchmarks/compression.py
	$(BIN)/python benchmarks/serving.py

clean: down
	rm -rf $(VENV)
