"""`make up`: Airflow's services local-only, on PostgreSQL, with FAB logins (standalone gives none).

`airflow standalone` forces the SimpleAuthManager and serves logs on every interface (Airflow
3.3); so Airflow's own commands run in the background as in docker-compose.yml, on the project's
PostgreSQL, the DAGs created unpaused, the logins made by FAB's `airflow users`. Every listener
is on 127.0.0.1 on a port of the settings, checked first: the scheduler and triggerer skip their
log servers (bound to every interface) and uvicorn serves Airflow's log app. The passwords are
in an owner-only file, never printed nor in a command line. Pids and output: `<home>/services/`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

from warehouse.runtime.children import launcher_command
from warehouse.runtime.postgres import Cluster, PostgresError, private_file
from warehouse.runtime.processes import terminate, tree
from warehouse.settings import WRITER_POOL, Settings

HOST = "127.0.0.1"
AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
USERNAME, VIEWER = "admin", "viewer"
LOGINS = {USERNAME: "Admin", VIEWER: "Viewer"}  # FAB's built-in roles; Viewer only reads
LOG_APP = "airflow.utils.serve_logs.log_server:create_app"


class ServiceError(RuntimeError):
    """A service that would not start, with the reason."""


class NotStarted(ServiceError):
    """Refused before anything started (a port taken, a stack already running)."""


def service_environment(settings: Settings) -> dict[str, str]:
    """The environment every service (and every task process they start) runs with."""
    port = settings.airflow_port
    return {
        **os.environ,
        **settings.environment(),
        **Cluster.of(settings.airflow_home).environment(),
        # The marts served to BI tools: the cluster's `warehouse` database unless set elsewhere.
        "WAREHOUSE_SERVE_POSTGRES_URL": settings.serve_postgres_url
        or Cluster.of(settings.airflow_home).serve_url,
        "AIRFLOW__CORE__AUTH_MANAGER": AUTH_MANAGER,
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",  # writers run one at a time (the duckdb_writer pool)
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{HOST}:{port}/execution/",
        "AIRFLOW__API__HOST": HOST,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(settings.airflow_worker_log_port),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(settings.airflow_trigger_log_port),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",  # no listener on every interface
    }


def commands(settings: Settings) -> dict[str, list[str]]:
    """Each service's command after `python -m` (the API's host and port are in its environment)."""
    log_app = ["uvicorn", "--factory", LOG_APP, "--no-access-log", "--host", HOST, "--port"]
    return {
        "api-server": ["airflow", "api-server"],
        "scheduler": ["airflow", "scheduler", "--skip-serve-logs"],
        "dag-processor": ["airflow", "dag-processor"],
        "triggerer": ["airflow", "triggerer", "--skip-serve-logs"],
        "worker-log-server": [*log_app, str(settings.airflow_worker_log_port)],
        "trigger-log-server": [*log_app, str(settings.airflow_trigger_log_port)],
    }


def check_ports_free(settings: Settings) -> None:
    """Refuse to start, in one line, when another program holds a port the services listen on
    (all on 127.0.0.1), naming the setting that moves it."""
    ports = {
        settings.airflow_port: "the Airflow API and UI (WAREHOUSE_AIRFLOW_PORT)",
        settings.airflow_worker_log_port: "the task log server (WAREHOUSE_AIRFLOW_WORKER_LOG_PORT)",
        settings.airflow_trigger_log_port: "the triggerer log server "
        "(WAREHOUSE_AIRFLOW_TRIGGER_LOG_PORT)",
    }
    if len(ports) < 3:
        raise NotStarted(
            f"the Airflow API and log server ports must differ: {settings.airflow_port}, "
            f"{settings.airflow_worker_log_port}, {settings.airflow_trigger_log_port}"
        )
    for port, what in ports.items():
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((HOST, port))
            except OSError as error:
                if error.errno != errno.EADDRINUSE:
                    raise
                raise NotStarted(
                    f"port {port} on {HOST} is taken by another program: it is for {what}; "
                    "set that variable to a free port"
                ) from None


def password_file(home: Path) -> Path:
    return home / "airflow_passwords.json"


def ensure_passwords(settings: Settings) -> dict[str, str]:
    """Each login's password: from the settings, else the one kept in the password file, else
    a new random one; the file (mode 0600) then holds them all."""
    path = password_file(settings.airflow_home)
    stored = json.loads(path.read_text() or "{}") if path.exists() else {}
    given = {USERNAME: settings.airflow_password, VIEWER: settings.airflow_viewer_password}
    passwords = {
        name: given[name] or stored.get(name) or secrets.token_urlsafe(18) for name in LOGINS
    }
    if stored != passwords:
        path.parent.mkdir(parents=True, exist_ok=True)
        private_file(path, json.dumps(passwords))
    path.chmod(0o600)
    return passwords


def prepare_airflow_home(
    settings: Settings, env: dict[str, str] | None = None, marker: Path | None = None, logins=False
) -> Path:
    """Airflow's metadata database migrated, with the writer pool, once per database (SQLite in
    the home by default, else the one `env` names, whose `marker` says it is ready), and with
    `logins` FAB's logins and their kept passwords; the files holding metadata or secrets are
    readable by their owner only."""
    home = settings.airflow_home
    marker = marker or home / ".warehouse-ready"
    steps = ([] if marker.exists() else ["migrate"]) + (["logins"] if logins else [])
    if steps:
        home.mkdir(parents=True, exist_ok=True)
        if logins:
            ensure_passwords(settings)
        env = {**os.environ, **settings.environment(), **(env or {})}
        command = launcher_command([sys.executable, "-m", __name__, str(home), *steps])
        with (home / "prepare.log").open("w") as log:  # the launcher: it ends with this process
            if subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT).returncode:
                raise ServiceError(f"preparing Airflow failed; see {home / 'prepare.log'}")
        marker.touch()
    for name in ("airflow.db", "airflow.cfg", "webserver_config.py"):
        if (home / name).exists():  # SQLite's journal files take the database's mode
            (home / name).chmod(0o600)
    return home


def running(home: Path) -> dict[str, psutil.Process]:
    """The services started from this AIRFLOW_HOME still running, by name (not a process given
    a dead service's pid since: it started after the pid file was written)."""
    found = {}
    for path in sorted((home / "services").glob("*.pid")):
        with contextlib.suppress(psutil.NoSuchProcess, ValueError):
            process = psutil.Process(int(path.read_text()))
            if process.create_time() <= path.stat().st_mtime + 1:
                found[path.stem] = process
    return found


def start(settings: Settings, timeout: float = 300) -> dict[str, int]:
    """Start PostgreSQL, then the services in the background, and wait until the API answers;
    returns each service's pid."""
    home, url = settings.airflow_home, f"http://localhost:{settings.airflow_port}"
    if alive := running(home):
        raise NotStarted(f"already running from {home}: {', '.join(alive)}; `make down` first")
    check_ports_free(settings)
    env, cluster, state = service_environment(settings), Cluster.of(home), home / "services"
    state.mkdir(parents=True, exist_ok=True)
    try:
        cluster.start()
        cluster.init_serving()
    except PostgresError as error:
        raise ServiceError(f"PostgreSQL: {error}") from None
    prepare_airflow_home(settings, env, cluster.root / ".warehouse-ready", logins=True)
    children = {}
    for name, command in commands(settings).items():
        with (state / f"{name}.log").open("ab") as log:  # its own session: not the terminal's
            children[name] = subprocess.Popen(
                [sys.executable, "-m", *command],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        (state / f"{name}.pid").write_text(str(children[name].pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, child in children.items():
            if child.poll() is not None:
                tail = (state / f"{name}.log").read_text(errors="replace")[-3000:]
                raise ServiceError(f"airflow {name} exited during start-up:\n{tail}")
        with (
            contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
            urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5),
        ):
            return {name: child.pid for name, child in children.items()}
        time.sleep(1)
    raise ServiceError(f"the API at {url} did not answer within {timeout:.0f} s")


def stop(home: Path, timeout: float = 30) -> list[str]:
    """Stop every service started from this Airflow home, with every process below it, then
    its PostgreSQL; returns the names of what was running."""
    started = running(home)
    terminate([process for service in started.values() for process in tree(service.pid)], timeout)
    for path in (home / "services").glob("*.pid"):
        path.unlink()
    try:
        return [*started, *(["postgres"] if Cluster.of(home).stop() else [])]
    except PostgresError as error:
        raise ServiceError(f"PostgreSQL: {error}") from None


def _airflow_commands(home: Path, steps: list[str]) -> None:
    """Airflow's own CLI, run in this process command by command (one start of Airflow, and no
    password in a command line): `db migrate` and `pools set`; FAB's `users create` (which
    leaves an existing login alone) and `users reset-password`."""
    from airflow.__main__ import main

    argvs = []
    if "migrate" in steps:
        pool = ["pools", "set", WRITER_POOL, "1", "serialises writers of build.duckdb"]
        argvs += [["db", "migrate"], pool]
    passwords = json.loads(password_file(home).read_text()) if "logins" in steps else {}
    for login, password in passwords.items():
        named = ["--username", login, "--password", password]
        person = ["--firstname", login, "--lastname", "warehouse", "--role", LOGINS[login]]
        argvs += [["users", "create", *named, *person, "--email", f"{login}@warehouse.invalid"]]
        argvs += [["users", "reset-password", *named]]
    for argv in argvs:
        sys.argv = ["airflow", *argv]
        main()


if __name__ == "__main__":
    _airflow_commands(Path(sys.argv[1]), sys.argv[2:])
