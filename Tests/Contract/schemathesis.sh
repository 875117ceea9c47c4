#!/usr/bin/env bash
# Contract test: a bounded schemathesis run against the real server's /openapi.json.
# Zero 5xx, and every response must match the document (status, content type, schema).
# Usage: Tests/Contract/schemathesis.sh [path/to/mimserve]   (make test runs it)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${1:-$root/.build/release/mimserve}"
work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$bin" serve --port "$port" --data-dir "$work/data" --public-dir "$root/Public" --log-level error >"$work/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
schemathesis run "http://127.0.0.1:$port/openapi.json" \
  --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
  --max-examples 15 --seed 1 --no-color
kill -0 $pid  # the server is still up
echo "schemathesis: ok (server log: $(wc -l <"$work/server.log") lines)"
