"""`make up`/`make down`: Airflow's services in the background, local-only, on PostgreSQL with FAB.

`airflow standalone` is not used: it forces the SimpleAuthManager (no FAB admin and viewer) and
its scheduler and triggerer serve logs on every interface (Airflow 3.3, standalone_command.py).
So the api-server, scheduler, dag-processor and triggerer run as Airflow's own commands against
AIRFLOW_HOME with the LocalExecutor, as docker-compose.yml runs them; the metadata database is
the project's PostgreSQL (`warehouse.runtime.postgres`); the DAGs are created unpaused
(`[core] dags_are_paused_at_creation`); the logins are made by FAB's `airflow users` commands.
Each listener is on 127.0.0.1 on a port of the settings, checked before anything starts: Airflow's
log servers bind every interface with no setting for it (serve_logs/core.py), so the scheduler
and triggerer skip theirs and uvicorn serves Airflow's log app on 127.0.0.1 instead. The
passwords are in a file only its owner can read, never printed nor in a command line. Each
process's pid and output are in `AIRFLOW_HOME/services/`.
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
from dataclasses import dataclass
from pathlib import Path

import psutil

from warehouse.runtime.postgres import Cluster, PostgresError
from warehouse.runtime.processes import terminate, tree
from warehouse.runtime.run import prepare_airflow_home
from warehouse.settings import Settings

HOST = "127.0.0.1"
AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
USERNAME, VIEWER = "admin", "viewer"
# Each login's FAB role (built in; Viewer reads runs and logs, and may change nothing).
LOGINS = {USERNAME: "Admin", VIEWER: "Viewer"}
PASSWORD_FILE = "airflow_passwords.json"
LOG_APP = ["uvicorn", "--factory", "airflow.utils.serve_logs.log_server:create_app"]
# Each service's command after `python -m`; the log servers' ports come from the settings.
COMMANDS = {
    "api-server": ["airflow", "api-server", "--host", HOST],
    "scheduler": ["airflow", "scheduler", "--skip-serve-logs"],
    "dag-processor": ["airflow", "dag-processor"],
    "triggerer": ["airflow", "triggerer", "--skip-serve-logs"],
    "worker-log-server": [*LOG_APP, "--host", HOST, "--no-access-log"],
    "trigger-log-server": [*LOG_APP, "--host", HOST, "--no-access-log"],
}
SERVICES = tuple(COMMANDS)


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
        "AIRFLOW__CORE__AUTH_MANAGER": AUTH_MANAGER,
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        # Writers run one at a time (the duckdb_writer pool): a few worker processes suffice.
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{HOST}:{port}/execution/",
        "AIRFLOW__API__HOST": HOST,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(settings.airflow_worker_log_port),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(settings.airflow_trigger_log_port),
        # The scheduler's health server stays off; were it turned on, it would be local only.
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": HOST,
    }


def listeners(settings: Settings) -> dict[int, str]:
    """Every TCP port the services listen on (all on 127.0.0.1), and the setting that moves it."""
    ports = {
        settings.airflow_port: "the Airflow API and UI (WAREHOUSE_AIRFLOW_PORT)",
        settings.airflow_worker_log_port: "the task log server (WAREHOUSE_AIRFLOW_WORKER_LOG_PORT)",
        settings.airflow_trigger_log_port: (
            "the triggerer log server (WAREHOUSE_AIRFLOW_TRIGGER_LOG_PORT)"
        ),
    }
    if len(ports) < 3:
        raise NotStarted(
            f"the Airflow API and log server ports must differ: {settings.airflow_port}, "
            f"{settings.airflow_worker_log_port}, {settings.airflow_trigger_log_port}"
        )
    return ports


def check_ports_free(settings: Settings) -> None:
    """Refuse to start, in one line, when another program holds one of the ports."""
    for port, what in listeners(settings).items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
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
    return home / PASSWORD_FILE


def ensure_passwords(settings: Settings) -> dict[str, str]:
    """Each login's password: from the settings, else the one kept in the password file, else
    a new random one; the file (mode 0600) then holds them all."""
    path = password_file(settings.airflow_home)
    stored = json.loads(path.read_text() or "{}") if path.exists() else {}
    given = {USERNAME: settings.airflow_password, VIEWER: settings.airflow_viewer_password}
    passwords = {
        login: given[login] or stored.get(login) or secrets.token_urlsafe(18) for login in LOGINS
    }
    if stored != passwords:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            json.dump(passwords, file)
    path.chmod(0o600)
    return passwords


def create_logins(settings: Settings, env: dict[str, str], log: Path) -> dict[str, str]:
    """The logins' passwords (kept in the owner-only file), and each login in FAB's tables of
    the metadata database `env` configures: `airflow users create` and `reset-password`, run
    in one process of their own (`_users_commands`), so that no password is in a command line."""
    passwords = ensure_passwords(settings)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        result = subprocess.run(
            [sys.executable, "-m", __name__, str(password_file(settings.airflow_home))],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise ServiceError(f"creating the Airflow logins failed (see {log}):\n{tail}")
    return passwords


def _users_commands(passwords: dict[str, str]) -> None:
    """FAB's `airflow users create` (which skips an existing login) and `users reset-password`
    for each login, parsed and run by Airflow's own CLI in this process."""
    from airflow.cli.cli_parser import get_parser

    parser = get_parser()
    for login, role in LOGINS.items():
        named = ["--username", login, "--password", passwords[login]]
        person = ["--firstname", login, "--lastname", "warehouse"]
        create = [*named, *person, "--role", role, "--email", f"{login}@warehouse.invalid"]
        for command in (["users", "create", *create], ["users", "reset-password", *named]):
            args = parser.parse_args(command)
            args.func(args)


