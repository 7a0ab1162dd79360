"""One home for each setting: `Settings` is built from the environment once per entry point,
owns every path, and is the only place in Python that reads `WAREHOUSE_*` or sets the quiet
environment; the Makefile and docker-compose.yml read the same `quiet.env`."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from warehouse.settings import (
    DAGS_FOLDER,
    QUIET_ENV_FILE,
    QUIET_ENVIRONMENT,
    Settings,
    markdown,
)

PYTHON_SOURCES = [
    p
    for folder in ("warehouse", "dags", "benchmarks")
    for p in (REPO / folder).rglob("*.py")
    if p.name != "settings.py"
]


def test_defaults_resolve_against_the_repository_whatever_the_working_directory():
    settings = Settings.from_env({})

    assert settings.landing_dir == REPO / "seeds"
    assert settings.data_dir == REPO / "data"
    assert settings.airflow_home == REPO / ".airflow"
    assert settings.build_db == REPO / "data" / "build.duckdb"
    assert settings.published_db == REPO / "data" / "warehouse.duckdb"
    assert settings.duckdb_memory_limit == "1.5GB" and settings.retry_delay_seconds == 60
    assert (settings.airflow_port, settings.airflow_worker_log_port) == (8080, 8793)
    assert settings.airflow_trigger_log_port == 8794
    assert settings.airflow_password is None and settings.airflow_viewer_password is None


def test_the_environment_overrides_and_round_trips(tmp_path):
    env = {
        "WAREHOUSE_LANDING_DIR": "elsewhere",  # relative: against the repository
        "WAREHOUSE_DATA_DIR": str(tmp_path),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "WAREHOUSE_DUCKDB_MEMORY_LIMIT": "1GB",
        "WAREHOUSE_RETRY_DELAY_SECONDS": "5",
        "WAREHOUSE_AIRFLOW_PORT": "9090",
        "WAREHOUSE_AIRFLOW_WORKER_LOG_PORT": "9793",
        "WAREHOUSE_AIRFLOW_TRIGGER_LOG_PORT": "9794",
        "WAREHOUSE_AIRFLOW_VIEWER_PASSWORD": "-".join(["a", "viewer", "password"]),
    }
    settings = Settings.from_env(env)

    assert settings.landing_dir == REPO / "elsewhere"
    assert settings.manifest == tmp_path / "manifest.json"
    assert (settings.duckdb_memory_limit, settings.retry_delay_seconds) == ("1GB", 5)
    assert settings.airflow_port == 9090
    assert (settings.airflow_worker_log_port, settings.airflow_trigger_log_port) == (9793, 9794)
    assert settings.airflow_viewer_password == env["WAREHOUSE_AIRFLOW_VIEWER_PASSWORD"]
    # What a child process is given describes the same settings.
    assert Settings.from_env(settings.environment()) == settings
    child = settings.environment()
    assert child["AIRFLOW__CORE__DAGS_FOLDER"] == str(DAGS_FOLDER)
    assert QUIET_ENVIRONMENT.items() <= child.items()


def test_each_setting_is_one_row_of_variable_default_and_meaning():
    """Every field is read from its own variable, given back to children under the same name,
    and documented: a setting added as one `setting(...)` is all three."""
    rows = {f.name: f.metadata["setting"] for f in dataclasses.fields(Settings)}
    variables = [row.env for row in rows.values()]
    assert len(set(variables)) == len(variables)
    assert all(f"| `{row.env}` |" in markdown() and "|" not in row.meaning for row in rows.values())

    def example(name, row):
        if row.choices:
            return row.choices[-1]
        return "7" if row.parse in (int, float) else f"/elsewhere/{name}"

    given = {row.env: example(name, row) for name, row in rows.items()}
    settings = Settings.from_env(given)
    assert {n: getattr(settings, n) for n in rows} == {
        n: row.parse(given[row.env]) for n, row in rows.items()
    }
    assert given.items() <= settings.environment().items()
    unset = {row.env for row in rows.values() if row.default is None}
    assert set(variables) - set(Settings.from_env({}).environment()) == unset


def test_passwords_reach_children_but_are_never_shown():
    secret = "-".join(["never", "shown"])
    settings = Settings.from_env(
        {"WAREHOUSE_AIRFLOW_PASSWORD": secret, "WAREHOUSE_AIRFLOW_VIEWER_PASSWORD": secret}
    )
    assert settings.environment()["WAREHOUSE_AIRFLOW_PASSWORD"] == secret
    assert secret not in repr(settings) and secret not in str(settings)
    assert secret not in markdown()


def test_a_bad_value_names_its_variable():
    with pytest.raises(ValueError, match=r"^WAREHOUSE_QUERY_THREADS='two' is not valid"):
        Settings.from_env({"WAREHOUSE_QUERY_THREADS": "two"})
    with pytest.raises(ValueError, match=r"^WAREHOUSE_SPARK_METHOD must be one of"):
        Settings.from_env({"WAREHOUSE_SPARK_METHOD": "jdbc"})


def test_quiet_environment_turns_off_every_tools_telemetry():
    assert QUIET_ENVIRONMENT == {
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "False",
    }


def test_makefile_and_compose_take_the_quiet_environment_from_quiet_env():
    exported = subprocess.run(
        ["make", "-s", "-f", "-", "show"],
        input=(REPO / "Makefile").read_text() + "\nshow:\n\t@env\n",
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    environment = dict(line.split("=", 1) for line in exported.splitlines() if "=" in line)
    assert QUIET_ENVIRONMENT.items() <= environment.items()
    assert not any(name in (REPO / "Makefile").read_text() for name in QUIET_ENVIRONMENT)

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        if name.startswith("airflow"):
            assert service["env_file"] == QUIET_ENV_FILE.name
            assert not set(service["environment"]) & set(QUIET_ENVIRONMENT), name


def test_settings_is_the_only_python_reader_of_warehouse_variables_and_quiet_setter():
    reads = re.compile(r"(environ|getenv)[^\n]{0,40}[\"']WAREHOUSE_")
    quiet = re.compile("|".join(re.escape(name) for name in QUIET_ENVIRONMENT))
    offenders = {
        str(path.relative_to(REPO)): hit.group(0)
        for path in PYTHON_SOURCES
        for pattern in (reads, quiet)
        if (hit := pattern.search(path.read_text()))
    }
    assert offenders == {}
    assert len(PYTHON_SOURCES) > 20  # the scan saw the package


def test_no_stage_decides_a_path_of_the_data_folder():
    """Paths in the data folder are Settings properties; no module builds them by hand."""
    hand_built = re.compile(
        r"data_dir\(?\)?\s*/\s*[\"'](build|warehouse)\.duckdb|manifest\.json[\"']"
    )
    offenders = [
        str(p.relative_to(REPO)) for p in PYTHON_SOURCES if hand_built.search(p.read_text())
    ]
    assert offenders == []


def test_stages_take_settings_explicitly(tmp_path: Path):
    """A stage writes where the settings it is given say, whatever this process's environment."""
    from warehouse.ingest import ingest_source

    settings = Settings.from_env({}).with_folders(
        landing_dir=REPO / "seeds", data_dir=tmp_path / "data"
    )
    ingest_source("earnings", "run", settings)

    assert (tmp_path / "data" / "build.duckdb").exists()


