# One target per job. `make test` and `make demo` set up everything they need on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
CLUSTER ?= dev

.PHONY: install toolchain toolchain-pin crds lint test test-unit test-integration demo down bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

toolchain: install          ## build the pinned control-plane binaries once (cached outside the checkout)
	$(BIN)/conch dev toolchain build

toolchain-pin: install      ## regenerate operator/conch/dev/toolchain/go.mod from versions.py
	$(BIN)/conch dev toolchain pin

crds: install               ## regenerate crds/ from the API models (and the chart's copy)
	$(BIN)/conch crds
	cp crds/*.yaml charts/conch/crds/

lint: install
	$(BIN)/ruff check operator runtime tests
	$(BIN)/mypy

test: lint toolchain        ## everything CI runs: lint, unit and integration tests
	$(BIN)/pytest

test-unit: install
	$(BIN)/pytest tests/unit

test-integration: toolchain
	$(BIN)/pytest tests/integration

demo: toolchain             ## the local sandbox: control plane + CRDs + operator, the examples served
	@KUBECONFIG=$$($(BIN)/conch dev cluster up --name $(CLUSTER) --operator) && \
	KUBECTL="$$($(BIN)/conch dev toolchain build)/kubectl --kubeconfig=$$KUBECONFIG" && \
	$$KUBECTL apply -f examples/ && \
	$$KUBECTL wait --for=condition=Ready msvc --all --timeout=120s && \
	$$KUBECTL get nodes -L nvidia.com/gpu.product && \
	$$KUBECTL get mv,msvc,deploy,pods -o wide && \
	echo && echo "export KUBECONFIG=$$KUBECONFIG  # then: make down"

down: install               ## stop the sandbox started by `make demo`
	$(BIN)/conch dev cluster down --name $(CLUSTER)

clean: down
	rm -rf $(VENV)