def _started(home: Path) -> dict[str, psutil.Process]:
    """The services started from this AIRFLOW_HOME still there, by name (not a process that
    has since been given a dead service's pid: it started after the pid file was written)."""
    found = {}
    for path in sorted((home / "services").glob("*.pid")):
        with contextlib.suppress(psutil.NoSuchProcess, ValueError):
            process = psutil.Process(int(path.read_text()))
            if process.create_time() <= path.stat().st_mtime + 1:
                found[path.stem] = process
    return found


def running(home: Path) -> dict[str, int]:
    """The services started from this AIRFLOW_HOME that are still alive, by name."""
    return {name: process.pid for name, process in _started(home).items()}


@dataclass
class Stack:
    """Running services: where they live and how to reach the API."""

    home: Path
    port: int
    pids: dict[str, int]

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    def log(self, service: str) -> Path:
        return self.home / "services" / f"{service}.log"


def start(settings: Settings, timeout: float = 300) -> Stack:
    """Start PostgreSQL, then the services in the background, and wait until the API answers."""
    home, port = settings.airflow_home, settings.airflow_port
    if alive := running(home):
        raise NotStarted(f"already running from {home}: {', '.join(alive)}; `make down` first")
    check_ports_free(settings)
    env = service_environment(settings)
    cluster = Cluster.of(home)
    state = home / "services"
    state.mkdir(parents=True, exist_ok=True)
    try:
        cluster.start()
    except PostgresError as error:
        raise ServiceError(f"PostgreSQL: {error}") from None
    try:
        prepare_airflow_home(settings, env, marker=cluster.root / ".warehouse-ready")
    except subprocess.CalledProcessError as error:
        log = home / "prepare.log"
        raise ServiceError(f"airflow {' '.join(error.cmd[3:])} failed; see {log}") from None
    create_logins(settings, env, state / "logins.log")
    ports = {
        "api-server": port,
        "worker-log-server": settings.airflow_worker_log_port,
        "trigger-log-server": settings.airflow_trigger_log_port,
    }
    children: dict[str, subprocess.Popen] = {}
    for name, command in COMMANDS.items():
        command = [sys.executable, "-m", *command]
        if name in ports:
            command += ["--port", str(ports[name])]
        with (state / f"{name}.log").open("ab") as log:
            # Its own session: nothing sent to `make up`'s terminal reaches it.
            children[name] = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        (state / f"{name}.pid").write_text(str(children[name].pid))
    stack = Stack(home, port, {name: child.pid for name, child in children.items()})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, child in children.items():
            if child.poll() is not None:
                tail = stack.log(name).read_text(errors="replace")[-3000:]
                raise ServiceError(f"airflow {name} exited during start-up:\n{tail}")
        try:
            with urllib.request.urlopen(f"{stack.url}/api/v2/monitor/health", timeout=5):
                return stack
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(1)
    raise ServiceError(f"the API at {stack.url} did not answer within {timeout:.0f} s")


def stop(home: Path, timeout: float = 30) -> list[str]:
    """Stop every service started from this Airflow home, with every process below it, then
    its PostgreSQL; returns the names of what was running."""
    started = _started(home)
    terminate([process for service in started.values() for process in tree(service.pid)], timeout)
    for path in (home / "services").glob("*.pid"):
        path.unlink()
    stopped = list(started)
    try:
        if Cluster.of(home).stop():
            stopped.append("postgres")
    except PostgresError as error:
        raise ServiceError(f"PostgreSQL: {error}") from None
    return stopped


if __name__ == "__main__":
    _users_commands(json.loads(Path(sys.argv[1]).read_text()))
