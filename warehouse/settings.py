"""Every setting of the warehouse, in one object built once at each entry point.

The CLI, each DAG task and the test fixtures call `Settings.from_env()` (or build one for a
temporary folder) and pass it to the stage functions; nothing below this module reads a
`WAREHOUSE_*` variable or decides a path. Relative folders resolve against the repository
root, so a DAG task (whose working directory is wherever Airflow started) and a shell in the
repo agree on the same files.

Each field of `Settings` is one `setting(...)`: its environment variable, default, meaning and
parser, written nowhere else. `from_env` and `environment` read and write the variables from
those fields, and docs/configuration.md's table is generated from them
(`python -m warehouse.settings --write-docs`; tests/test_docs.py fails when it differs).

The quiet environment (telemetry and tracking off) is `quiet.env` at the repository root, the
one file the Makefile, docker-compose.yml and this module read.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, dataclass_transform

REPO_ROOT = Path(__file__).resolve().parent.parent
DAGS_FOLDER = REPO_ROOT / "dags"
PLUGINS_FOLDER = REPO_ROOT / "plugins"
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
EXPECTATIONS_DIR = REPO_ROOT / "expectations"
QUIET_ENV_FILE = REPO_ROOT / "quiet.env"
# The page whose table of settings `--write-docs` regenerates, between these two markers.
CONFIGURATION_DOC = REPO_ROOT / "docs" / "configuration.md"
TABLE_START, TABLE_END = "<!-- settings:start -->", "<!-- settings:end -->"

# Airflow pool with one slot: every task that writes the build database runs in it, because
# DuckDB allows one read-write process per file.
WRITER_POOL = "duckdb_writer"
DAG_ID = "ai_revenue_warehouse"
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


def _folder(text: str) -> Path:
    """A folder setting: relative ones are against the repository, not the working directory."""
    path = Path(text)
    return path if path.is_absolute() else REPO_ROOT / path


def _word(text: str) -> str:
    return text.strip().lower()


def _text(value: object) -> str:
    """A value as its environment variable holds it (whole seconds without `.0`)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class Setting:
    """How one field of `Settings` is configured: a row of docs/configuration.md."""

    env: str  # the environment variable
    default: str | None  # as the variable would say it; None: unset
    meaning: str  # one line of Markdown, for the docs' table
    parse: Callable[[str], Any]
    shown: str | None  # the default as the docs show it, where it depends on the machine
    choices: tuple[str, ...]


def setting(
    env: str,
    default: str | None,
    meaning: str,
    parse: Callable[[str], Any] = str,
    *,
    shown: str | None = None,
    choices: tuple[str, ...] = (),
    secret: bool = False,
) -> Any:
    """A field of `Settings`, read from `env` (its value `parse(default)` when unset); a
    `secret` (a password) is left out of the repr."""
    row = Setting(env, default, meaning, parse, shown, choices)
    value = None if default is None else parse(default)
    return field(default=value, repr=not secret, metadata={"setting": row})


@dataclass_transform(frozen_default=True, field_specifiers=(setting,))
def _settings_class(cls: type) -> type:
    """A frozen dataclass whose fields are `setting`s (declared so to type checkers and linters)."""
    return dataclass(frozen=True)(cls)


def _rows() -> Iterator[tuple[str, Setting]]:
    for f in fields(Settings):
        yield f.name, f.metadata["setting"]


