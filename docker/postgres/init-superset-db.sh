#!/usr/bin/env bash
# Runs once, when the Postgres volume is first created: Superset's own metadata database.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v superset_password="$SUPERSET_DB_PASSWORD" <<'SQL'
create user superset with password :'superset_password';
create database superset owner superset;
SQL
