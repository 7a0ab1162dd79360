"""The DuckDB connection BI tools are given (Superset's bundle, the docs' example) is closed to
the server's files: a hostile SQL Lab user's reads and writes of paths are refused."""

from __future__ import annotations

import re

import duckdb
import pytest
import sqlalchemy as sa
import yaml

from tests.conftest import REPO

BUNDLE_DATABASE = REPO / "bi/superset/dashboard/databases/warehouse.yaml"
CONTAINER_PATH = "/warehouse/warehouse.duckdb"


def bundle_uri(path) -> str:
    """The bundle's own URI at another path, as bootstrap.sh rewrites it."""
    uri = yaml.safe_load(BUNDLE_DATABASE.read_text())["sqlalchemy_uri"]
    assert uri.startswith(f"duckdb:///{CONTAINER_PATH}?")
    return uri.replace(f"duckdb:///{CONTAINER_PATH}", f"duckdb:///{path}")


@pytest.fixture
def warehouse(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("create schema marts")
        con.execute("create table marts.t as select 1 as x")
    return path


HOSTILE = [
    ("select * from read_text('/etc/passwd')", "file system operations are disabled"),
    ("copy (select 1) to '{out}'", "file system operations are disabled"),
    ("attach '{other}' as other", "file system operations are disabled"),
    ("set enable_external_access = true", "configuration has been locked"),
    ("reset enable_external_access", "configuration has been locked"),
]


@pytest.mark.parametrize(("statement", "refusal"), HOSTILE)
def test_the_bundles_uri_refuses_the_servers_files(warehouse, tmp_path, statement, refusal):
    out, other = tmp_path / "x.csv", tmp_path / "other.duckdb"
    engine = sa.create_engine(bundle_uri(warehouse), poolclass=sa.pool.NullPool)
    with engine.connect() as con:
        assert con.execute(sa.text("select x from marts.t")).fetchall() == [(1,)]
        with pytest.raises(sa.exc.DBAPIError, match=refusal):
            con.execute(sa.text(statement.format(out=out, other=other)))
    assert not out.exists() and not other.exists()


def test_the_docs_examples_use_the_bundles_query_string():
    query = bundle_uri("x").split("?", 1)[1]
    page = (REPO / "docs/querying.md").read_text()
    example = re.search(r'"duckdb:///data/warehouse\.duckdb\?([^"]+)"\s*"([^"]+)"', page)
    assert example and example[1] + example[2] == query