@_settings_class
class Settings:
    """Where the warehouse reads and writes, and how its engines are bounded: one `setting` a
    field, the table docs/configuration.md is generated from."""

    landing_dir: Path = setting(
        "WAREHOUSE_LANDING_DIR",
        "seeds",
        "where raw files land (`customers.csv`, `earnings.csv`, `spend/*.csv`)",
        _folder,
    )
    data_dir: Path = setting(
        "WAREHOUSE_DATA_DIR",
        "data",
        "the build and published databases, exports, manifest, validation results, Data Docs, logs",
        _folder,
    )
    airflow_home: Path = setting(
        "AIRFLOW_HOME",
        ".airflow",
        "the local Airflow's home: `make run`'s SQLite metadata, `make up`'s services, logins"
        " and logs",
        _folder,
    )
    duckdb_memory_limit: str = setting(
        "WAREHOUSE_DUCKDB_MEMORY_LIMIT",
        "1.5GB",
        "the memory limit of every DuckDB connection of a run (ingest, dbt, the audit, the"
        " publish); beyond it DuckDB spills to `<data>/duckdb_tmp/`",
    )
    retry_delay_seconds: int = setting(
        "WAREHOUSE_RETRY_DELAY_SECONDS",
        "60",
        "Airflow's wait before retrying a failed task (bad data is not retried)",
        int,
    )
    airflow_port: int = setting(
        "WAREHOUSE_AIRFLOW_PORT", "8080", "the UI and REST API of `make up` (on 127.0.0.1)", int
    )
    airflow_worker_log_port: int = setting(
        "WAREHOUSE_AIRFLOW_WORKER_LOG_PORT", "8793", "`make up`'s task log server (127.0.0.1)", int
    )
    airflow_trigger_log_port: int = setting(
        "WAREHOUSE_AIRFLOW_TRIGGER_LOG_PORT",
        "8794",
        "`make up`'s triggerer log server (127.0.0.1)",
        int,
    )
    airflow_password: str | None = setting(
        "WAREHOUSE_AIRFLOW_PASSWORD",
        None,
        "the Airflow `admin` login's password (compose sets it from `.env`'s"
        " `AIRFLOW_ADMIN_PASSWORD`)",
        shown="generated",
        secret=True,
    )
    airflow_viewer_password: str | None = setting(
        "WAREHOUSE_AIRFLOW_VIEWER_PASSWORD",
        None,
        "the read-only `viewer` login's password (compose: `AIRFLOW_VIEWER_PASSWORD`)",
        shown="generated",
        secret=True,
    )
    dbt_executable: Path = setting(
        "WAREHOUSE_DBT_EXECUTABLE",
        str(VENV_DBT),
        "the dbt the DAG runs (a container image installs it elsewhere)",
        Path,
        shown="`dbt` beside Python",
    )
    # Longer than a run at the seeds' scale, so a `make run` during a scheduled run (or two
    # started together) simply goes after it.
    lock_wait_seconds: float = setting(
        "WAREHOUSE_LOCK_WAIT_SECONDS",
        "600",
        "how long a run (or a writing task) waits for another holding the data folder; `0`"
        " refuses at once",
        float,
    )
    query_timeout_seconds: float = setting(
        "WAREHOUSE_QUERY_TIMEOUT_SECONDS",
        "300",
        "`warehouse query`'s timeout when `--timeout` is not given; `0` for none",
        float,
    )
    query_memory_limit: str = setting(
        "WAREHOUSE_QUERY_MEMORY_LIMIT",
        "2GB",
        "`warehouse query`'s DuckDB memory limit (SQL cannot raise it)",
    )
    query_threads: int = setting(
        "WAREHOUSE_QUERY_THREADS",
        "2",
        "`warehouse query`'s DuckDB threads (SQL cannot raise them)",
        int,
    )
    # dbt_project/profiles.yml reads the engine and the Spark connection from the environment
    # `environment()` gives dbt.
    engine: str = setting(
        "WAREHOUSE_ENGINE",
        "duckdb",
        "the engine dbt builds on",
        _word,
        choices=("duckdb", "spark"),
    )
    spark_method: str = setting(
        "WAREHOUSE_SPARK_METHOD",
        "session",
        "dbt-spark's method (Spark in dbt's process, or through a Thrift server)",
        _word,
        choices=("session", "thrift"),
    )
    spark_host: str = setting(
        "WAREHOUSE_SPARK_HOST", "127.0.0.1", "the Spark Thrift server (`thrift` method)"
    )
    spark_port: int = setting(
        "WAREHOUSE_SPARK_PORT", "10000", "its port (and `make spark-thrift-up`'s)", int
    )
    spark_user: str = setting("WAREHOUSE_SPARK_USER", "warehouse", "the user dbt connects as")
    spark_auth: str = setting(
        "WAREHOUSE_SPARK_AUTH",
        "NONE",
        "the Thrift server's authentication (`NONE`, `NOSASL`, `KERBEROS`)",
    )
    spark_kerberos_service: str | None = setting(
        "WAREHOUSE_SPARK_KERBEROS_SERVICE", None, "Kerberos's service name (`KERBEROS`)"
    )
    spark_connect_retries: int = setting(
        "WAREHOUSE_SPARK_CONNECT_RETRIES", "3", "dbt's connection retries to the Thrift server", int
    )
    spark_threads: int = setting("WAREHOUSE_SPARK_THREADS", "2", "dbt's threads on Spark", int)
    spark_master: str = setting(
        "WAREHOUSE_SPARK_MASTER", "local[2]", "the local Spark's master (`session` method)"
    )
    spark_driver_memory: str = setting(
        "WAREHOUSE_SPARK_DRIVER_MEMORY", "3g", "the local Spark driver's memory"
    )
    spark_shuffle_partitions: int = setting(
        "WAREHOUSE_SPARK_SHUFFLE_PARTITIONS", "4", "the local Spark's shuffle partitions", int
    )
    # Read by dbt only (dbt_project/macros/raw_parquet.sql); None: `raw_parquet_dir`.
    raw_parquet_location: str | None = setting(
        "WAREHOUSE_RAW_PARQUET_LOCATION",
        None,
        "where Spark reads the raw Parquet: a path or URI (`s3a://`, `hdfs://`) the export is"
        " synced to",
        shown="`<data>/raw_parquet`",
    )
    # None: the local Spark's, `spark_dir / "warehouse"`.
    spark_warehouse: Path | None = setting(
        "WAREHOUSE_SPARK_WAREHOUSE_DIR",
        None,
        "where Spark's tables are, as this machine sees them (a cluster's warehouse folder,"
        " mounted here)",
        _folder,
        shown="`<data>/spark/warehouse`",
    )
    # A libpq URL; its password, if any, is better kept in a password file (PGPASSFILE).
    serve_postgres_url: str | None = setting(
        "WAREHOUSE_SERVE_POSTGRES_URL",
        None,
        "a PostgreSQL database each publish also loads the marts into, for BI tools (a libpq"
        " URL; `make up` and compose set their own `warehouse` database); unset: DuckDB only",
        shown="unset",
        secret=True,
    )

    # Alerts (warehouse/serve/alerts.py): Airflow's own connections carry the channels.
    alert_email: str | None = setting(
        "WAREHOUSE_ALERT_EMAIL",
        None,
        "who gets the run's alerts, comma-separated; sent through Airflow's `smtp_default`"
        " connection (`AIRFLOW_CONN_SMTP_DEFAULT`); unset: no email",
    )
    alert_webhook_conn: str | None = setting(
        "WAREHOUSE_ALERT_WEBHOOK_CONN",
        None,
        'the Airflow HTTP connection id the alerts are also POSTed to as JSON (`{"text": ...}`,'
        " which a Slack incoming webhook accepts); unset: no webhook",
    )
    alert_timeout_seconds: float = setting(
        "WAREHOUSE_ALERT_TIMEOUT_SECONDS",
        "10",
        "the longest the end of a run waits for each alert channel; a channel that is down is"
        " logged, never fails the run",
        float,
    )
    stale_sources: str = setting(
        "WAREHOUSE_STALE_SOURCES",
        "warn",
        "a source past its freshness error threshold (warehouse/ingest/sources.py): `warn`"
        " publishes with a warning, `fail` fails the run before publish",
        _word,
        choices=("warn", "fail"),
    )

    def __post_init__(self) -> None:
        for name, row in _rows():
            if row.choices and getattr(self, name) not in row.choices:
                raise ValueError(
                    f"{row.env} must be one of {row.choices}, not {getattr(self, name)!r}"
                )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings a process is configured with (this process's environment by default).
        An empty variable counts as unset."""
        env = os.environ if env is None else env
        values = {}
        for name, row in _rows():
            text = env.get(row.env) or row.default
            try:
                values[name] = None if text is None else row.parse(text)
            except ValueError as error:
                raise ValueError(f"{row.env}={text!r} is not valid: {error}") from None
        return cls(**values)

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
    def freshness_report(self) -> Path:
        """The last run's judgement of each source's freshness."""
        return self.data_dir / "validation" / "freshness.json"

    @property
    def alert_state(self) -> Path:
        """The last run's outcome as the alerts saw it (a recovery follows a failure)."""
        return self.data_dir / "alerts" / "last_outcome.json"

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
        the quiet environment, Airflow's DAGs folder and executor, and every setting that is set."""
        env = {
            **QUIET_ENVIRONMENT,
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_FOLDER),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            # Not a setting: where dbt's DuckDB spills, the spill folder of every connection.
            "WAREHOUSE_DUCKDB_SPILL_DIR": str(self.spill_dir),
        }
        for name, row in _rows():
            if (value := getattr(self, name)) is not None:
                env[row.env] = _text(value)
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


def markdown() -> str:
    """The table of every setting and its default, as docs/configuration.md shows it (never
    this process's values, so never a password)."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for _, row in _rows():
        default = row.shown or ("unset" if row.default is None else f"`{row.default}`")
        choices = f"; one of {', '.join(f'`{c}`' for c in row.choices)}" if row.choices else ""
        lines.append(f"| `{row.env}` | {default} | {row.meaning}{choices} |")
    return "\n".join(lines) + "\n"


def documented(page: str) -> str:
    """`page` with the table between its markers replaced by `markdown()`."""
    before, rest = page.split(TABLE_START, 1)
    after = rest.split(TABLE_END, 1)[1]
    return f"{before}{TABLE_START}\n{markdown()}{TABLE_END}{after}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m warehouse.settings", description=__doc__)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--markdown", action="store_true", help="print the table of settings")
    what.add_argument(
        "--write-docs", action="store_true", help=f"rewrite the table in {CONFIGURATION_DOC}"
    )
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(), end="")
    else:
        CONFIGURATION_DOC.write_text(documented(CONFIGURATION_DOC.read_text()))
        print(f"wrote the table of settings in {CONFIGURATION_DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
