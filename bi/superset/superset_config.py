"""Superset's settings (docker-compose.yml, and tests/test_superset.py natively): every secret
from the environment (.env)."""

import os

SECRET_KEY = os.environ["SUPERSET_SECRET_KEY"]
# Superset's own metadata: the compose's Postgres, unless SUPERSET_DATABASE_URI names another
# (the native test gives it a SQLite file of its own).
SQLALCHEMY_DATABASE_URI = os.environ.get("SUPERSET_DATABASE_URI") or (
    f"postgresql+psycopg2://superset:{os.environ['SUPERSET_DB_PASSWORD']}@postgres:5432/superset"
)
# The warehouse connection is read-only; nobody uploads files into it.
CSV_EXTENSIONS: set[str] = set()
FEATURE_FLAGS = {"DASHBOARD_RBAC": True}
