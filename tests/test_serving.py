"""Serving, end to end: Airflow's own scheduler runs the pipeline on its schedule, publishes and
triggers the report, while a BI-style reader polls the published warehouse; afterwards the
marts are read through `warehouse query`, through SQLAlchemy with duckdb-engine (the way
Superset connects) and the run's state through the authenticated REST API.

The services run as `make up` runs them: metadata in the project's PostgreSQL cluster, the FAB
auth manager with an admin and a read-only viewer (refused a trigger, a pause and an edit, but
shown runs and logs), every listener on 127.0.0.1 on the configured ports, the metadata and
password files owner-only, and a second stack on a taken port refused in one line."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import psutil
import psycopg
import pytest
import sqlalchemy as sa
import yaml

from tests.airflow_api import ApiClient, ApiError
from tests.conftest import REPO, own_airflow, settings_for
from warehouse.publish.postgres import READER_ROLE
from warehouse.runtime import services
from warehouse.runtime.postgres import SERVED_DATABASE, Cluster
from warehouse.settings import DAG_ID, REPORT_DAG_ID, Settings

pytestmark = pytest.mark.slow

SUPERSET_DATABASE = REPO / "bi" / "superset" / "dashboard" / "databases" / "warehouse.yaml"
RUN_TIMEOUT_SECONDS = 600


def superset_engine(database: Path) -> sa.Engine:
    """An engine with Superset's connection settings (its URI's options, a connection per
    query), pointed at `database` instead of the container's path."""
    uri = sa.make_url(yaml.safe_load(SUPERSET_DATABASE.read_text())["sqlalchemy_uri"])
    return sa.create_engine(uri.set(database=str(database)), poolclass=sa.pool.NullPool)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def listening(pids: set[int]) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket these processes listen on."""
    return {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.pid in pids
    }


def service_pids(pids: dict[str, int], cluster: Cluster) -> set[int]:
    """Every process of the stack: each service with its children, and PostgreSQL's."""
    found = set()
    postmaster = int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
    for pid in [*pids.values(), postmaster]:
        process = psutil.Process(pid)
        found |= {pid, *(child.pid for child in process.children(recursive=True))}
    return found


def mode(path: Path) -> str:
    return oct(path.stat().st_mode & 0o777)


class BiReader(threading.Thread):
    """Reads the published warehouse every 300 ms, each time on a new read-only connection,
    and checks that what one read sees is one publish: its shares sum to 1 and it knows which
    run published it."""

    CHECK = """
        select (select run_id from meta.publication) as run_id,
               (select count(*) from marts.fct_customer_monthly_spend) as customer_months,
               (select count(*) from marts.fct_revenue_concentration) as concentration,
               (select count(*) from (
                    select month, product_line from marts.fct_customer_monthly_spend
                    group by all having abs(sum(share) - 1) > 1e-9)) as months_not_summing_to_1
    """

    def __init__(self, database: Path):
        super().__init__(daemon=True)
        self.engine = superset_engine(database)
        self.reads: list[dict] = []
        self.errors: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                with self.engine.connect() as con:
                    self.reads.append(dict(con.execute(sa.text(self.CHECK)).one()._mapping))
            except Exception as error:  # every failure is a finding, whatever its type
                self.errors.append(f"{type(error).__name__}: {error}")
            self.done.wait(0.3)

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=10)


def wait_for_runs(client: ApiClient, dag_id: str, count: int, home: Path) -> list[dict]:
    """The DAG's first `count` runs, oldest first, once all have finished (bounded)."""
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        runs = sorted(client.dag_runs(dag_id), key=lambda run: run["run_after"])
        if len(runs) >= count and all(r["state"] in ("success", "failed") for r in runs):
            return runs[:count]
        time.sleep(3)
    log = (home / "services" / "scheduler.log").read_text(errors="replace")[-4000:]
    pytest.fail(f"{dag_id}: {count} runs not finished in {RUN_TIMEOUT_SECONDS} s; log:\n{log}")


