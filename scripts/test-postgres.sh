#!/usr/bin/env bash
# Make sure a PostgreSQL database for the tests exists and is reachable, and print its URL on
# stdout (nothing else goes to stdout). Idempotent: run it as often as you like.
#
#   HOTLINE_TEST_DATABASE_URL set   -> only check that it is reachable (exit 1 if not).
#   not set                          -> use postgres://hotline_test:hotline_test@127.0.0.1:5432/hotline_test;
#                                       if it is unreachable and this is root (or has sudo without a
#                                       password), start the local cluster (pg_ctlcluster) and create
#                                       the role and the database.
#
# Used by .ci/run (which also installs PostgreSQL where it is missing) and by the tests' global
# setup (test/helpers/postgres-global-setup.ts), so that `npm test` finds its database by itself.
set -euo pipefail

DEFAULT_URL="postgres://hotline_test:hotline_test@127.0.0.1:5432/hotline_test"
url="${HOTLINE_TEST_DATABASE_URL:-}"

reachable() { psql "$1" -XtAc 'SELECT 1' >/dev/null 2>&1; }

how_to() {
  cat >&2 <<'MSG'
The PostgreSQL tests need a database. Either
  - install and start PostgreSQL (Debian: apt-get install postgresql && pg_ctlcluster 15 main start)
    and run this script as root (or with password-less sudo) once: scripts/test-postgres.sh
  - or point the tests at one: HOTLINE_TEST_DATABASE_URL=postgres://user:pass@host:5432/db npm test
MSG
}

if ! command -v psql >/dev/null 2>&1; then
  echo "test-postgres: psql is not installed (package postgresql-client)." >&2
  how_to
  exit 1
fi

if [ -n "$url" ]; then
  if reachable "$url"; then echo "$url"; exit 0; fi
  echo "test-postgres: HOTLINE_TEST_DATABASE_URL is set but the database is unreachable: $(psql "$url" -XtAc 'SELECT 1' 2>&1 | head -1)" >&2
  exit 1
fi

if reachable "$DEFAULT_URL"; then echo "$DEFAULT_URL"; exit 0; fi

if [ "$(id -u)" = "0" ]; then as_root() { "$@"; }
elif sudo -n true 2>/dev/null; then as_root() { sudo -n "$@"; }
else
  echo "test-postgres: $DEFAULT_URL is unreachable, and starting PostgreSQL needs root." >&2
  how_to
  exit 1
fi

if ! command -v pg_lsclusters >/dev/null 2>&1; then
  echo "test-postgres: PostgreSQL is not installed (no pg_lsclusters)." >&2
  how_to
  exit 1
fi

# Start every cluster that is down (a fresh Debian install has one, e.g. 15/main).
while read -r version cluster _port status _rest; do
  if [ "$status" = "down" ]; then as_root pg_ctlcluster "$version" "$cluster" start >&2; fi
done < <(pg_lsclusters --no-header)

psql_admin() { as_root su postgres -c "psql -XtAq -v ON_ERROR_STOP=1 $*"; }
for _ in $(seq 1 50); do
  if psql_admin "-c 'SELECT 1'" >/dev/null 2>&1; then break; fi
  sleep 0.2
done
psql_admin "-c \"DO \\\$\\\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'hotline_test') THEN CREATE ROLE hotline_test LOGIN PASSWORD 'hotline_test'; END IF; END \\\$\\\$\"" >&2
if [ "$(psql_admin "-c \"SELECT 1 FROM pg_database WHERE datname = 'hotline_test'\"")" != "1" ]; then
  psql_admin "-c 'CREATE DATABASE hotline_test OWNER hotline_test'" >&2
fi

if reachable "$DEFAULT_URL"; then echo "$DEFAULT_URL"; exit 0; fi
echo "test-postgres: started PostgreSQL and created the database, but $DEFAULT_URL is still unreachable: $(psql "$DEFAULT_URL" -XtAc 'SELECT 1' 2>&1 | head -1)" >&2
how_to
exit 1
