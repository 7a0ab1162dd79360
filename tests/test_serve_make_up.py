"""`make up`'s PostgreSQL serves the marts too: the cluster's `warehouse` database and read-only
role made by the compose's own init script, the role's password generated once and kept in a
libpq password file (0600), and the services told to publish there."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

import psycopg
import pytest

from tests.conftest import SESSION_SETTINGS
from warehouse.publish.postgres import READER_ROLE
from warehouse.runtime import services
from warehouse.runtime.postgres import SERVED_DATABASE, Cluster

pytestmark = pytest.mark.slow  # a PostgreSQL cluster, created and started


def test_make_ups_cluster_serves_a_read_only_role_with_a_kept_password(stack_home: Path):
    settings = dataclasses.replace(SESSION_SETTINGS, airflow_home=stack_home)
    cluster = Cluster.of(stack_home)
    cluster.start()
    cluster.init_serving()
    kept = cluster.reader_password_file.read_text()
    cluster.init_serving()  # as at every start: the same password, nothing fails
    assert cluster.reader_password_file.read_text() == kept
    assert stat.S_IMODE(cluster.reader_password_file.stat().st_mode) == 0o600
    host, reader = str(cluster.socket_dir), f"host={cluster.socket_dir} user={READER_ROLE}"

    env = services.service_environment(settings)
    assert env["WAREHOUSE_SERVE_POSTGRES_URL"] == cluster.serve_url
    os.environ["PGPASSFILE"] = str(cluster.password_file)
    try:  # the publisher: the URL the services get, its password from the cluster's file
        with psycopg.connect(env["WAREHOUSE_SERVE_POSTGRES_URL"]) as pg:
            assert pg.info.dbname == SERVED_DATABASE and pg.info.host == host
            encoding = pg.execute("show server_encoding").fetchone()[0]
        os.environ["PGPASSFILE"] = str(cluster.reader_password_file)
        with psycopg.connect(f"{reader} dbname={SERVED_DATABASE}") as pg:
            assert pg.execute("show statement_timeout").fetchone() == ("5min",)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                pg.execute("create table public.mine (x int)")
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            psycopg.connect(f"{reader} dbname=airflow")
    finally:
        del os.environ["PGPASSFILE"]
    assert encoding == "UTF8"
