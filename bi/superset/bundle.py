"""The dashboard bundle Superset imports: bi/superset/dashboard/ zipped, its connections pointed
at this machine's warehouse, and its datasets, charts and dashboard copied onto the PostgreSQL
connection, so one set of YAML serves both (what Superset's importer does not do).

Run by bootstrap.sh: `python bundle.py <dashboard folder> <zip> <warehouse.duckdb>`, with
WAREHOUSE_READER_PASSWORD and the PostgreSQL server's address (SUPERSET_DB_HOST, SUPERSET_DB_PORT:
the compose's one server holds Superset's metadata and the served marts) in the environment.
"""

from __future__ import annotations

import json
import os
import re
import sys
import uuid
import zipfile
from pathlib import Path

import yaml

DUCKDB_URI = "duckdb:////warehouse/warehouse.duckdb"
POSTGRES_ADDRESS = "@postgres:5432/"
POSTGRES_SUFFIX = "postgres"  # of the copies' file names, slug and title
UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def _uuid_of(path: Path) -> str:
    return yaml.safe_load(path.read_text())["uuid"]


def _copy_onto_postgres(relative: str, text: str, duckdb_db: str, postgres_db: str):
    """A dataset, chart or dashboard's copy on the PostgreSQL connection: each uuid replaced by
    one derived from it (the DuckDB connection's by the PostgreSQL one's)."""

    def renamed(match: re.Match) -> str:
        found = match.group(0)
        return postgres_db if found == duckdb_db else str(uuid.uuid5(uuid.UUID(found), "postgres"))

    text = UUID.sub(renamed, text)
    text = re.sub(r"^slug: (.+)$", rf"slug: \1-{POSTGRES_SUFFIX}", text, flags=re.M)
    text = re.sub(r"^dashboard_title: (.+)$", r"dashboard_title: \1 (PostgreSQL)", text, flags=re.M)
    folder, _, name = relative.rpartition("/")
    if folder.startswith("datasets/"):
        return f"datasets/{folder.split('/', 1)[1]}_{POSTGRES_SUFFIX}/{name}", text
    return f"{folder}/{Path(name).stem}_{POSTGRES_SUFFIX}.yaml", text


def build(root: Path, bundle: Path, warehouse: Path, env: dict[str, str]) -> None:
    duckdb_db = _uuid_of(root / "databases/warehouse.yaml")
    postgres_db = _uuid_of(root / "databases/warehouse_postgres.yaml")
    address = f"@{env.get('SUPERSET_DB_HOST', 'postgres')}:{env.get('SUPERSET_DB_PORT', '5432')}/"
    with zipfile.ZipFile(bundle, "w") as archive:
        for path in sorted(root.rglob("*.yaml")):
            relative = path.relative_to(root).as_posix()
            text = path.read_text().replace(DUCKDB_URI, f"duckdb:///{warehouse.absolute()}")
            files = {relative: text}
            if relative == "databases/warehouse_postgres.yaml":
                text = text.replace(POSTGRES_ADDRESS, address)
                # Superset keeps the password beside the masked URI.
                password = json.dumps(env["WAREHOUSE_READER_PASSWORD"])  # a YAML string
                files[relative] = f"{text}password: {password}\n"
            elif relative.split("/")[0] in ("datasets", "charts", "dashboards"):
                copy, copied = _copy_onto_postgres(relative, text, duckdb_db, postgres_db)
                files[copy] = copied
            for name, content in files.items():
                archive.writestr(f"warehouse_dashboard/{name}", content)


if __name__ == "__main__":
    build(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), dict(os.environ))
