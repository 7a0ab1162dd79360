"""`make up` on a shared machine, without starting it (test_serving.py starts it for real): every
listener on 127.0.0.1 on a configured port, a taken port refused in one line before anything
starts, the FAB auth manager over PostgreSQL, passwords in an owner-only file and never
printed, and `make run`'s embedded metadata kept owner-only too."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import REPO, SESSION_SETTINGS
from warehouse import cli
from warehouse.runtime import services
from warehouse.runtime.postgres import Cluster


@pytest.fixture
def stack_settings(tmp_path):
    return dataclasses.replace(
        SESSION_SETTINGS,
        airflow_home=tmp_path / "airflow",
        airflow_port=18080,
        airflow_worker_log_port=18793,
        airflow_trigger_log_port=18794,
        airflow_password=None,
        airflow_viewer_password=None,
    )


def test_every_listener_is_local_on_a_configured_port(stack_settings):
    env = services.service_environment(stack_settings)

    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__API__PORT"] == "18080"
    assert env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] == "18793"
    assert env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] == "18794"
    assert env["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "False"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://127.0.0.1:18080/")
    assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "False"
    # Airflow's own log servers listen on every interface: they are skipped, and Airflow's log
    # app is served on 127.0.0.1 on both log ports.
    commands = services.commands(stack_settings)
    assert "--skip-serve-logs" in commands["scheduler"]
    assert "--skip-serve-logs" in commands["triggerer"]
    for name, port in (("worker-log-server", "18793"), ("trigger-log-server", "18794")):
        assert commands[name][-4:] == ["--host", "127.0.0.1", "--port", port], name


def test_the_running_airflow_uses_fab_over_postgres_with_no_password_in_its_url(stack_settings):
    env = services.service_environment(stack_settings)
    cluster = Cluster.of(stack_settings.airflow_home)
    url = urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])

    assert env["AIRFLOW__CORE__AUTH_MANAGER"] == services.AUTH_MANAGER
    assert "SIMPLE_AUTH_MANAGER" not in " ".join(k for k in env if k.startswith("AIRFLOW__"))
    assert url.scheme == "postgresql+psycopg2" and url.password is None
    assert url.query == f"host={cluster.socket_dir}"  # the socket: no TCP port at all
    assert env["PGPASSFILE"] == str(cluster.password_file)
    assert cluster.root == stack_settings.airflow_home / "postgres"


def free_ports(count: int) -> list[int]:
    """`count` different ports free now (bound together while chosen, so they differ)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def test_a_taken_port_stops_make_up_in_one_line_before_anything_starts(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        api_port, trigger_port = free_ports(2)
        home = tmp_path / "airflow"
        result = subprocess.run(
            [sys.executable, "-m", "warehouse.cli", "up"],
            env={
                **os.environ,
                **SESSION_SETTINGS.environment(),
                "AIRFLOW_HOME": str(home),
                "WAREHOUSE_AIRFLOW_PORT": str(api_port),
                "WAREHOUSE_AIRFLOW_WORKER_LOG_PORT": str(taken),
                "WAREHOUSE_AIRFLOW_TRIGGER_LOG_PORT": str(trigger_port),
            },
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: port {taken} on 127.0.0.1 is taken by another program: it is for the task log "
        "server (WAREHOUSE_AIRFLOW_WORKER_LOG_PORT); set that variable to a free port"
    ]
    assert not (home / "services").exists() and not (home / "postgres").exists()


def test_ports_must_differ(stack_settings):
    same = dataclasses.replace(stack_settings, airflow_trigger_log_port=18793)
    with pytest.raises(services.NotStarted, match="ports must differ: 18080, 18793, 18793"):
        services.check_ports_free(same)


def test_passwords_are_generated_once_kept_owner_only_and_the_settings_win(stack_settings):
    first = services.ensure_passwords(stack_settings)
    path = services.password_file(stack_settings.airflow_home)

    assert set(first) == {"admin", "viewer"} == set(services.LOGINS)
    assert services.LOGINS == {"admin": "Admin", "viewer": "Viewer"}  # FAB's built-in roles
    assert first["admin"] != first["viewer"] and min(map(len, first.values())) >= 20
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert services.ensure_passwords(stack_settings) == first  # kept, not regenerated
    from_env = "-".join(["set", "in", "the", "environment"])
    given = dataclasses.replace(stack_settings, airflow_viewer_password=from_env)
    assert services.ensure_passwords(given) == {**first, "viewer": given.airflow_viewer_password}
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_make_up_prints_where_the_passwords_are_never_a_password(
    stack_settings, monkeypatch, capsys
):
    passwords = services.ensure_passwords(stack_settings)
    monkeypatch.setattr(services, "start", lambda settings: {})
    monkeypatch.setattr(cli.Settings, "from_env", classmethod(lambda cls: stack_settings))

    assert cli.main(["up"]) == 0
    out = capsys.readouterr().out
    assert str(services.password_file(stack_settings.airflow_home)) in out
    assert not any(password in out for password in passwords.values())


@pytest.mark.slow
def test_make_runs_embedded_metadata_is_owner_only(airflow_home):
    """`make run` keeps SQLite (no PostgreSQL, no login), its files readable by the owner only."""
    assert oct((airflow_home / "airflow.db").stat().st_mode & 0o777) == "0o600"
    assert oct((airflow_home / "airflow.cfg").stat().st_mode & 0o777) == "0o600"
    assert not (airflow_home / "postgres").exists()


def test_make_up_installs_postgresql_where_missing(tmp_path):
    """`make up` (and `make test`'s packages) first install Debian's postgresql-15 through apt
    when its programs are missing, and leave apt alone when they are there."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    calls = tmp_path / "apt-get.calls"
    (stubs / "apt-get").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    (stubs / "apt-get").chmod(0o755)
    installed = tmp_path / "installed"
    installed.mkdir()
    (installed / "initdb").write_text("#!/bin/sh\n")
    (installed / "initdb").chmod(0o755)
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}"}

    def make(*args: str, pg_bin: Path) -> subprocess.CompletedProcess:
        command = ["make", "--no-print-directory", *args, f"PG_BIN={pg_bin}", "SUDO="]
        return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)

    assert make("postgres-packages", pg_bin=installed).returncode == 0
    assert not calls.exists()
    assert make("postgres-packages", pg_bin=tmp_path / "missing").returncode == 0
    assert calls.read_text().splitlines()[-1].endswith(" postgresql-15")
    for target in ("up", "test-packages"):  # each would install it first (a dry run)
        planned = make("--dry-run", target, pg_bin=tmp_path / "missing").stdout
        assert "install -y -qq --no-install-recommends postgresql-15" in planned, target


def test_warehouse_airflow_is_airflows_cli_against_make_ups_database(stack_settings):
    """The plain `airflow` command opens make run's SQLite database; `warehouse airflow` (for
    `dags trigger`, `backfill create` ...) has make up's environment."""
    command = ["airflow", "config", "get-value", "database", "sql_alchemy_conn"]
    result = subprocess.run(
        [sys.executable, "-m", "warehouse.cli", *command],
        env={**os.environ, **stack_settings.environment()},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    cluster = Cluster.of(stack_settings.airflow_home)
    assert result.stdout.strip() == cluster.url
