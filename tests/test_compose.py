"""The docker-compose stack's structure (no Docker engine runs here; test_serving.py runs the
same Airflow services natively): its services, pinned images, mounts and secrets."""

from __future__ import annotations

import re
import runpy

import pytest
import yaml
from sqlalchemy.engine import make_url

from tests.conftest import REPO
from warehouse.runtime import services

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
AIRFLOW_SERVICES = {
    "airflow-init": None,
    "airflow-api-server": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}
REQUIRED = re.compile(r"^\$\{(?P<name>[A-Z_]+):\?[^}]+\}$")
# Names of values that are secrets (a *_FILE setting names where one is kept, not the secret).
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|FERNET|TOKEN|_KEY)(?!.*_FILE$)")
PINNED = re.compile(r"^[\w./-]+:\d+(\.\d+)+[\w.-]*$")  # name:version, never latest


def dockerfile_bases() -> dict[str, str]:
    """The base image of each service built from a Dockerfile of the project."""
    bases = {}
    for name, service in SERVICES.items():
        if build := service.get("build"):
            dockerfile = REPO / build["context"] / build.get("dockerfile", "Dockerfile")
            (line,) = [
                line for line in dockerfile.read_text().splitlines() if line.startswith("FROM ")
            ]
            bases[name] = line.split()[1]
    return bases


SPARK_SERVICES = {"spark-master", "spark-worker", "spark-thrift-server"}


