#!/usr/bin/env bash
# Superset's start: migrate its metadata, create the admin, import the warehouse connection,
# datasets and dashboard (bi/superset/dashboard/), create the read-only Analyst role (and its
# user), then serve. docker-compose.yml runs it in the container with the defaults below;
# tests/test_superset.py runs this same script natively, only with other paths, port and
# metadata database address (SUPERSET_DB_HOST, SUPERSET_DB_PORT: see superset_config.py).
set -euo pipefail

# This folder (the config, the bundle, analyst_role.py): mounted at /app/warehouse_bi.
bi_dir=${SUPERSET_BI_DIR:-/app/warehouse_bi}
# The published warehouse's folder: ./data, mounted read-only at /warehouse.
data_dir=${WAREHOUSE_DATA_DIR:-/warehouse}
export SUPERSET_CONFIG_PATH=${SUPERSET_CONFIG_PATH:-$bi_dir/superset_config.py}
export FLASK_APP=${FLASK_APP:-superset.app:create_app()}
: "${SUPERSET_ADMIN_PASSWORD:?set SUPERSET_ADMIN_PASSWORD}"
: "${SUPERSET_ANALYST_PASSWORD:?set SUPERSET_ANALYST_PASSWORD}"

superset db upgrade
# Prints "User already exists" (and succeeds) on a restart.
superset fab create-admin --username admin --firstname Warehouse --lastname Admin \
  --email admin@localhost --password "${SUPERSET_ADMIN_PASSWORD}"
superset init

# The bundle: the folder's YAML zipped by bundle.py, the DuckDB connection pointed at
# $data_dir/warehouse.duckdb (the files say /warehouse/warehouse.duckdb, the container's path),
# the PostgreSQL one given WAREHOUSE_READER_PASSWORD, and the dashboard copied onto it.
: "${WAREHOUSE_READER_PASSWORD:?set WAREHOUSE_READER_PASSWORD}"
bundle_dir=$(mktemp -d)
bundle=$bundle_dir/warehouse_dashboard.zip
python "$bi_dir/bundle.py" "$bi_dir/dashboard" "$bundle" "$data_dir/warehouse.duckdb"
superset import-dashboards --path "$bundle" --username admin
rm -rf "$bundle_dir"

python "$bi_dir/analyst_role.py"

# As the image's /usr/bin/run-server.sh serves Superset (its defaults), on a bind address
# and port from the environment.
exec gunicorn \
  --bind "${SUPERSET_BIND_ADDRESS:-0.0.0.0}:${SUPERSET_PORT:-8088}" \
  --access-logfile "${ACCESS_LOG_FILE:--}" \
  --error-logfile "${ERROR_LOG_FILE:--}" \
  --workers "${SERVER_WORKER_AMOUNT:-1}" \
  --worker-class "${SERVER_WORKER_CLASS:-gthread}" \
  --threads "${SERVER_THREADS_AMOUNT:-20}" \
  --log-level "${GUNICORN_LOGLEVEL:-info}" \
  --timeout "${GUNICORN_TIMEOUT:-60}" \
  --keep-alive "${GUNICORN_KEEPALIVE:-2}" \
  --limit-request-line 0 \
  --limit-request-field_size 0 \
  "${FLASK_APP}"
