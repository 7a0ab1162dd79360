"""Airflow's services on this machine: `make up` starts them, `make down` stops them.

The api-server (UI and REST API), scheduler, dag-processor, triggerer and a log server run as
background processes of the project's Python against AIRFLOW_HOME, with the LocalExecutor: the
components docker-compose.yml runs in containers, run natively. Like the compose, the metadata
database is PostgreSQL (the project's own cluster under `<airflow home>/postgres/`, reached
through its Unix socket: `warehouse.runtime.postgres`) and the auth manager is FAB's, with an
`admin` and a read-only `viewer` login (`warehouse.runtime.accounts`); `make run` keeps its
embedded SQLite database and needs no login. Each process's pid and output are in
`AIRFLOW_HOME/services/`.

On a shared machine: every listener is on 127.0.0.1 only, on a port of the settings (the API,
and the log server's two ports; PostgreSQL listens on its socket only), and each port is
checked before anything starts, so a taken one stops `make up` with one line naming it and
the setting that moves it. The passwords are in a file only its owner can read, never printed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from warehouse.runtime import accounts, processes
from warehouse.runtime.postgres import Cluster, PostgresError
from warehouse.runtime.run import prepare_airflow_home
from warehouse.settings import Settings

SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer", "log-server")
USERNAME = "admin"
VIEWER = "viewer"
PASSWORD_FILE = accounts.PASSWORD_FILE
HOST = "127.0.0.1"
AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
# Each service's command after `python -m`: Airflow's own log servers would listen on every
# interface, so the scheduler and triggerer skip theirs and `log-server` serves on 127.0.0.1.
COMMANDS = {
    "api-server": ["airflow", "api-server", "--host", HOST],
    "scheduler": ["airflow", "scheduler", "--skip-serve-logs"],
    "dag-processor": ["airflow", "dag-processor"],
    "triggerer": ["airflow", "triggerer", "--skip-serve-logs"],
    "log-server": ["warehouse.runtime.log_server"],
}


class ServiceError(RuntimeError):
    """A service that would not start, or an API call that failed, with the reason."""


class NotStarted(ServiceError):
    """Refused before anything started (a port taken, a stack already running)."""


def _state_dir(home: Path) -> Path:
    return home / "services"


def service_environment(settings: Settings) -> dict[str, str]:
    """The environment every service (and every task process they start) runs with."""
    port = settings.airflow_port
    return {
        **os.environ,
        **settings.environment(),
        # The metadata database: the project's PostgreSQL cluster, through its socket.
        **Cluster.of(settings.airflow_home).environment(),
        "AIRFLOW__CORE__AUTH_MANAGER": AUTH_MANAGER,
        # Writers run one at a time (the duckdb_writer pool): a few worker processes suffice.
        "AIRFLOW__CORE__PARALLELISM": "4",
        # Task processes report to the execution API of this api-server.
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
    """Where the logins' passwords are kept (owner-only)."""
    return accounts.password_file(home)


def ensure_password(settings: Settings) -> str:
    """The admin password (see `accounts.ensure_passwords`)."""
    return accounts.ensure_passwords(settings)[USERNAME]


