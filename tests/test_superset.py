"""Superset as docker-compose.yml runs it, run natively: the image's locked requirements, the
same bootstrap.sh, superset_config.py and dashboard bundle, over a warehouse published by the
project's CLI; then a second publish under the live Superset.

No Docker engine runs here, so the container's steps run on this machine: Superset is installed
from bi/superset/requirements.lock (the lock the Dockerfile installs) into a cached environment
of its own (.cache/superset-<lock hash>/), Superset's metadata goes to a PostgreSQL cluster
of the test's own (made as the compose's init script makes it), bootstrap.sh runs with the
container's paths and port taken from the environment, and the REST API and headless Chromium
check what it serves.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests
import yaml
from packaging.requirements import Requirement

from tests.conftest import REPO, SEEDS, settings_for

pytestmark = [pytest.mark.superset]

BI = REPO / "bi/superset"
LOCK = BI / "requirements.lock"
REQUIREMENTS = BI / "requirements.in"
# The apache/superset:4.1.2 image's Python, and the platform the lock is compiled for.
IMAGE_PYTHON = "3.10"
IMAGE_PLATFORM = "x86_64-manylinux_2_28"
# The environment the tests install the lock into: the project's own Python (3.11); the lock,
# compiled for 3.10, installs there unchanged (the extra 3.10 backports are harmless).
TEST_PYTHON = "3.11"
CACHE = REPO / ".cache"
SCREENSHOT = CACHE / "superset-dashboard.png"
DASHBOARD = "revenue-concentration"
# The same dashboard on the PostgreSQL connection (bi/superset/bundle.py copies it).
POSTGRES_DASHBOARD = f"{DASHBOARD}-postgres"
# The two logins bootstrap.sh makes, with passwords generated for this run.
ANALYST = ("analyst", secrets.token_hex(16))
ADMIN = ("admin", secrets.token_hex(16))
# Bounds on every wait, in seconds.
INSTALL_TIMEOUT = 900
RUN_TIMEOUT = 600
START_TIMEOUT = 300
REQUEST_TIMEOUT = 60
BROWSER_TIMEOUT = 240


def locked() -> dict[str, str]:
    """The lock's pins: name -> version."""
    pins = {}
    for line in LOCK.read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9._-]+)==([^\s;]+)", line):
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def uv() -> list[str]:
    """uv as the Makefile finds it: on PATH, or the module `make setup` installs with pip."""
    found = shutil.which("uv")
    return [found] if found else ["python3", "-m", "uv"]


# --- the image's requirements: a lock, for the image's Python ------------------------------


def test_dockerfile_installs_the_lock_on_the_superset_image():
    dockerfile = (BI / "Dockerfile").read_text()
    assert re.search(r"^FROM apache/superset:4\.1\.2$", dockerfile, re.M)
    assert "COPY requirements.lock" in dockerfile
    assert re.search(r"pip install [^\n]*-r [^\n]*requirements\.lock", dockerfile)
    # No hand-pinned package beside the lock.
    installs = re.findall(r"pip install ([^\n]+)", dockerfile)
    assert all("==" not in install for install in installs)


def test_lock_pins_everything_for_the_image_python():
    header = LOCK.read_text().splitlines()[:3]
    assert any(
        f"--python-version {IMAGE_PYTHON}" in line and f"--python-platform {IMAGE_PLATFORM}" in line
        for line in header
    ), "requirements.lock must be compiled by `make superset-lock` (for the image's Python)"
    pins = locked()
    assert len(pins) > 100  # every package, not a hand list
    assert pins["apache-superset"] == "4.1.2"
    assert pins["duckdb-engine"] == "0.17.0"
    assert pins["duckdb"].startswith("1.5.")  # 2.x needs Python >= 3.11
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            version = pins[requirement.name.lower()]
            assert requirement.specifier.contains(version), f"{requirement} but lock {version}"
    # Superset 4.1.2 does not start, migrate or serve its API with newer releases of these.
    assert {"setuptools", "marshmallow", "pyjwt", "flask-jwt-extended", "psycopg2-binary"} <= set(
        pins
    )