def test_stack_has_airflow_postgres_and_a_bi_tool():
    assert set(SERVICES) == {"postgres", "superset", *AIRFLOW_SERVICES, *SPARK_SERVICES}
    for name, command in AIRFLOW_SERVICES.items():
        service = SERVICES[name]
        env = service["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
        if command:
            assert service["command"] == ["airflow", command]
            assert service["depends_on"]["airflow-init"] == {
                "condition": "service_completed_successfully"
            }
    assert SERVICES["airflow-init"]["command"][-1] == "airflow-init"


def test_images_are_pinned():
    images = {name: s["image"] for name, s in SERVICES.items() if "build" not in s}
    images |= dockerfile_bases()
    assert set(images) == set(SERVICES)
    for name, image in images.items():
        assert PINNED.match(image), f"{name}: image {image} is not pinned to a version"
    # The Airflow image is the version uv.lock pins.
    lock = (REPO / "uv.lock").read_text()
    airflow = re.search(r'name = "apache-airflow"\nversion = "([^"]+)"', lock).group(1)
    assert dockerfile_bases()["airflow-api-server"].startswith(f"apache/airflow:{airflow}-")


def test_project_is_mounted_and_superset_reads_the_warehouse_read_only():
    for name in AIRFLOW_SERVICES:
        assert "./:/opt/warehouse" in SERVICES[name]["volumes"]
    superset_volumes = SERVICES["superset"]["volumes"]
    assert "./data:/warehouse:ro" in superset_volumes
    assert all(volume.endswith(":ro") for volume in superset_volumes)
    database = yaml.safe_load((REPO / "bi/superset/dashboard/databases/warehouse.yaml").read_text())
    assert database["sqlalchemy_uri"] == (
        "duckdb:////warehouse/warehouse.duckdb?access_mode=read_only"
        "&enable_external_access=false&lock_configuration=true"
    )
    assert database["allow_dml"] is False


def test_superset_dashboard_bundle_is_complete():
    folder = REPO / "bi/superset/dashboard"
    load = lambda path: yaml.safe_load(path.read_text())  # noqa: E731
    database = load(folder / "databases/warehouse.yaml")
    datasets = [load(p) for p in (folder / "datasets").rglob("*.yaml")]
    charts = [load(p) for p in (folder / "charts").glob("*.yaml")]
    (dashboard,) = [load(p) for p in (folder / "dashboards").glob("*.yaml")]
    assert {d["table_name"] for d in datasets} == {
        "fct_revenue_concentration",
        "fct_revenue_at_risk",
    }
    assert all(d["database_uuid"] == database["uuid"] and d["schema"] == "marts" for d in datasets)
    dataset_uuids = {d["uuid"] for d in datasets}
    assert all(c["dataset_uuid"] in dataset_uuids for c in charts)
    placed = {
        item["meta"]["uuid"]
        for item in dashboard["position"].values()
        if isinstance(item, dict) and item.get("type") == "CHART"
    }
    assert placed == {c["uuid"] for c in charts}


def test_no_literal_secrets_and_every_one_is_required():
    required = set()

    def check(environment: dict, where: str) -> None:
        for name, value in environment.items():
            text = str(value)
            match = REQUIRED.match(text)
            if SECRET_NAME.search(name):
                assert match, f"{where}: {name} must come from .env as ${{VAR:?...}}"
            if match:
                required.add(match.group("name"))
            if "://" in text and "@" in text:  # a connection URL: its password from .env
                assert re.search(r":\$\{[A-Z_]+:\?[^}]+\}@", text), f"{where}: {name}"

    for name, service in SERVICES.items():
        check(service.get("environment", {}), name)
        required.update(re.findall(r"\$\{([A-Z_]+):\?", str(service)))
    example = dict(
        line.split("=", 1)
        for line in (REPO / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert required <= set(example)
    assert all(example[name] == "" for name in required)  # placeholders, no values
    assert ".env" in (REPO / ".gitignore").read_text().splitlines()


@pytest.mark.parametrize("service", ["airflow-api-server", "superset"])
def test_ui_ports_listen_on_localhost_only(service):
    assert all(port.startswith("127.0.0.1:") for port in SERVICES[service]["ports"])


def test_superset_bootstrap_defaults_are_the_compose_mounts():
    """bootstrap.sh takes its paths from the environment (tests/test_superset.py runs it
    natively); its defaults are where docker-compose.yml mounts the folders."""
    superset = SERVICES["superset"]
    assert superset["command"] == ["/app/warehouse_bi/bootstrap.sh"]
    mounts = dict(volume.rsplit(":", 1)[0].split(":", 1) for volume in superset["volumes"])
    script = (REPO / "bi/superset/bootstrap.sh").read_text()
    defaults = dict(re.findall(r"^\w+=\$\{(\w+):-([^}]+)\}$", script, re.M))
    assert mounts["./bi/superset"] == defaults["SUPERSET_BI_DIR"]
    assert mounts["./data"] == defaults["WAREHOUSE_DATA_DIR"]
    assert superset["environment"]["SUPERSET_CONFIG_PATH"] == (
        f"{defaults['SUPERSET_BI_DIR']}/superset_config.py"
    )


def compose_environment(service: str) -> dict[str, str]:
    """A service's environment as compose hands it to the container, each required value
    (`${NAME:?...}`, from .env) standing as `<NAME>`."""
    return {
        name: REQUIRED.sub(r"<\g<name>>", str(value))
        for name, value in SERVICES[service]["environment"].items()
    }


def test_superset_keeps_its_metadata_in_the_compose_postgres(monkeypatch):
    """Superset's config, run with the container's environment, connects to the compose's
    Postgres service as the user its init script creates, with the same secret from .env (the
    native test, tests/test_superset.py, gives its own cluster's address)."""
    monkeypatch.delenv("SUPERSET_DB_HOST", raising=False)
    monkeypatch.delenv("SUPERSET_DB_PORT", raising=False)
    for name, value in compose_environment("superset").items():
        monkeypatch.setenv(name, value)

    config = runpy.run_path(str(REPO / "bi/superset/superset_config.py"))

    url = make_url(config["SQLALCHEMY_DATABASE_URI"])
    assert url.host in SERVICES["superset"]["depends_on"]
    assert SERVICES[url.host]["image"].startswith("postgres:") and url.port == 5432
    assert (url.username, url.database) == ("superset", "superset")
    assert url.password == compose_environment(url.host)["SUPERSET_DB_PASSWORD"]
    assert url.password == "<SUPERSET_DB_PASSWORD>" and config["SECRET_KEY"] == (
        "<SUPERSET_SECRET_KEY>"
    )


def test_airflow_uses_the_fab_auth_manager_with_an_admin_and_a_viewer():
    """The same production auth manager as `make up` (test_serving.py proves it there), and
    airflow-init creates both logins from .env's secrets."""
    for name in AIRFLOW_SERVICES:
        env = SERVICES[name]["environment"]
        assert env["AIRFLOW__CORE__AUTH_MANAGER"] == services.AUTH_MANAGER, name
        assert not [key for key in env if "SIMPLE_AUTH_MANAGER" in key], name
    init = SERVICES["airflow-init"]["environment"]
    for variable, secret in [
        ("WAREHOUSE_AIRFLOW_PASSWORD", "AIRFLOW_ADMIN_PASSWORD"),
        ("WAREHOUSE_AIRFLOW_VIEWER_PASSWORD", "AIRFLOW_VIEWER_PASSWORD"),
    ]:
        assert REQUIRED.match(init[variable]).group("name") == secret
    # The image installs the locked dependencies: the provider and both PostgreSQL drivers
    # (Airflow 3 derives an asyncpg URL from the psycopg2 one for its async engine).
    lock = (REPO / "uv.lock").read_text()
    for package in ("apache-airflow-providers-fab", "psycopg2-binary", "asyncpg"):
        assert f'\nname = "{package}"\n' in lock, package


def test_airflow_services_share_the_task_logs():
    """The api-server serves task logs from files the scheduler's workers wrote."""
    for name in AIRFLOW_SERVICES:
        assert "airflow-logs:/opt/airflow/logs" in SERVICES[name]["volumes"], name
    assert "airflow-logs" in COMPOSE["volumes"]


def test_spark_cluster_is_an_opt_in_profile_at_the_locked_spark_version():
    """Master, one worker and the Thrift server, only with `--profile spark`, on Apache's image
    of the Spark release pyspark is locked to; everything else starts without the profile."""
    lock = (REPO / "uv.lock").read_text()
    (pyspark,) = re.findall(r'name = "pyspark"\nversion = "([^"]+)"', lock)
    for name in SPARK_SERVICES:
        service = SERVICES[name]
        assert service["profiles"] == ["spark"], name
        assert service["image"].startswith(f"apache/spark:{pyspark}-"), name
    for name in set(SERVICES) - SPARK_SERVICES:
        assert "profiles" not in SERVICES[name], name
    worker = SERVICES["spark-worker"]["command"]
    assert worker[-1] == "spark://spark-master:7077"
    thrift = SERVICES["spark-thrift-server"]["command"]
    assert "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2" in thrift
    assert thrift[thrift.index("--master") + 1] == "spark://spark-master:7077"
    assert "hive.server2.thrift.port=10000" in thrift
    assert "healthcheck" in SERVICES["spark-thrift-server"]


def test_airflow_reaches_the_thrift_server_by_configuration_and_defaults_to_duckdb():
    from warehouse.settings import Settings

    for name in AIRFLOW_SERVICES:
        service = SERVICES[name]
        env = service["environment"]
        assert env["WAREHOUSE_ENGINE"] == "${WAREHOUSE_ENGINE:-duckdb}"
        assert env["WAREHOUSE_SPARK_METHOD"] == "thrift"
        assert env["WAREHOUSE_SPARK_HOST"] == "spark-thrift-server"
        # The environment is one Settings understands, DuckDB when nothing is set.
        resolved = {k: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(v)) for k, v in env.items()}
        settings = Settings.from_env(resolved)
        assert (settings.engine, settings.spark_method) == ("duckdb", "thrift")
        assert settings.spark_port == 10000
        # Only when the profile is on do the services wait for the Thrift server.
        if name != "airflow-init":
            assert service["depends_on"]["spark-thrift-server"] == {
                "condition": "service_healthy",
                "required": False,
            }
    # Spark writes its tables where Airflow reads them: one path on every container.
    warehouse_dir = SERVICES["airflow-scheduler"]["environment"]["WAREHOUSE_SPARK_WAREHOUSE_DIR"]
    data_dir = SERVICES["airflow-scheduler"]["environment"]["WAREHOUSE_DATA_DIR"]
    thrift = SERVICES["spark-thrift-server"]["command"]
    assert f"spark.sql.warehouse.dir={warehouse_dir}" in thrift
    for name in ("spark-worker", "spark-thrift-server"):
        assert f"./data:{data_dir}" in SERVICES[name]["volumes"], name
    # The image gets dbt-spark only when asked.
    build = SERVICES["airflow-scheduler"]["build"]
    assert build["args"]["WAREHOUSE_EXTRAS"] == "${WAREHOUSE_IMAGE_EXTRAS:-}"
    assert "${WAREHOUSE_EXTRAS:+--extra" in (REPO / "docker/airflow.Dockerfile").read_text()
