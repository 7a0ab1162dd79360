#!/usr/bin/env bash
# Superset's start in docker-compose.yml: migrate its metadata, create the admin from .env,
# import the warehouse connection, datasets and dashboard (bi/superset/dashboard/), serve.
set -euo pipefail

superset db upgrade
superset fab create-admin --username admin --firstname Warehouse --lastname Admin \
  --email admin@localhost --password "${SUPERSET_ADMIN_PASSWORD}" || true  # exists on restart
superset init

bundle=/tmp/warehouse_dashboard.zip
python - "$bundle" <<'PY'
import pathlib, sys, zipfile

root = pathlib.Path("/app/warehouse_bi/dashboard")
with zipfile.ZipFile(sys.argv[1], "w") as bundle:
    for path in sorted(root.rglob("*.yaml")):
        bundle.write(path, f"warehouse_dashboard/{path.relative_to(root).as_posix()}")
PY
superset import-dashboards --path "$bundle" --username admin

exec /usr/bin/run-server.sh
