"""A throwaway PostgreSQL server (Debian's 15) on 127.0.0.1, for the benchmark's serving stage
and the serving tests: its superuser `airflow`, a free port, scram passwords, and the served
warehouse made by the compose's own docker/postgres/init-warehouse-db.sh (as `make up` runs
it)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from warehouse.publish.postgres import READER_ROLE
from warehouse.runtime.postgres import PG_BIN, SERVED_DATABASE, SERVING_INIT

SUPERUSER = "airflow"


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, its programs run as the postgres user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@dataclass
class Server:
    root: Path
    port: int
    password: str  # the superuser's
    reader_password: str
    process: subprocess.Popen | None = None

    def url(self, user: str = SUPERUSER, database: str = SERVED_DATABASE) -> str:
        password = self.password if user == SUPERUSER else self.reader_password
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{database}"

    @property
    def reader_url(self) -> str:
        return self.url(READER_ROLE)

    def client_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PATH": f"{PG_BIN}{os.pathsep}{os.environ['PATH']}",
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.port),
            "PGPASSWORD": self.password,
        }

    def start(self) -> None:
        log = (self.root / "postgres.log").open("a")
        self.process = subprocess.Popen(
            _as_postgres(
                [
                    str(PG_BIN / "postgres"),
                    "-D",
                    str(self.root / "data"),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-p",
                    str(self.port),
                    "-c",
                    f"unix_socket_directories={self.root}",
                ]
            ),
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while subprocess.run(["pg_isready", "--quiet"], env=self.client_env()).returncode:
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.root / "postgres.log").read_text()[-2000:]
                raise RuntimeError(f"PostgreSQL did not start in 60 s:\n{log}")
            time.sleep(0.3)

    def stop(self) -> None:
        """A fast shutdown (SIGINT: sessions are ended), waited for."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)  # runuser does not pass it on
            self.process.wait(timeout=60)
        self.process = None

    def psql(self, sql: str, url: str | None = None) -> subprocess.CompletedProcess:
        """`psql -c sql` (as the superuser on `warehouse` unless `url` says otherwise)."""
        return subprocess.run(
            ["psql", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-At", url or self.url(), "-c", sql],
            env=self.client_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def available() -> bool:
    return (PG_BIN / "initdb").exists()


@contextlib.contextmanager
def postgres_server(metadata_databases: tuple[str, ...] = ("airflow",)) -> Iterator[Server]:
    """A started server with `metadata_databases` (as compose's: Airflow's, Superset's) and the
    served warehouse's database and read-only role; removed afterwards."""
    # Outside pytest's (mode 0700) tree so that the postgres user reaches it.
    root = Path(tempfile.mkdtemp(prefix="serve-postgres-"))
    server = Server(root, _free_port(), secrets.token_hex(16), secrets.token_hex(16))
    (root / "pwfile").write_text(server.password + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(root / "pwfile", "postgres")
    try:
        init = [str(PG_BIN / "initdb"), "-D", str(root / "data"), "-U", SUPERUSER]
        init += [f"--pwfile={root / 'pwfile'}", "--auth=scram-sha-256", "--no-locale"]
        subprocess.run(_as_postgres(init), check=True, capture_output=True, timeout=120)
        server.start()
        for database in metadata_databases:
            if database != "postgres":
                created = server.psql(
                    f"create database {database}", server.url(database="postgres")
                )
                assert created.returncode == 0, created.stderr
        env = {
            **server.client_env(),
            "POSTGRES_USER": SUPERUSER,
            "POSTGRES_DB": "postgres",
            "WAREHOUSE_READER_PASSWORD": server.reader_password,
        }
        subprocess.run(["bash", str(SERVING_INIT)], env=env, check=True, capture_output=True)
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
