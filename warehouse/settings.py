"""Every setting of the warehouse, in one object built once at each entry point.

The CLI, each DAG task and the test fixtures call `Settings.from_env()` (or build one for a
temporary folder) and pass it to the stage functions; nothing below this module reads a
`WAREHOUSE_*` variable or decides a path. Relative folders resolve against the repository
root, so a DAG task (whose working directory is wherever Airflow started) and a shell in the
repo agree on the same files.

| variable | default | meaning |
| --- | --- | --- |
| `WAREHOUSE_LANDING_DIR` | `seeds` | where raw files land |
| `WAREHOUSE_DATA_DIR` | `data` | build and published databases, exports, reports, logs |
| `AIRFLOW_HOME` | `.airflow` | the local Airflow's metadata database and logs |
| `WAREHOUSE_DUCKDB_MEMORY_LIMIT` | `1.5GB` | every DuckDB connection's limit; it spills beyond |
| `WAREHOUSE_RETRY_DELAY_SECONDS` | `60` | Airflow's wait before retrying a failed task |
| `WAREHOUSE_AIRFLOW_PORT` | `8080` | the UI and REST API of `make up` (on 127.0.0.1) |
| `WAREHOUSE_AIRFLOW_WORKER_LOG_PORT` | `8793` | `make up`'s task log server (127.0.0.1) |
| `WAREHOUSE_AIRFLOW_TRIGGER_LOG_PORT` | `8794` | `make up`'s triggerer log server (127.0.0.1) |
| `WAREHOUSE_AIRFLOW_PASSWORD` | generated | the `admin` login's password (make up, compose) |
| `WAREHOUSE_AIRFLOW_VIEWER_PASSWORD` | generated | the read-only `viewer` login's password |
| `WAREHOUSE_DBT_EXECUTABLE` | the venv's `dbt` | dbt, where an image installs it elsewhere |
| `WAREHOUSE_LOCK_WAIT_SECONDS` | `600` | how long a run waits for another on the same data folder |
| `WAREHOUSE_QUERY_TIMEOUT_SECONDS` | `300` | `warehouse query`'s default timeout (`--timeout`) |
| `WAREHOUSE_QUERY_MEMORY_LIMIT` | `2GB` | `warehouse query`'s memory limit (SQL cannot raise it) |
| `WAREHOUSE_QUERY_THREADS` | `2` | `warehouse query`'s threads (SQL cannot raise them) |
| `WAREHOUSE_ENGINE` | `duckdb` | the engine dbt builds on: `duckdb` or `spark` |
| `WAREHOUSE_SPARK_METHOD` | `session` | dbt-spark's method: `session` or `thrift` |
| `WAREHOUSE_SPARK_HOST` | `127.0.0.1` | the Spark Thrift server (`thrift`) |
| `WAREHOUSE_SPARK_PORT` | `10000` | its port (and the local one's) |
| `WAREHOUSE_SPARK_USER` | `warehouse` | the user dbt connects as |
| `WAREHOUSE_SPARK_AUTH` | `NONE` | `NONE`, `NOSASL` or `KERBEROS` |
| `WAREHOUSE_SPARK_KERBEROS_SERVICE` | none | Kerberos's service name |
| `WAREHOUSE_SPARK_CONNECT_RETRIES` | `3` | dbt's connection retries |
| `WAREHOUSE_SPARK_THREADS` | `2` | dbt's threads on Spark |
| `WAREHOUSE_SPARK_MASTER` | `local[2]` | the local Spark's master |
| `WAREHOUSE_SPARK_DRIVER_MEMORY` | `3g` | the local Spark driver's memory |
| `WAREHOUSE_SPARK_SHUFFLE_PARTITIONS` | `4` | the local Spark's shuffle partitions |
| `WAREHOUSE_SPARK_WAREHOUSE_DIR` | `<data>/spark/warehouse` | Spark's tables, as seen here |

The quiet environment (telemetry and tracking off) is `quiet.env` at the repository root, the
one file the Makefile, docker-compose.yml and this module read.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DAGS_FOLDER = REPO_ROOT / "dags"
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
EXPECTATIONS_DIR = REPO_ROOT / "expectations"
QUIET_ENV_FILE = REPO_ROOT / "quiet.env"

# Airflow pool with one slot: every task that writes the build database runs in it, because
# DuckDB allows one read-write process per file.
WRITER_POOL = "duckdb_writer"
DAG_ID = "ai_revenue_warehouse"
ENGINES = ("duckdb", "spark")
SPARK_METHODS = ("session", "thrift")
REPORT_DAG_ID = "ai_revenue_report"


def _read_env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


QUIET_ENVIRONMENT: dict[str, str] = _read_env_file(QUIET_ENV_FILE)
# The dbt installed beside the running Python (the project's virtual environment).
VENV_DBT = Path(sys.executable).with_name("dbt")


def _folder(env: Mapping[str, str], variable: str, default: str) -> Path:
    path = Path(env.get(variable) or default)
    return path if path.is_absolute() else REPO_ROOT / path


@dataclass(frozen=True)
class Settings:
    """Where the warehouse reads and writes, and how its engines are bounded."""

    landing_dir: Path
    data_dir: Path
    airflow_home: Path
    duckdb_memory_limit: str = "1.5GB"
    retry_delay_seconds: int = 60
    airflow_port: int = 8080
    airflow_worker_log_port: int = 8793
    airflow_trigger_log_port: int = 8794
    airflow_password: str | None = None
    airflow_viewer_password: str | None = None
    dbt_executable: Path = VENV_DBT
    # A second run on the same data folder waits this long for the first, then gives up
    # naming it; 0 refuses at once. Longer than a run at the seeds' scale, so a `make run`
    # during a scheduled run (or two started together) simply goes after it.
    lock_wait_seconds: float = 600.0
    query_timeout_seconds: float = 300.0
    query_memory_limit: str = "2GB"
    query_threads: int = 2
    # The engine dbt builds on, and how dbt-spark reaches Spark (dbt_project/profiles.yml reads
    # them from the environment `environment()` gives dbt).
    engine: str = "duckdb"
    spark_method: str = "session"
    spark_host: str = "127.0.0.1"
    spark_port: int = 10000
    spark_user: str = "warehouse"
    spark_auth: str = "NONE"
    spark_kerberos_service: str | None = None
    spark_connect_retries: int = 3
    spark_threads: int = 2
    spark_master: str = "local[2]"
    spark_driver_memory: str = "3g"
    spark_shuffle_partitions: int = 4
    # Where Spark's tables are as this machine sees them: `<data>/spark/warehouse` (None) for
    # the local Spark; a cluster's warehouse folder mounted here otherwise.
    spark_warehouse: Path | None = None

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"WAREHOUSE_ENGINE must be one of {ENGINES}, not {self.engine!r}")
        if self.spark_method not in SPARK_METHODS:
            raise ValueError(
                f"WAREHOUSE_SPARK_METHOD must be one of {SPARK_METHODS}, not {self.spark_method!r}"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings a process is configured with (this process's environment by default)."""
        env = os.environ if env is None else env
        defaults = cls.__dataclass_fields__
        return cls(
            landing_dir=_folder(env, "WAREHOUSE_LANDING_DIR", "seeds"),
            data_dir=_folder(env, "WAREHOUSE_DATA_DIR", "data"),
            airflow_home=_folder(env, "AIRFLOW_HOME", ".airflow"),
            duckdb_memory_limit=env.get("WAREHOUSE_DUCKDB_MEMORY_LIMIT")
            or defaults["duckdb_memory_limit"].default,
            retry_delay_seconds=int(
                env.get("WAREHOUSE_RETRY_DELAY_SECONDS") or defaults["retry_delay_seconds"].default
            ),
            airflow_port=int(env.get("WAREHOUSE_AIRFLOW_PORT") or defaults["airflow_port"].default),
            airflow_worker_log_port=int(
                env.get("WAREHOUSE_AIRFLOW_WORKER_LOG_PORT")
                or defaults["airflow_worker_log_port"].default
            ),
            airflow_trigger_log_port=int(
                env.get("WAREHOUSE_AIRFLOW_TRIGGER_LOG_PORT")
                or defaults["airflow_trigger_log_port"].default
            ),
            airflow_password=env.get("WAREHOUSE_AIRFLOW_PASSWORD") or None,
            airflow_viewer_password=env.get("WAREHOUSE_AIRFLOW_VIEWER_PASSWORD") or None,
            dbt_executable=Path(
                env.get("WAREHOUSE_DBT_EXECUTABLE") or defaults["dbt_executable"].default
            ),
            lock_wait_seconds=float(
                env.get("WAREHOUSE_LOCK_WAIT_SECONDS") or defaults["lock_wait_seconds"].default
            ),
            query_timeout_seconds=float(
                env.get("WAREHOUSE_QUERY_TIMEOUT_SECONDS")
                or defaults["query_timeout_seconds"].default
            ),
            query_memory_limit=env.get("WAREHOUSE_QUERY_MEMORY_LIMIT")
            or defaults["query_memory_limit"].default,
            query_threads=int(
                env.get("WAREHOUSE_QUERY_THREADS") or defaults["query_threads"].default
            ),
            engine=(env.get("WAREHOUSE_ENGINE") or defaults["engine"].default).strip().lower(),
            spark_method=(env.get("WAREHOUSE_SPARK_METHOD") or defaults["spark_method"].default)
            .strip()
            .lower(),
            spark_host=env.get("WAREHOUSE_SPARK_HOST") or defaults["spark_host"].default,
            spark_port=int(env.get("WAREHOUSE_SPARK_PORT") or defaults["spark_port"].default),
            spark_user=env.get("WAREHOUSE_SPARK_USER") or defaults["spark_user"].default,
            spark_auth=env.get("WAREHOUSE_SPARK_AUTH") or defaults["spark_auth"].default,
            spark_kerberos_service=env.get("WAREHOUSE_SPARK_KERBEROS_SERVICE") or None,
            spark_connect_retries=int(
                env.get("WAREHOUSE_SPARK_CONNECT_RETRIES")
                or defaults["spark_connect_retries"].default
            ),
            spark_threads=int(
                env.get("WAREHOUSE_SPARK_THREADS") or defaults["spark_threads"].default
            ),
            spark_master=env.get("WAREHOUSE_SPARK_MASTER") or defaults["spark_master"].default,
            spark_driver_memory=env.get("WAREHOUSE_SPARK_DRIVER_MEMORY")
            or defaults["spark_driver_memory"].default,
            spark_shuffle_partitions=int(
                env.get("WAREHOUSE_SPARK_SHUFFLE_PARTITIONS")
                or defaults["spark_shuffle_partitions"].default
            ),
            spark_warehouse=(
                _folder(env, "WAREHOUSE_SPARK_WAREHOUSE_DIR", "")
                if env.get("WAREHOUSE_SPARK_WAREHOUSE_DIR")
                else None
            ),
        )

    def with_folders(self, landing_dir: Path | None = None, data_dir: Path | None = None):
        """The same settings over other folders (a test's, a benchmark's)."""
        return replace(
            self,
            landing_dir=landing_dir or self.landing_dir,
            data_dir=data_dir or self.data_dir,
        )

    # The data folder's layout: the one definition of each path in it.
    @property
    def build_db(self) -> Path:
        """The pipeline's own read-write database; users never open it."""
        return self.data_dir / "build.duckdb"

    @property
    def published_db(self) -> Path:
        """The published warehouse users and BI tools open read-only."""
        return self.data_dir / "warehouse.duckdb"

    @property
    def exports_dir(self) -> Path:
        return self.data_dir / "exports"

    @property
    def manifest(self) -> Path:
        return self.data_dir / "manifest.json"

    @property
    def validation_report(self) -> Path:
        return self.data_dir / "validation" / "result.json"

    @property
    def data_docs(self) -> Path:
        """Great Expectations' Data Docs (GX keeps its project in `gx/` of the data folder)."""
        return self.data_dir / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"

    @property
    def report_dir(self) -> Path:
        return self.data_dir / "report"

    @property
    def dbt_docs(self) -> Path:
        return self.data_dir / "docs" / "index.html"

    @property
    def dbt_target_dir(self) -> Path:
        """dbt's target folder (manifest, run results, compiled SQL) for this data folder."""
        return self.data_dir / "dbt"

    @property
    def dbt_target(self) -> str:
        """The target of dbt_project/profiles.yml this engine builds with."""
        return "spark" if self.engine == "spark" else "build"

    @property
    def raw_parquet_dir(self) -> Path:
        """The raw tables and the ledger as Parquet, partitioned by landing file (Spark's
        sources)."""
        return self.data_dir / "raw_parquet"

    @property
    def spark_dir(self) -> Path:
        """The local Spark's own files: its warehouse (the tables dbt builds), its Derby
        metastore, the local Thrift server's pid and log."""
        return self.data_dir / "spark"

    @property
    def spark_warehouse_dir(self) -> Path:
        """Where the tables dbt builds on Spark are, as this machine sees them."""
        return self.spark_warehouse or self.spark_dir / "warehouse"

    @property
    def dbt_manifest(self) -> Path:
        """dbt's manifest of the last parse or build (models, columns, descriptions)."""
        return self.dbt_target_dir / "manifest.json"

    @property
    def dbt_run_results(self) -> Path:
        """dbt's results of the last build (each model's and test's status)."""
        return self.dbt_target_dir / "run_results.json"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def run_lock(self) -> Path:
        """The data folder's writer lock (flock), naming its holder."""
        return self.data_dir / ".run.lock"

    @property
    def children_lock(self) -> Path:
        """Held (shared) by every process a run starts, for as long as it lives."""
        return self.data_dir / ".children.lock"

    @property
    def spill_dir(self) -> Path:
        """Where DuckDB spills beyond its memory limit."""
        return self.data_dir / "duckdb_tmp"

    def environment(self) -> dict[str, str]:
        """The variables a child process (Airflow, dbt, a service) needs to see these settings:
        the quiet environment, Airflow's home and DAGs folder, and the warehouse's own."""
        env = {
            **QUIET_ENVIRONMENT,
            "AIRFLOW_HOME": str(self.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "WAREHOUSE_LANDING_DIR": str(self.landing_dir),
            "WAREHOUSE_DATA_DIR": str(self.data_dir),
            "WAREHOUSE_DUCKDB_MEMORY_LIMIT": self.duckdb_memory_limit,
            # Not a setting: where dbt's DuckDB spills, the spill folder of every connection.
            "WAREHOUSE_DUCKDB_SPILL_DIR": str(self.spill_dir),
            "WAREHOUSE_RETRY_DELAY_SECONDS": str(self.retry_delay_seconds),
            "WAREHOUSE_AIRFLOW_PORT": str(self.airflow_port),
            "WAREHOUSE_AIRFLOW_WORKER_LOG_PORT": str(self.airflow_worker_log_port),
            "WAREHOUSE_AIRFLOW_TRIGGER_LOG_PORT": str(self.airflow_trigger_log_port),
            "WAREHOUSE_DBT_EXECUTABLE": str(self.dbt_executable),
            "WAREHOUSE_LOCK_WAIT_SECONDS": f"{self.lock_wait_seconds:g}",
            "WAREHOUSE_QUERY_TIMEOUT_SECONDS": f"{self.query_timeout_seconds:g}",
            "WAREHOUSE_QUERY_MEMORY_LIMIT": self.query_memory_limit,
            "WAREHOUSE_QUERY_THREADS": str(self.query_threads),
        }
        if self.airflow_password:
            env["WAREHOUSE_AIRFLOW_PASSWORD"] = self.airflow_password
        if self.airflow_viewer_password:
            env["WAREHOUSE_AIRFLOW_VIEWER_PASSWORD"] = self.airflow_viewer_password
        env |= {
            "WAREHOUSE_ENGINE": self.engine,
            "WAREHOUSE_SPARK_METHOD": self.spark_method,
            "WAREHOUSE_SPARK_HOST": self.spark_host,
            "WAREHOUSE_SPARK_PORT": str(self.spark_port),
            "WAREHOUSE_SPARK_USER": self.spark_user,
            "WAREHOUSE_SPARK_AUTH": self.spark_auth,
            "WAREHOUSE_SPARK_CONNECT_RETRIES": str(self.spark_connect_retries),
            "WAREHOUSE_SPARK_THREADS": str(self.spark_threads),
            "WAREHOUSE_SPARK_MASTER": self.spark_master,
            "WAREHOUSE_SPARK_DRIVER_MEMORY": self.spark_driver_memory,
            "WAREHOUSE_SPARK_SHUFFLE_PARTITIONS": str(self.spark_shuffle_partitions),
        }
        if self.spark_kerberos_service:
            env["WAREHOUSE_SPARK_KERBEROS_SERVICE"] = self.spark_kerberos_service
        if self.spark_warehouse:
            env["WAREHOUSE_SPARK_WAREHOUSE_DIR"] = str(self.spark_warehouse)
        return env

    def apply(self) -> None:
        """Make these settings this process's environment, before Airflow is imported (Airflow
        reads AIRFLOW_HOME once, at import) and for every child process it starts."""
        os.environ.update(self.environment())

    @contextlib.contextmanager
    def applied(self) -> Iterator[Settings]:
        """These settings as the environment for a while (a DAG run in this process, whose
        tasks read their settings from it), then the environment as it was."""
        saved = {name: os.environ.get(name) for name in self.environment()}
        self.apply()
        try:
            yield self
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
