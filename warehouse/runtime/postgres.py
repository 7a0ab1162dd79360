"""Airflow's metadata database for `make up`: a PostgreSQL 15 cluster owned by the project.

The cluster lives in `<airflow home>/postgres/`: its data folder (`data/`, mode 0700), the
folder of its Unix socket (`run/`, 0700; the server listens on no TCP port at all), its log,
and the generated password in a libpq password file (`pgpass`, 0600). Airflow connects through
the socket with the password read by libpq from that file (`PGPASSFILE`), so the password is
in no connection URL, command line or environment. Debian's `postgresql-15` provides the
programs (the Makefile installs it where missing); PostgreSQL refuses to run as root, so when
we are root the server runs as the `postgres` user the package creates.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")
DATABASE = "airflow"
ROLE = "airflow"
# The socket's file name carries the port, even with no TCP listener (`.s.PGSQL.5432`).
SOCKET_PORT = 5432
# Longest Unix socket path the kernel accepts (sun_path is 108 bytes with its terminator).
MAX_SOCKET_PATH = 107


class PostgresError(RuntimeError):
    """The cluster could not be created, started or stopped; the message says why."""


@dataclass(frozen=True)
class Cluster:
    """The project's PostgreSQL cluster under one Airflow home."""

    root: Path

    @classmethod
    def of(cls, airflow_home: Path) -> Cluster:
        return cls(airflow_home / "postgres")

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def password_file(self) -> Path:
        """libpq's password file (`host:port:database:user:password`), mode 0600."""
        return self.root / "pgpass"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    @property
    def url(self) -> str:
        """SQLAlchemy's URL for Airflow: the socket folder as host, no password in it."""
        return f"postgresql+psycopg2://{ROLE}@/{DATABASE}?host={self.socket_dir}"

    def environment(self) -> dict[str, str]:
        """What an Airflow process needs to use this cluster as its metadata database."""
        return {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.url,
            "PGPASSFILE": str(self.password_file),
        }

    def password(self) -> str:
        return self.password_file.read_text().strip().rsplit(":", 1)[1]

    def postmaster_pid(self) -> int:
        """The server's process id (the first line of its pid file)."""
        return int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def running(self) -> bool:
        if not self.initialised():
            return False
        status = _run([*_as_owner(), str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "status"])
        return status.returncode == 0

    def create(self) -> None:
        """initdb a new cluster with a generated password, once; then its settings."""
        if self.initialised():
            return
        if not (PG_BIN / "initdb").exists():
            raise PostgresError(
                f"PostgreSQL 15 is not installed ({PG_BIN}/initdb is missing): "
                "`make up` installs Debian's postgresql-15, or apt-get install postgresql-15"
            )
        socket = self.socket_dir / f".s.PGSQL.{SOCKET_PORT}"
        if len(str(socket)) > MAX_SOCKET_PATH:
            raise PostgresError(
                f"the socket path {socket} is longer than {MAX_SOCKET_PATH} bytes: "
                "use a shorter AIRFLOW_HOME"
            )
        owner = _owner()
        for folder in (self.root, self.socket_dir):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(folder, 0o700)
            os.chown(folder, owner.pw_uid, owner.pw_gid)
        if _run([*_as_owner(), "test", "-w", str(self.root)]).returncode != 0:
            raise PostgresError(
                f"user {owner.pw_name} (who runs PostgreSQL, which refuses root) cannot reach "
                f"{self.root}: make its parent folders searchable (chmod o+x) or use another "
                "AIRFLOW_HOME"
            )
        password = secrets.token_hex(24)  # hex: nothing to escape in the password file
        _write_private(self.password_file, f"*:*:*:{ROLE}:{password}\n")
        # initdb reads the superuser's password from a file only its own user can read.
        initdb_password = self.root / ".initdb-password"
        _write_private(initdb_password, password + "\n")
        os.chown(initdb_password, owner.pw_uid, owner.pw_gid)
        try:
            self._check(
                [
                    str(PG_BIN / "initdb"),
                    "--pgdata",
                    str(self.data_dir),
                    "--username",
                    ROLE,
                    f"--pwfile={initdb_password}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-locale",
                ],
                "initdb",
            )
        finally:
            initdb_password.unlink(missing_ok=True)
        # Only the socket, owner-only; no TCP listener.
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# the project's cluster (warehouse/runtime/postgres.py)\n"
                "listen_addresses = ''\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "unix_socket_permissions = 0700\n"
                f"port = {SOCKET_PORT}\n"
            )

    def start(self, timeout: int = 60) -> None:
        """Create the cluster if needed, start it, and create Airflow's database once."""
        self.create()
        if not self.running():
            self.log.touch(mode=0o600)
            owner = _owner()
            os.chown(self.log, owner.pw_uid, owner.pw_gid)
            self._check(
                [
                    str(PG_BIN / "pg_ctl"),
                    "--pgdata",
                    str(self.data_dir),
                    "--log",
                    str(self.log),
                    "--wait",
                    f"--timeout={timeout}",
                    "start",
                ],
                "pg_ctl start",
            )
        exists = self._psql(f"select 1 from pg_database where datname = '{DATABASE}'", "postgres")
        if exists.strip() != "1":
            self._psql(f"create database {DATABASE}", "postgres")

    def stop(self) -> bool:
        """Stop the server (fast shutdown: open sessions are ended); whether it was running."""
        if not self.running():
            return False
        self._check(
            [str(PG_BIN / "pg_ctl"), "--pgdata", str(self.data_dir), "--mode=fast", "stop"],
            "pg_ctl stop",
        )
        return True

    def _psql(self, sql: str, database: str) -> str:
        """One statement as the cluster's superuser, through the socket with the password
        file (libpq clients may run as root; only the server may not)."""
        result = _run(
            [
                str(PG_BIN / "psql"),
                "--no-psqlrc",
                "--tuples-only",
                "--no-align",
                "--host",
                str(self.socket_dir),
                "--port",
                str(SOCKET_PORT),
                "--username",
                ROLE,
                "--dbname",
                database,
                "--command",
                sql,
            ],
            env={**os.environ, "PGPASSFILE": str(self.password_file)},
        )
        if result.returncode != 0:
            raise PostgresError(f"psql {sql!r} failed: {result.stdout.strip()[-1000:]}")
        return result.stdout

    def _check(self, command: list[str], what: str) -> None:
        result = _run([*_as_owner(), *command])
        if result.returncode != 0:
            tail = self.log.read_text(errors="replace")[-1500:] if self.log.exists() else ""
            raise PostgresError(f"{what} failed: {result.stdout.strip()[-1500:]}\n{tail}".strip())


def _owner() -> pwd.struct_passwd:
    """Who runs the server: we ourselves, or `postgres` when we are root."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresError(
            "PostgreSQL refuses to run as root and there is no `postgres` user: "
            "install Debian's postgresql-15 (it creates the user)"
        ) from None


def _as_owner() -> list[str]:
    """The prefix that runs a command as the server's user (nothing when that is us)."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", _owner().pw_name, "--"]


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (0600 from the moment it exists)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


def _run(command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd="/",  # the server's user may not be able to enter our working directory
    )