@pytest.mark.slow
def test_lock_resolves_for_the_image_python(tmp_path):
    """The exact pin set resolves on PyPI for Python 3.10 on Linux: the image can install it."""
    out = tmp_path / "resolved.txt"
    subprocess.run(
        [
            *uv(),
            "pip",
            "compile",
            "--quiet",
            "--python-version",
            IMAGE_PYTHON,
            "--python-platform",
            IMAGE_PLATFORM,
            "--no-header",
            "--no-annotate",
            str(LOCK),
            "-o",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=300,
        env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
    )
    resolved = dict(line.split("==", 1) for line in out.read_text().splitlines() if "==" in line)
    assert {name.lower(): v for name, v in resolved.items()} == locked()


# --- the bundle ---------------------------------------------------------------------------


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_every_chart_has_a_saved_query_context_matching_its_params():
    for path in (BI / "dashboard/charts").glob("*.yaml"):
        chart = load(path)
        context = json.loads(chart["query_context"])
        params = chart["params"]
        assert context["form_data"] == params, path.name
        (query,) = context["queries"]
        assert query["metrics"] == params["metrics"]
        assert [c["sqlExpression"] for c in query["columns"]] == [params["x_axis"]]
        assert {(f["col"], f["op"]) for f in query["filters"]} == {
            (f["subject"], f["operator"]) for f in params["adhoc_filters"]
        }
        # Human labels, each with a fixed colour on the dashboard.
        labels = [m["label"] for m in params["metrics"]]
        assert all(m["hasCustomLabel"] for m in params["metrics"])
        (dashboard,) = [load(p) for p in (BI / "dashboard/dashboards").glob("*.yaml")]
        assert set(labels) <= set(dashboard["metadata"]["label_colors"]), path.name


def test_dashboard_positions_name_their_charts():
    (dashboard,) = [load(p) for p in (BI / "dashboard/dashboards").glob("*.yaml")]
    charts = [
        item
        for item in dashboard["position"].values()
        if isinstance(item, dict) and item.get("type") == "CHART"
    ]
    assert len(charts) == 3
    assert all(isinstance(item["meta"]["chartId"], int) for item in charts)
    colours = dashboard["metadata"]["label_colors"]
    assert len(set(colours.values())) >= 4


# --- Superset, run natively as the compose runs it -----------------------------------------


@pytest.fixture(scope="module")
def superset_env() -> Path:
    """A virtualenv with exactly the lock, cached by the lock's hash; returns its bin folder."""
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()[:12]
    home = CACHE / f"superset-{digest}"
    venv = home / "venv"
    done = home / "installed"
    if not done.exists():
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
        subprocess.run(
            [*uv(), "venv", "--quiet", "--python", TEST_PYTHON, str(venv)],
            check=True,
            timeout=120,
            env=env,
        )
        subprocess.run(
            [*uv(), "pip", "sync", "--quiet", "--python", str(venv / "bin/python"), str(LOCK)],
            check=True,
            timeout=INSTALL_TIMEOUT,
            env=env,
        )
        done.write_text(f"{LOCK.read_text()}")
    return venv / "bin"


def warehouse_run(tmp: Path, landing: Path, data: Path, serve_url: str) -> str:
    """`warehouse run` of the project's CLI (as `make run`): publishes data/warehouse.duckdb,
    and the marts to PostgreSQL at `serve_url`."""
    settings = dataclasses.replace(
        settings_for(landing, data), airflow_home=tmp / "airflow", serve_postgres_url=serve_url
    )
    env = {**os.environ, **settings.environment()}
    result = subprocess.run(
        [str(REPO / ".venv/bin/warehouse"), "run", "--no-report"],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads((data / "manifest.json").read_text())["run_id"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(process: subprocess.Popen, first: signal.Signals = signal.SIGTERM) -> None:
    """Ends the process's whole session (bootstrap.sh, gunicorn and its workers)."""
    if process.poll() is None:
        for sig, wait in ((first, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue


def as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its programs as the postgres user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="module")
def postgres():
    """Superset's metadata database as the compose has it: a PostgreSQL cluster (Debian's
    package) on 127.0.0.1, its `superset` user and database made by the compose's own
    docker/postgres/init-superset-db.sh, the served warehouse by init-warehouse-db.sh. Yields
    the environment Superset needs to reach it, and the publisher's URL."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3])
    )
    assert versions, "PostgreSQL is missing: `make test-packages` installs Debian's package"
    bindir = versions[-1].parent
    # Its own folder, outside pytest's (mode 0700) tree so that the postgres user reaches it.
    root = Path(tempfile.mkdtemp(prefix="superset-postgres-"))
    password, superset_password = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    reader_password = secrets.token_urlsafe(24)
    (root / "pwfile").write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(root / "pwfile", "postgres")
    port = free_port()
    process = None
    try:
        subprocess.run(
            as_postgres(
                [
                    str(bindir / "initdb"),
                    "--pgdata",
                    str(root / "data"),
                    "--username",
                    "airflow",
                    "--pwfile",
                    str(root / "pwfile"),
                    "--auth",
                    "scram-sha-256",
                    "--no-instructions",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        process = subprocess.Popen(
            as_postgres(
                [
                    str(bindir / "postgres"),
                    "-D",
                    str(root / "data"),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-p",
                    str(port),
                    "-c",
                    f"unix_socket_directories={root}",
                ]
            ),
            stdout=subprocess.DEVNULL,
            stderr=(root / "postgres.log").open("w"),
            start_new_session=True,
        )
        client = {
            **os.environ,
            "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
            "PGHOST": "127.0.0.1",
            "PGPORT": str(port),
            "PGPASSWORD": password,
        }
        deadline = time.monotonic() + 60
        while subprocess.run(["pg_isready", "--quiet"], env=client, timeout=10).returncode:
            assert process.poll() is None, (root / "postgres.log").read_text()
            assert time.monotonic() < deadline, "PostgreSQL did not start in 60 s"
            time.sleep(0.5)
        # The compose's init scripts, in the order its Postgres runs them (by name).
        secrets_of = {
            "init-superset-db.sh": {"SUPERSET_DB_PASSWORD": superset_password},
            "init-warehouse-db.sh": {"WAREHOUSE_READER_PASSWORD": reader_password},
        }
        for script, secret in secrets_of.items():
            subprocess.run(
                ["bash", str(REPO / "docker/postgres" / script)],
                env={**client, "POSTGRES_USER": "airflow", "POSTGRES_DB": "postgres", **secret},
                check=True,
                capture_output=True,
                timeout=60,
            )
        yield {
            "SUPERSET_DB_HOST": "127.0.0.1",
            "SUPERSET_DB_PORT": str(port),
            "SUPERSET_DB_PASSWORD": superset_password,
            "WAREHOUSE_READER_PASSWORD": reader_password,
            "WAREHOUSE_SERVE_POSTGRES_URL": f"postgresql://airflow:{password}@127.0.0.1:{port}/warehouse",
        }
    finally:
        if process is not None:
            stop(process, first=signal.SIGINT)  # PostgreSQL's fast shutdown
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def stack(superset_env, postgres, tmp_path_factory):
    """A published warehouse and Superset serving it, started by bootstrap.sh."""
    started = time.monotonic()
    tmp = tmp_path_factory.mktemp("superset")
    landing, data, home = tmp / "landing", tmp / "data", tmp / "home"
    shutil.copytree(SEEDS, landing, ignore=shutil.ignore_patterns("README.md"))
    home.mkdir()
    serve_url = postgres["WAREHOUSE_SERVE_POSTGRES_URL"]
    first_run = warehouse_run(tmp, landing, data, serve_url)
    published = time.monotonic()

    port = free_port()
    env = {
        # The compose's environment, with this machine's paths, port and secrets.
        "PATH": f"{superset_env}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "SUPERSET_HOME": str(home / "superset"),
        "SUPERSET_BI_DIR": str(BI),
        "WAREHOUSE_DATA_DIR": str(data),
        **postgres,
        "SUPERSET_SECRET_KEY": secrets.token_urlsafe(32),
        "SUPERSET_ADMIN_PASSWORD": ADMIN[1],
        "SUPERSET_ANALYST_PASSWORD": ANALYST[1],
        "SUPERSET_BIND_ADDRESS": "127.0.0.1",
        "SUPERSET_PORT": str(port),
        "DO_NOT_TRACK": "1",
    }
    log = (tmp / "superset.log").open("w")
    process = subprocess.Popen(
        ["bash", str(BI / "bootstrap.sh")],
        env=env,
        cwd=home,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"bootstrap.sh exited {process.returncode}:\n{tail(tmp)}")
            try:
                if requests.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or the worker booting
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"Superset did not serve in {START_TIMEOUT} s:\n{tail(tmp)}")
            time.sleep(1)
        timings = {
            "publish_s": round(published - started, 1),
            "bootstrap_s": round(time.monotonic() - published, 1),
        }
        yield {
            "url": url,
            "tmp": tmp,
            "landing": landing,
            "data": data,
            "process": process,
            "run_id": first_run,
            "timings": timings,
            "bin": superset_env,
            "serve_url": serve_url,
        }
    finally:
        stop(process)
        log.close()


def tail(tmp: Path, lines: int = 60) -> str:
    return "\n".join((tmp / "superset.log").read_text().splitlines()[-lines:])


class Client:
    """Superset's REST API as one user: a JWT from /api/v1/security/login, a CSRF token."""

    def __init__(self, url: str, user: str, password: str):
        self.url = url
        self.session = requests.Session()
        response = self.session.post(
            f"{url}/api/v1/security/login",
            json={"username": user, "password": password, "provider": "db", "refresh": True},
            timeout=REQUEST_TIMEOUT,
        )
        assert response.status_code == 200, response.text
        self.session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
        csrf = self.session.get(f"{url}/api/v1/security/csrf_token/", timeout=REQUEST_TIMEOUT)
        assert csrf.status_code == 200, csrf.text
        self.session.headers["X-CSRFToken"] = csrf.json()["result"]
        self.session.headers["Referer"] = url

    def get(self, path: str) -> requests.Response:
        return self.session.get(f"{self.url}{path}", timeout=REQUEST_TIMEOUT)

    def post(self, path: str, body: dict) -> requests.Response:
        return self.session.post(f"{self.url}{path}", json=body, timeout=REQUEST_TIMEOUT)

    def delete(self, path: str) -> requests.Response:
        return self.session.delete(f"{self.url}{path}", timeout=REQUEST_TIMEOUT)

    def charts(self, dashboard: str = DASHBOARD) -> dict[str, int]:
        response = self.get(f"/api/v1/dashboard/{dashboard}/charts")
        assert response.status_code == 200, response.text
        return {chart["slice_name"]: chart["id"] for chart in response.json()["result"]}

    def chart_data(self, chart_id: int) -> list[dict]:
        """The chart's rows, from its saved query context (what an API user or a report gets)."""
        response = self.get(f"/api/v1/chart/{chart_id}/data/")
        assert response.status_code == 200, response.text[:2000]
        (result,) = response.json()["result"]
        return result["data"]


def month_of(row: dict) -> str:
    return time.strftime("%Y-%m", time.gmtime(row["month"] / 1000))


@pytest.mark.slow
def test_every_chart_serves_rows_from_the_published_warehouse(stack):
    admin = Client(stack["url"], *ADMIN)
    charts = admin.charts()
    assert len(charts) == 3
    data = {name: admin.chart_data(chart_id) for name, chart_id in charts.items()}
    for name, rows in data.items():
        assert rows, f"{name}: no rows"
    (hhi,) = [rows for name, rows in data.items() if name.startswith("HHI")]
    assert len(hhi) == 24 and month_of(hhi[-1]) == "2024-12"
    # The chart where the levels differ: ByteDance's companies counted as one raise the HHI.
    assert all(row["By parent company"] >= row["By customer"] for row in hhi)
    assert any(row["By parent company"] > row["By customer"] + 50 for row in hhi)
    (share,) = [rows for name, rows in data.items() if name.startswith("Share")]
    march = next(row for row in share if month_of(row) == "2024-03")
    assert 0.24 <= march["Largest customer"] <= 0.26  # TikTok, the reported quarter
    print(f"\nsuperset timings: {stack['timings']}")


@pytest.mark.slow
def test_the_postgresql_dashboard_serves_the_same_rows(stack):
    """The bundle's second connection: the same charts over the marts PostgreSQL serves."""
    admin = Client(stack["url"], *ADMIN)
    on_duckdb, on_postgres = admin.charts(), admin.charts(POSTGRES_DASHBOARD)
    assert set(on_postgres) == set(on_duckdb) and len(on_postgres) == 3
    assert not set(on_postgres.values()) & set(on_duckdb.values())  # charts of their own
    for name, chart_id in on_postgres.items():
        rows = admin.chart_data(chart_id)
        assert rows, name
        assert rows == admin.chart_data(on_duckdb[name]), name  # the doubles too, exactly


@pytest.mark.slow
@pytest.mark.parametrize("dashboard", [DASHBOARD, POSTGRES_DASHBOARD])
def test_dashboard_draws_every_chart_in_headless_chromium(stack, dashboard):
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "`make test-packages` installs Debian's chromium and its driver"
    started = time.monotonic()
    screenshot = SCREENSHOT if dashboard == DASHBOARD else SCREENSHOT.with_stem(dashboard)
    screenshot.parent.mkdir(exist_ok=True)
    process = subprocess.Popen(
        [
            str(stack["bin"] / "python"),
            str(REPO / "tests/superset_browser.py"),
            stack["url"],
            *ANALYST,  # the read-only analyst: the dashboard's audience
            dashboard,
            str(screenshot),
            str(stack["tmp"] / "chromium-profile"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=BROWSER_TIMEOUT)
    finally:
        stop(process)
    assert process.returncode == 0, err[-3000:]
    page = json.loads(out)
    assert f"/superset/dashboard/{dashboard}/" in page["url"]
    charts = page["charts"]
    assert len(charts) == 3, charts
    for chart in charts:
        assert chart["drawn"] and not chart["errors"] and not chart["loading"], chart
    assert not page["page_errors"]
    assert screenshot.stat().st_size > 50_000
    # What the dashboard asked for is what the charts' saved query contexts hold.
    saved = {}
    for path in (BI / "dashboard/charts").glob("*.yaml"):
        chart = load(path)
        saved[chart["slice_name"]] = json.loads(chart["query_context"])["queries"]
    asked = [request["queries"] for request in page["chart_data_requests"]]
    assert len(asked) == 3
    for queries in saved.values():
        assert queries in asked
    print(f"\nbrowser: {time.monotonic() - started:.1f} s, screenshot {screenshot}")


@pytest.mark.slow
def test_analyst_reads_the_dashboard_and_is_refused_writes(stack):
    admin, analyst = Client(stack["url"], *ADMIN), Client(stack["url"], *ANALYST)
    dashboard = analyst.get(f"/api/v1/dashboard/{DASHBOARD}")
    assert dashboard.status_code == 200, dashboard.text
    for chart_id in analyst.charts().values():
        assert analyst.chart_data(chart_id)
    datasets = admin.get("/api/v1/dataset/").json()["result"]
    dataset = next(d for d in datasets if d["table_name"] == "fct_revenue_concentration")
    database_id = dataset["database"]["id"]
    new_chart = {
        "slice_name": "written by a test",
        "viz_type": "table",
        "datasource_id": dataset["id"],
        "datasource_type": "table",
    }
    new_dataset = {"database": database_id, "schema": "marts", "table_name": "dim_customers"}
    # Refused: creating a chart or a dataset, editing or deleting the dashboard.
    assert analyst.post("/api/v1/chart/", new_chart).status_code == 403
    assert analyst.post("/api/v1/dataset/", new_dataset).status_code == 403
    dashboard_id = dashboard.json()["result"]["id"]
    edit = analyst.session.put(
        f"{stack['url']}/api/v1/dashboard/{dashboard_id}",
        json={"dashboard_title": "renamed"},
        timeout=REQUEST_TIMEOUT,
    )
    assert edit.status_code == 403
    assert analyst.delete(f"/api/v1/dashboard/{dashboard_id}").status_code == 403
    # The same chart request succeeds for the admin: the refusal is the role's, not the API's.
    created = admin.post("/api/v1/chart/", new_chart)
    assert created.status_code == 201, created.text
    assert admin.delete(f"/api/v1/chart/{created.json()['id']}").status_code == 200


@pytest.mark.slow
def test_a_new_publish_is_served_without_a_restart(stack):
    """One more usage month lands; `warehouse run` publishes it; Superset serves it at once."""
    admin = Client(stack["url"], *ADMIN)
    charts = admin.charts()
    (hhi_chart,) = [chart_id for name, chart_id in charts.items() if name.startswith("HHI")]
    before = admin.chart_data(hhi_chart)
    assert month_of(before[-1]) == "2024-12"
    server = stack["process"].pid

    # January 2025: December 2024's lines, a month later.
    spend = stack["landing"] / "spend"
    december = (spend / "usage_2024_12.csv").read_text()
    (spend / "usage_2025_01.csv").write_text(december.replace("2024-12-", "2025-01-"))
    started = time.monotonic()
    second_run = warehouse_run(stack["tmp"], stack["landing"], stack["data"], stack["serve_url"])
    assert second_run != stack["run_id"]

    after = admin.chart_data(hhi_chart)
    assert len(after) == len(before) + 1
    assert month_of(after[-1]) == "2025-01"
    assert after[:-1] == before  # the months already there are unchanged
    for name, chart_id in charts.items():
        assert admin.chart_data(chart_id), name
    # The same Superset process served both publishes.
    assert stack["process"].poll() is None and stack["process"].pid == server
    print(f"\nrepublish: {time.monotonic() - started:.1f} s")
