"""Superset's settings in docker-compose.yml: every secret from the environment (.env)."""

import os

SECRET_KEY = os.environ["SUPERSET_SECRET_KEY"]
SQLALCHEMY_DATABASE_URI = (
    f"postgresql+psycopg2://superset:{os.environ['SUPERSET_DB_PASSWORD']}@postgres:5432/superset"
)
# The warehouse connection is read-only; nobody uploads files into it.
CSV_EXTENSIONS: set[str] = set()
FEATURE_FLAGS = {"DASHBOARD_RBAC": True}