def test_the_engine_and_spark_connection_are_settings_that_reach_dbt(tmp_path):
    """WAREHOUSE_ENGINE and every WAREHOUSE_SPARK_* profiles.yml reads are Settings fields,
    given back to dbt through `environment()`; the default stays DuckDB."""
    default = Settings.from_env({})
    assert (default.engine, default.dbt_target) == ("duckdb", "build")
    assert default.spark_warehouse_dir == REPO / "data" / "spark" / "warehouse"

    env = {
        "WAREHOUSE_DATA_DIR": str(tmp_path),
        "WAREHOUSE_ENGINE": "Spark",
        "WAREHOUSE_SPARK_METHOD": "thrift",
        "WAREHOUSE_SPARK_HOST": "spark-thrift-server",
        "WAREHOUSE_SPARK_PORT": "10001",
        "WAREHOUSE_SPARK_USER": "etl",
        "WAREHOUSE_SPARK_AUTH": "KERBEROS",
        "WAREHOUSE_SPARK_KERBEROS_SERVICE": "hive",
        "WAREHOUSE_SPARK_CONNECT_RETRIES": "5",
        "WAREHOUSE_SPARK_THREADS": "8",
        "WAREHOUSE_SPARK_MASTER": "local[4]",
        "WAREHOUSE_SPARK_DRIVER_MEMORY": "6g",
        "WAREHOUSE_SPARK_SHUFFLE_PARTITIONS": "16",
        "WAREHOUSE_SPARK_WAREHOUSE_DIR": str(tmp_path / "mounted"),
    }
    settings = Settings.from_env(env)
    assert (settings.engine, settings.dbt_target, settings.spark_port) == ("spark", "spark", 10001)
    assert settings.spark_warehouse_dir == tmp_path / "mounted"
    assert Settings.from_env(settings.environment()) == settings
    child = settings.environment()
    assert {k: v for k, v in env.items() if k != "WAREHOUSE_ENGINE"}.items() <= child.items()
    assert child["WAREHOUSE_ENGINE"] == "spark"

    profiles = (REPO / "dbt_project" / "profiles.yml").read_text()
    read_by_dbt = set(re.findall(r"env_var\('(WAREHOUSE_[A-Z_]+)'", profiles))
    assert read_by_dbt <= set(child), read_by_dbt - set(child)
    with pytest.raises(ValueError, match="WAREHOUSE_ENGINE"):
        Settings.from_env({"WAREHOUSE_ENGINE": "snowflake"})


def test_every_connection_of_a_run_is_bounded_by_the_memory_setting():
    """DuckDB is opened through `warehouse.db` (`connect`, or `bounds` for an in-memory one)
    wherever a run opens it, so WAREHOUSE_DUCKDB_MEMORY_LIMIT bounds all of them; dbt's
    profile reads the same variable and spill folder."""
    run_modules = [
        p
        for p in (REPO / "warehouse").rglob("*.py")
        if p.name != "db.py" and "synthetic" not in p.parts
    ]
    unbounded = []
    for path in run_modules:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            bare = "duckdb.connect(" in line and "config=" not in line
            if bare and not _allowed_bare_connection(path):
                unbounded.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert unbounded == []
    profile = (REPO / "dbt_project" / "profiles.yml").read_text()
    assert "env_var('WAREHOUSE_DUCKDB_MEMORY_LIMIT'" in profile
    assert "env_var('WAREHOUSE_DUCKDB_SPILL_DIR'" in profile
    settings = Settings.from_env({})
    assert settings.environment()["WAREHOUSE_DUCKDB_SPILL_DIR"] == str(settings.spill_dir)


def _allowed_bare_connection(path: Path) -> bool:
    """Connections no run opens: `warehouse query` (its own locked limits)."""
    return path.relative_to(REPO).as_posix() == "warehouse/serve/query.py"
