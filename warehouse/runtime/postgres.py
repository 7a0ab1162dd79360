"""A PostgreSQL 15 cluster for `make up`'s metadata, owned by the project (Airflow brings none).

In `<airflow home>/postgres/`: reached by its socket only (no TCP listener), the password in a
libpq password file (0600, `PGPASSFILE`), never in a URL, command line or environment. As root,
the server runs as Debian's `postgres` user (PostgreSQL refuses root).
"""

from __future__ import annotations

import os
import pwd
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from warehouse.publish.postgres import READER_ROLE
from warehouse.settings import REPO_ROOT

PG_BIN = Path("/usr/lib/postgresql/15/bin")
ROLE = DATABASE = "airflow"
# The served warehouse (warehouse.publish.postgres) and its read-only role, which the compose's
# init script creates; `make up` runs the same script.
SERVED_DATABASE = "warehouse"
SERVING_INIT = REPO_ROOT / "docker/postgres/init-warehouse-db.sh"


class PostgresError(RuntimeError):
    """The cluster could not be created, started or stopped; the message says why."""


@dataclass(frozen=True)
class Cluster:
    root: Path
    data_dir = property(lambda self: self.root / "data")
    socket_dir = property(lambda self: self.root / "run")
    password_file = property(lambda self: self.root / "pgpass")

    @classmethod
    def of(cls, airflow_home: Path) -> Cluster:
        return cls(airflow_home / "postgres")

    @property
    def url(self) -> str:
        """SQLAlchemy's URL for Airflow: the socket's folder as host, no password in it."""
        return f"postgresql+psycopg2://{ROLE}@/{DATABASE}?host={self.socket_dir}"

    def environment(self) -> dict[str, str]:
        """What an Airflow process needs to use this cluster as its metadata database."""
        return {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.url,
            "PGPASSFILE": str(self.password_file),
        }

    @property
    def reader_password_file(self) -> Path:
        """The BI logins' role's password, as a libpq password file (0600): `PGPASSFILE=...`."""
        return self.root / "reader.pgpass"

    @property
    def serve_url(self) -> str:
        """The served warehouse (WAREHOUSE_SERVE_POSTGRES_URL), its password in PGPASSFILE."""
        return f"postgresql://{ROLE}@/{SERVED_DATABASE}?host={self.socket_dir}"

    def init_serving(self) -> None:
        """The served warehouse's database and read-only role, by the compose's own init
        script; the role's password generated once and kept in `reader_password_file`."""
        path = self.reader_password_file
        if path.exists():
            password = path.read_text().strip().rsplit(":", 1)[1]
        else:
            password = secrets.token_hex(24)
            private_file(path, f"*:*:*:{READER_ROLE}:{password}\n")
        env = {
            **self.environment(),
            "PATH": f"{PG_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PGHOST": str(self.socket_dir),
            "POSTGRES_USER": ROLE,
            "POSTGRES_DB": DATABASE,
            "WAREHOUSE_READER_PASSWORD": password,
        }
        result = subprocess.run(
            ["bash", str(SERVING_INIT)],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd="/",
        )
        if result.returncode != 0:
            raise PostgresError(f"{SERVING_INIT.name} failed: {result.stdout.strip()[-1500:]}")

    def running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        return _run("pg_ctl", "status", "-D", str(self.data_dir), check=False).returncode == 0

    def start(self) -> None:
        """Create the cluster on its first start, start the server, create Airflow's database."""
        if not (PG_BIN / "initdb").exists():
            raise PostgresError(
                f"PostgreSQL 15 is not installed ({PG_BIN}/initdb is missing): "
                "`make up` installs Debian's postgresql-15, or apt-get install postgresql-15"
            )
        owner = _owner()
        if not (self.data_dir / "PG_VERSION").exists():
            for folder in (self.root, self.socket_dir):
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.chown(folder, owner.pw_uid, owner.pw_gid)
            password = secrets.token_hex(24)  # hex: nothing to escape in the password file
            private_file(self.password_file, f"*:*:*:{ROLE}:{password}\n")
            once = private_file(self.root / ".initdb-password", f"{password}\n", owner)
            try:
                auth = ["--auth=scram-sha-256", "--no-locale", f"--pwfile={once}"]
                _run("initdb", "-D", str(self.data_dir), "-U", ROLE, *auth)
            finally:
                once.unlink()
        if not self.running():
            log = self.root / "postgres.log"
            log.touch(mode=0o600)
            os.chown(log, owner.pw_uid, owner.pw_gid)
            local = f"-c listen_addresses='' -k '{self.socket_dir}' -c unix_socket_permissions=0700"
            options = ["-w", "-D", str(self.data_dir), "-l", str(log), "-o", local]
            server = _run("pg_ctl", "start", *options, check=False)
            if server.returncode != 0:
                raise PostgresError(f"pg_ctl start failed: {log.read_text()[-1500:]}")
        client = ["-h", str(self.socket_dir), "-U", ROLE, DATABASE]
        created = _run("createdb", *client, as_root=True, env=self.environment(), check=False)
        if created.returncode != 0 and "already exists" not in created.stdout:
            raise PostgresError(f"createdb {DATABASE} failed: {created.stdout[-1500:]}")

    def stop(self) -> bool:
        """Stop the server (fast: open sessions are ended); whether it was running."""
        if not self.running():
            return False
        _run("pg_ctl", "stop", "--mode=fast", "-D", str(self.data_dir))
        return True


def _owner() -> pwd.struct_passwd:
    """Who runs the server: we ourselves, or `postgres` when we are root."""
    try:
        return pwd.getpwnam("postgres") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    except KeyError:
        raise PostgresError(
            "PostgreSQL refuses to run as root and there is no `postgres` user: "
            "install Debian's postgresql-15 (it creates the user)"
        ) from None


def private_file(path: Path, text: str, owner: pwd.struct_passwd | None = None) -> Path:
    """A new file only its owner can read (0600 from the moment it exists), holding `text`."""
    path.unlink(missing_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        file.write(text)
    if owner is not None:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    return path


def _run(program: str, *args: str, check=True, as_root=False, env=None):
    """A PostgreSQL program, from `/` as the server's user (a client may run as root); a failure
    raises PostgresError with its output."""
    command = [str(PG_BIN / program), *args]
    if os.geteuid() == 0 and not as_root:
        command = ["runuser", "-u", _owner().pw_name, "--", *command]
    output = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True, "cwd": "/"}
    result = subprocess.run(command, **output, env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise PostgresError(f"{program} {args[0]} failed: {result.stdout.strip()[-1500:]}")
    return result
