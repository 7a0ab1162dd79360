"""Airflow's services on this machine: `make up` starts them, `make down` stops them.

The api-server (UI and REST API on localhost), scheduler, dag-processor and triggerer run as
background processes of the project's Python against AIRFLOW_HOME (SQLite metadata,
LocalExecutor): the components docker-compose.yml runs in containers, run natively. Each
process's pid and output are in `AIRFLOW_HOME/services/`.

The UI login is `admin`. Its password is WAREHOUSE_AIRFLOW_PASSWORD when set; otherwise one is
generated on the first start and kept in the simple auth manager's password file in
AIRFLOW_HOME (owner-only permissions). There is no fixed default.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from warehouse.runtime import processes
from warehouse.runtime.run import prepare_airflow_home
from warehouse.settings import Settings

SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")
USERNAME = "admin"
PASSWORD_FILE = "simple_auth_manager_passwords.json.generated"


class ServiceError(RuntimeError):
    """A service that would not start, or an API call that failed, with the reason."""


def _state_dir(home: Path) -> Path:
    return home / "services"


def service_environment(settings: Settings) -> dict[str, str]:
    """The environment every service (and every task process they start) runs with."""
    port = settings.airflow_port
    return {
        **os.environ,
        **settings.environment(),
        # Writers run one at a time (the duckdb_writer pool): a few worker processes suffice.
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
        # Task processes report to the execution API of this api-server.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
        "AIRFLOW__API__HOST": "localhost",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
    }


def password_file(home: Path) -> Path:
    """Where the simple auth manager reads the passwords (as Airflow's config resolves it)."""
    configured = os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")
    return Path(configured) if configured else home / PASSWORD_FILE


def ensure_password(settings: Settings) -> str:
    """The admin password: WAREHOUSE_AIRFLOW_PASSWORD, else the one kept in the password file,
    else a new random one written there (mode 0600)."""
    path = password_file(settings.airflow_home)
    stored = json.loads(path.read_text() or "{}") if path.exists() else {}
    password = settings.airflow_password or stored.get(USERNAME)
    password = password or secrets.token_urlsafe(18)
    if stored.get(USERNAME) != password:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump({**stored, USERNAME: password}, file)
    os.chmod(path, 0o600)
    return password


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


def start(settings: Settings, services: tuple[str, ...] = SERVICES, timeout: float = 120) -> Stack:
    """Start the services in the background and wait until the API answers."""
    home, port = settings.airflow_home, settings.airflow_port
    if alive := running(home):
        raise ServiceError(f"already running from {home}: {', '.join(alive)}; `make down` first")
    env = service_environment(settings)
    prepare_airflow_home(settings, env)
    ensure_password(settings)
    state = _state_dir(home)
    state.mkdir(parents=True, exist_ok=True)
    children: dict[str, subprocess.Popen] = {}
    for name in services:
        command = [sys.executable, "-m", "airflow", name]
        if name == "api-server":
            command += ["--port", str(port), "--host", "localhost"]
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
    """Stop every service started from this Airflow home (and its children); returns names."""
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
    """Airflow's REST API (v2), authenticated with a JWT from the simple auth manager."""

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