def warehouse_query(sql: str, settings: Settings) -> list[dict]:
    """`warehouse query --format json`, run as a user runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "warehouse.cli", "query", sql, "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **settings.environment()},
    )
    return json.loads(result.stdout)


def test_scheduler_runs_the_pipeline_publishes_and_every_client_reads(
    published, stack_home, tmp_path
):
    # Start from a published warehouse, so that readers have one during the whole run; the
    # services get their own Airflow home and ports, and no passwords (they are generated).
    home = stack_home
    settings = own_airflow(settings_for(published.landing_dir, published.data_dir), home)
    cluster = Cluster.of(home)
    data_dir = settings.data_dir
    previous = json.loads(settings.manifest.read_text())

    reader = BiReader(settings.published_db)
    reader.start()
    started = time.monotonic()
    pids = services.start(settings)
    url = f"http://localhost:{settings.airflow_port}"
    try:
        up = time.monotonic() - started
        passwords = json.loads(services.password_file(home).read_text())  # generated now
        client = ApiClient(url, services.USERNAME, passwords["admin"])
        viewer = ApiClient(url, services.VIEWER, passwords["viewer"])
        # Every listener of the stack is on 127.0.0.1, on exactly the configured ports.
        listeners = listening(service_pids(pids, cluster))
        # A second stack (another home) on the same machine and ports is refused at once.
        second = dataclasses.replace(settings, airflow_home=tmp_path / "second")
        with pytest.raises(services.NotStarted) as taken:
            services.start(second)
        # Both DAGs are created unpaused, and the scheduler starts the pipeline's run. A second,
        # manual trigger while the scheduled run is active: it must wait its turn.
        while not client.dag_runs(DAG_ID):
            time.sleep(1)
        # Nothing is new for the scheduled run (it publishes nothing, triggers no report); the
        # manual one asks for a full refresh (the DAG's param), so it publishes.
        client.post(
            f"/api/v2/dags/{DAG_ID}/dagRuns",
            {"logical_date": None, "conf": {"full_refresh": True}},
        )
        run, manual = wait_for_runs(client, DAG_ID, 2, home)
        reports = wait_for_runs(client, REPORT_DAG_ID, 1, home)
        elapsed = time.monotonic() - started
        anonymous = urllib.request.Request(f"{url}/api/v2/dags/{DAG_ID}/dagRuns")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(anonymous, timeout=10)
        with pytest.raises(ApiError, match="HTTP 401"):
            ApiClient(url, services.USERNAME, passwords["admin"] + "x")
        # The viewer sees the runs and their logs, and may not trigger, pause or edit.
        seen_by_viewer = viewer.dag_runs(DAG_ID)
        run_path = f"/api/v2/dags/{DAG_ID}/dagRuns/{manual['dag_run_id']}"
        log = viewer.get(f"{run_path}/taskInstances/publish/logs/1")
        viewer_refusals = {}
        for method, path, body in [
            ("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None}),
            ("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": True}),
            ("POST", f"/api/v2/dags/{DAG_ID}/clearTaskInstances", {"dry_run": True}),
            ("PATCH", run_path, {"state": "failed"}),
        ]:
            with pytest.raises(ApiError) as refusal:
                viewer._call(method, path, body, auth=True)
            viewer_refusals[f"{method} {path}"] = str(refusal.value)
        # The metadata is in PostgreSQL, through the socket (no SQLite file in the home).
        engine = sa.create_engine(
            cluster.url, connect_args={"passfile": str(cluster.password_file)}
        )
        with engine.connect() as con:
            runs_in_postgres = con.execute(
                sa.text("select count(*) from dag_run where dag_id = :dag"), {"dag": DAG_ID}
            ).scalar_one()
        engine.dispose()
        # The marts served to BI tools from make up's PostgreSQL, as its read-only role.
        reader_login = {"host": str(cluster.socket_dir), "user": READER_ROLE}
        with psycopg.connect(
            dbname=SERVED_DATABASE, passfile=str(cluster.reader_password_file), **reader_login
        ) as pg:
            served = pg.execute(
                "select (select run_id from marts.publication), top1_share "
                "from marts.fct_revenue_concentration where month = '2024-03-01' "
                "and product_line = 'azure_openai' and level = 'customer'"
            ).fetchone()
    finally:
        reader.stop()
        stopped = services.stop(home)
    print(
        f"PostgreSQL, migrations, logins and API up: {up:.0f} s; "
        f"scheduler start to report done: {elapsed:.0f} s; BI reads: {len(reader.reads)}"
    )

    # The scheduler made and ran the runs: the pipeline's on its schedule, then the manual one
    # after it (never both at once), and the report's on each published Asset event.
    assert run["run_type"] == "scheduled" and run["state"] == "success", run
    assert manual["run_type"] == "manual" and manual["state"] == "success", manual
    assert datetime.fromisoformat(manual["start_date"]) >= datetime.fromisoformat(run["end_date"])
    assert [(r["run_type"], r["state"]) for r in reports] == [("asset_triggered", "success")]
    assert refused.value.code == 401
    assert runs_in_postgres == 2
    assert not (home / "airflow.db").exists()

    # Roles: the viewer reads runs and logs; every change is refused with 403.
    assert {r["dag_run_id"] for r in seen_by_viewer} >= {run["dag_run_id"], manual["dag_run_id"]}
    assert "task_id=publish" in json.dumps(log) and len(log["content"]) > 5, log
    assert all("HTTP 403" in refusal for refusal in viewer_refusals.values()), viewer_refusals

    # A shared machine: local listeners only, configured ports, a one-line refusal when taken.
    assert listeners == {
        ("127.0.0.1", settings.airflow_port),
        ("127.0.0.1", settings.airflow_worker_log_port),
        ("127.0.0.1", settings.airflow_trigger_log_port),
    }
    assert str(taken.value) == (
        f"port {settings.airflow_port} on 127.0.0.1 is taken by another program: it is for the "
        "Airflow API and UI (WAREHOUSE_AIRFLOW_PORT); set that variable to a free port"
    )
    assert not (tmp_path / "second").exists()  # nothing of the refused stack was started

    # Owner-only files: the passwords, the metadata (and secrets) files, PostgreSQL's data.
    assert mode(services.password_file(home)) == "0o600"
    assert mode(cluster.password_file) == "0o600"
    assert mode(home / "airflow.cfg") == "0o600"
    assert mode(cluster.data_dir) == "0o700"
    assert mode(cluster.socket_dir) == "0o700"

    assert set(stopped) == {*services.commands(settings), "postgres"} == {*pids, "postgres"}
    assert not any(psutil.pid_exists(pid) for pid in pids.values())
    assert services.running(home) == {}
    assert not cluster.running()

    # What the run published, as each client sees it.
    manifest = json.loads((data_dir / "manifest.json").read_text())
    assert manifest["run_id"] == manual["dag_run_id"]
    headline = warehouse_query(
        "select top_customer_name, top1_share from marts.fct_revenue_concentration "
        "where month = '2024-03-01' and product_line = 'azure_openai' and level = 'customer'",
        settings,
    )
    assert headline[0]["top_customer_name"] == "TikTok"
    assert headline[0]["top1_share"] == pytest.approx(0.2465, abs=0.0005)
    engine = superset_engine(data_dir / "warehouse.duckdb")
    with engine.connect() as con:
        counts = {
            name: con.execute(sa.text(f'select count(*) from marts."{name}"')).scalar_one()
            for name in manifest["row_counts"]
        }
        publication = con.execute(sa.text("select run_id from meta.publication")).scalar_one()
        with pytest.raises(sa.exc.DBAPIError, match="read-only"):
            con.execute(sa.text("delete from marts.dim_customers"))
    assert counts == manifest["row_counts"]
    assert publication == manual["dag_run_id"]
    # Both targets serve the last run (make up sets WAREHOUSE_SERVE_POSTGRES_URL).
    assert manifest["postgres"]["run_id"] == manifest["run_id"] == served[0]
    assert round(100 * served[1], 2) == 24.65
    assert manual["dag_run_id"] in (data_dir / "report" / "index.html").read_text()

    # The BI reader, throughout: no error, and every read one whole publish.
    assert reader.errors == []
    assert len(reader.reads) >= 20
    seen = {read["run_id"] for read in reader.reads}
    assert seen <= {previous["run_id"], run["dag_run_id"], manual["dag_run_id"]}
    assert manifest["run_id"] in seen  # it saw the last publish land
    for read in reader.reads:
        # The same landing files each run: every publish has the same row counts.
        expected = manifest["row_counts"]
        assert read["customer_months"] == expected["fct_customer_monthly_spend"]
        assert read["concentration"] == expected["fct_revenue_concentration"]
        assert read["months_not_summing_to_1"] == 0
