#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL server, named to it in MIMSERVE_TEST_POSTGRES:
#   bash Tests/Postgres/with-cluster.sh swift test ...
# Installs Debian's postgresql when missing (silent when present), creates a cluster in a
# temporary folder owned by the postgres system user (the server refuses to run as root),
# listens on 127.0.0.1 at a free port and on a unix socket in that folder, and stops and
# removes it when the command ends, whatever its outcome. Exits with the command's status.
set -euo pipefail

SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
if ! dpkg-query -W -f='${Status}' postgresql 2>/dev/null | grep -q "ok installed"; then
  echo "installing system packages: postgresql"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi

# The server's binaries: pg_config --bindir may name the client's folder, so look for initdb
# beside it first, then in Debian's versioned folders (newest first).
bindir=""
for dir in "$(pg_config --bindir 2>/dev/null || true)" $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
  if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then bindir=$dir; break; fi
done
[ -n "$bindir" ] || { echo "with-cluster.sh: no initdb/pg_ctl found (is postgresql installed?)" >&2; exit 1; }

# As root, run the server as postgres; as anyone else, as oneself.
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

dir=$(mktemp -d /tmp/mimserve-pg.XXXXXX)
[ "$(id -u)" = 0 ] && chown postgres: "$dir"
chmod 700 "$dir"
stop() {
  as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap stop EXIT
trap 'exit 130' INT TERM

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_owner "$bindir/initdb" -D "$dir/data" --auth=trust --username=postgres --encoding=UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
  || { cat "$dir/initdb.log" >&2; exit 1; }
# fsync off: a test cluster dies with its folder, so durability buys nothing but time.
if ! as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=300" start >/dev/null; then
  cat "$dir/server.log" >&2; exit 1
fi
as_owner "$bindir/psql" -h "$dir" -p "$port" -U postgres -d postgres -q -c "CREATE DATABASE mimserve_test" >/dev/null

export MIMSERVE_TEST_POSTGRES="postgres://postgres@127.0.0.1:$port/mimserve_test?sslmode=disable"
echo "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') for the tests: $MIMSERVE_TEST_POSTGRES (socket in $dir)"
status=0
"$@" || status=$?
exit $status
