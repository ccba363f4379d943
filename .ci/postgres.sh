#!/usr/bin/env bash
# Install (Debian packages) and start a local PostgreSQL for the tests that need one;
# prints the SQLAlchemy URL the tests read from CAPPUCCINO_TEST_POSTGRES_URL.
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | grep -q "^$version "; then
    pg_createcluster "$version" main >/dev/null
fi
pg_ctlcluster "$version" main start 2>/dev/null || pg_ctlcluster "$version" main status >/dev/null
for _ in $(seq 1 30); do
    su postgres -c "pg_isready -q -h 127.0.0.1" && break
    sleep 1
done
su postgres -c "psql -q -tc \"SELECT 1 FROM pg_roles WHERE rolname='cappuccino'\"" | grep -q 1 \
    || su postgres -c "psql -q -c \"CREATE ROLE cappuccino LOGIN SUPERUSER PASSWORD 'cappuccino'\""
su postgres -c "psql -q -tc \"SELECT 1 FROM pg_database WHERE datname='cappuccino_test'\"" | grep -q 1 \
    || su postgres -c "createdb -O cappuccino cappuccino_test"
echo "postgresql+psycopg://cappuccino:cappuccino@127.0.0.1:5432/cappuccino_test"
