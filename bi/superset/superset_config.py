"""Superset's settings (docker-compose.yml, and tests/test_superset.py natively): every secret
from the environment (.env)."""

import os

SECRET_KEY = os.environ["SUPERSET_SECRET_KEY"]
# Superset's own metadata: the `superset` database of the compose's Postgres (the native test
# gives its own cluster's address).
SQLALCHEMY_DATABASE_URI = (
    f"postgresql+psycopg2://superset:{os.environ['SUPERSET_DB_PASSWORD']}"
    f"@{os.environ.get('SUPERSET_DB_HOST', 'postgres')}"
    f":{os.environ.get('SUPERSET_DB_PORT', '5432')}/superset"
)
# The warehouse connection is read-only; nobody uploads files into it.
CSV_EXTENSIONS: set[str] = set()
FEATURE_FLAGS = {"DASHBOARD_RBAC": True}
