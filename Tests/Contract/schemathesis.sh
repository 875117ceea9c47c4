#!/usr/bin/env bash
# Contract test: the real server against its own /openapi.json (Tests/Contract/contract.py):
# a scripted job lifecycle, fixture jobs, then schemathesis (examples, coverage, fuzzing and the
# stateful phase over the document's links). Zero 5xx, every response matches the document,
# undocumented methods get 405 with Allow, and every operation answers 2xx at least once.
# Usage: Tests/Contract/schemathesis.sh [path/to/mimserve]   (make test runs it)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${1:-$root/.build/release/mimserve}"
exec python3 "$root/Tests/Contract/contract.py" "$bin"