def create_logins(settings: Settings, env: dict[str, str], log: Path) -> dict[str, str]:
    """The logins' passwords (kept in the owner-only file), and each login in FAB's tables of
    the metadata database `env` configures (a process of its own, for Airflow's config)."""
    passwords = accounts.ensure_passwords(settings)
    kept = password_file(settings.airflow_home)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        result = subprocess.run(
            [sys.executable, "-m", "warehouse.runtime.accounts", str(kept)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise ServiceError(f"creating the Airflow logins failed (see {log}):\n{tail}")
    return passwords


def running(home: Path) -> dict[str, int]:
    """The services started from this AIRFLOW_HOME that are still alive, by name."""
    alive = {}
    for pid_file in sorted(_state_dir(home).glob("*.pid")):
        pid = int(pid_file.read_text())
        if processes.alive(pid):
            alive[pid_file.stem] = pid
    return alive


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
        return _state_dir(self.home) / f"{service}.log"


def start(settings: Settings, services: tuple[str, ...] = SERVICES, timeout: float = 300) -> Stack:
    """Start PostgreSQL, then the services in the background, and wait until the API answers."""
    home, port = settings.airflow_home, settings.airflow_port
    if alive := running(home):
        raise NotStarted(f"already running from {home}: {', '.join(alive)}; `make down` first")
    check_ports_free(settings)
    env = service_environment(settings)
    cluster = Cluster.of(home)
    state = _state_dir(home)
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
    children: dict[str, subprocess.Popen] = {}
    for name in services:
        command = [sys.executable, "-m", *COMMANDS[name]]
        if name == "api-server":
            command += ["--port", str(port)]
        with (state / f"{name}.log").open("ab") as log:
            # Its own session, so that `stop` can end the service with every child it started.
            process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        children[name] = process
        (state / f"{name}.pid").write_text(str(process.pid))
    stack = Stack(home, port, {name: child.pid for name, child in children.items()})
    _wait_until_healthy(stack, children, timeout)
    return stack


def _wait_until_healthy(
    stack: Stack, children: dict[str, subprocess.Popen], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, child in children.items():
            if child.poll() is not None:
                tail = stack.log(name).read_text(errors="replace")[-3000:]
                raise ServiceError(f"airflow {name} exited during start-up:\n{tail}")
        try:
            with urllib.request.urlopen(f"{stack.url}/api/v2/monitor/health", timeout=5):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(1)
    raise ServiceError(f"the API at {stack.url} did not answer within {timeout:.0f} s")


def stop(home: Path, timeout: float = 30) -> list[str]:
    """Stop every service started from this Airflow home (and its children), then its
    PostgreSQL; returns the names of what was running."""
    stopped = []
    pid_files = sorted(_state_dir(home).glob("*.pid"))
    for pid_file in pid_files:
        pid = int(pid_file.read_text())
        if processes.alive(pid):
            _signal_group(pid, signal.SIGTERM)
            stopped.append(pid_file.stem)
    deadline = time.monotonic() + timeout
    for pid_file in pid_files:
        pid = int(pid_file.read_text())
        if not _gone(pid, deadline):
            _signal_group(pid, signal.SIGKILL)
            _gone(pid, time.monotonic() + 10)
        pid_file.unlink()
    try:
        if Cluster.of(home).stop():
            stopped.append("postgres")
    except PostgresError as error:
        raise ServiceError(f"PostgreSQL: {error}") from None
    return stopped


def _gone(pid: int, deadline: float) -> bool:
    """Wait until the process has ended (reaping it when it is our child) or the deadline."""
    while processes.alive(pid):
        with contextlib.suppress(ChildProcessError):  # not our child: init reaps it
            os.waitpid(pid, os.WNOHANG)
        if not processes.alive(pid) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return not processes.alive(pid)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


class ApiClient:
    """Airflow's REST API (v2), authenticated with a JWT from the auth manager's
    `POST /auth/token` (FAB's token API: JSON username and password, 201 with access_token)."""

    def __init__(self, url: str, username: str, password: str):
        self.url = url
        token = self._call("POST", "/auth/token", {"username": username, "password": password})
        self._token = token["access_token"]

    def _call(self, method: str, path: str, body: dict | None = None, auth: bool = False):
        request = urllib.request.Request(
            self.url + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        if auth:
            request.add_header("Authorization", f"Bearer {self._token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:500]
            raise ServiceError(f"{method} {path}: HTTP {error.code} {detail}") from None

    def get(self, path: str):
        return self._call("GET", path, auth=True)

    def patch(self, path: str, body: dict):
        return self._call("PATCH", path, body, auth=True)

    def post(self, path: str, body: dict):
        return self._call("POST", path, body, auth=True)

    def dag_runs(self, dag_id: str) -> list[dict]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns?order_by=-start_date")["dag_runs"]


def unpause(client: ApiClient, dag_ids: list[str], timeout: float = 180) -> None:
    """Unpause the DAGs once the dag-processor has registered them."""
    deadline = time.monotonic() + timeout
    waiting = list(dag_ids)
    while waiting:
        try:
            client.patch(f"/api/v2/dags/{waiting[0]}", {"is_paused": False})
            waiting.pop(0)
        except ServiceError as error:
            if "HTTP 404" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(2)
