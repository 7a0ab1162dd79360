#!/usr/bin/env bash
# The served warehouse (warehouse/publish/postgres.py loads it): its `warehouse` database, owned by
# the connecting superuser (the publisher), and the read-only role BI tools log in as. Run by
# compose's Postgres when its volume is first created, and by `make up` at each start
# (warehouse/runtime/services.py): every statement may run again. The role gets CONNECT on
# `warehouse` only (each publish grants it SELECT on the served marts), a statement timeout, and
# nobody but their owners may connect to the metadata databases (Airflow's, Superset's).
set -euo pipefail
: "${WAREHOUSE_READER_PASSWORD:?set WAREHOUSE_READER_PASSWORD}"
psql -v ON_ERROR_STOP=1 --quiet --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v reader_password="$WAREHOUSE_READER_PASSWORD" <<'SQL'
select 'create database warehouse encoding ''UTF8'' locale ''C'' template template0'
where not exists (select from pg_database where datname = 'warehouse') \gexec
select 'create role warehouse_reader login'
where not exists (select from pg_roles where rolname = 'warehouse_reader') \gexec
alter role warehouse_reader with login nosuperuser nocreatedb nocreaterole password :'reader_password';
alter role warehouse_reader set statement_timeout = '5min';
alter role warehouse_reader set idle_in_transaction_session_timeout = '5min';
revoke all on database warehouse from public;
grant connect on database warehouse to warehouse_reader;
select format('revoke connect, temporary on database %I from public', datname)
from pg_database where datname in ('airflow', 'superset', 'postgres') \gexec
SQL
