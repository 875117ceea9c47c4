# MIMServe — the two commands: `make run` and `make test`.
# Both install missing system packages first (apt-get, idempotent, silent when nothing is missing).

SYSTEM_PACKAGES := libopenblas-dev libsqlite3-dev libssl-dev libpng-dev libjpeg-dev pkg-config
SWIFT ?= swift
BENCH_ARGS ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps test run bench build release clean

deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

test: deps
	$(SWIFT) test -c release -Xswiftc -enable-testing

bench: deps
	$(SWIFT) run -c release mimserve-bench core $(BENCH_ARGS)

run: deps
	@echo "The HTTP server arrives with issue 6; for now try 'make bench' (compute-core benchmark)." >&2
	@exit 1

clean:
	rm -rf .build
