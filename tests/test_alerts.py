"""Alerts reach a person with their cause, through Airflow's SMTP and HTTP notifiers, tested
against a real SMTP server and a local HTTP endpoint; freshness judged at the run's date."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
import types
import urllib.error
import urllib.request
from datetime import date, datetime

import pytest

from tests.alerting import alerting, connections, smtp_server, webhook_server
from tests.conftest import own_airflow, run_pipeline
from tests.new_work import add_tiktok_double
from warehouse.ingest.freshness import judge_one
from warehouse.ingest.sources import USAGE
from warehouse.serve.alerts import compose

FACTS = {"dag_id": "ai_revenue_warehouse", "run_id": "r2", "failed": False, "failed_task": None}
CLAIM = {
    "suite": "claims",
    "expectation": "expect_column_values_to_be_between tiktok_share_2024_03",
    "expected": "0.24 <= x <= 0.26",
    "observed": "0.397",
    "rule": "TikTok paid about a quarter of Azure OpenAI",
}
STALE = {
    "source": "usage",
    "state": "warn",
    "through": "2024-12-31",
    "due": "2025-02-05",
    "days_late": 3,
    "warn_after_days": 0,
    "error_after_days": 31,
    "cadence": "monthly",
}


def test_a_failure_names_the_task_and_the_failed_claim_with_expected_and_observed():
    alert = compose({**FACTS, "failed": True, "failed_task": "validate", "failures": [CLAIM]})
    assert alert.kind == "failure"
    assert alert.subject.startswith("[warehouse] FAILED: ai_revenue_warehouse run r2: ")
    assert "FAILED at task validate" in alert.body
    assert "claims: tiktok_share_2024_03: expected 0.24 <= x <= 0.26, observed 0.397" in alert.body


def test_a_refused_file_and_a_failing_dbt_test_with_three_rows_are_the_cause():
    dbt = {
        "node": "test.ai_revenue.not_null_x",
        "status": "fail",
        "message": ["Got 5 results"],
        "rows": [["a"], ["b"], ["c"], ["d"]],
    }
    refused = {"file_path": "spend/usage_2025_01.csv", "problem": "missing column amount_usd"}
    alert = compose(
        {**FACTS, "failed": True, "failed_task": "transform", "dbt": [dbt], "refused": [refused]}
    )
    assert "refused file spend/usage_2025_01.csv: missing column amount_usd" in alert.body
    assert "dbt test.ai_revenue.not_null_x: Got 5 results" in alert.body
    assert alert.body.count("    e.g. ") == 3


def test_success_warns_of_stale_sources_and_rejects_recovers_after_a_failure_else_says_nothing():
    assert compose(FACTS) is None
    warning = compose({**FACTS, "freshness": [STALE], "rejected": 2})
    assert warning.kind == "warning"
    assert warning.subject.endswith("published with 1 stale source, 2 rejected rows")
    assert "usage: data through 2024-12-31, next due 2025-02-05: STALE (warn)" in warning.body
    error = {**STALE, "state": "error"}
    failed = compose({**FACTS, "failed": True, "failed_task": "freshness", "freshness": [error]})
    assert failed.subject.endswith(": stale usage")
    assert failed.body.count("stale: usage: data through 2024-12-31") == 1
    recovery = compose({**FACTS, "previous_failed": True})
    assert recovery.kind == "recovery" and "RECOVERED" in recovery.subject
    # A run with nothing new publishes nothing, and says so, while a source stays stale.
    earlier = {"run_id": "r1", "published_at": "2026-12-02T00:00:00+00:00"}
    skipped = compose({**FACTS, "freshness": [STALE], "published": earlier})
    assert skipped.subject.endswith("r2 had nothing new to publish with 1 stale source")
    assert "succeeded and had nothing new to publish, with 1 stale source:" in skipped.body


@pytest.mark.parametrize(
    ("as_of", "state", "late"),
    [
        (date(2025, 2, 5), "fresh", 0),
        (date(2025, 2, 6), "warn", 1),
        (date(2025, 3, 9), "error", 32),
    ],
)
def test_the_month_after_the_newest_is_due_by_day_5_of_the_next(as_of, state, late):
    verdict = judge_one("usage", USAGE.freshness, date(2025, 1, 1), as_of)
    assert (verdict["due"], verdict["state"], verdict["days_late"]) == ("2025-02-05", state, late)


@pytest.mark.slow
def test_a_stale_publish_warns_a_broken_claim_fails_with_its_cause_and_the_fix_recovers(
    published, monkeypatch
):
    with smtp_server() as (port, inbox), webhook_server() as (hook_port, posts):
        for name, value in connections(port, hook_port).items():
            monkeypatch.setenv(name, value)
        settings = alerting(published, webhook=True)

        # Rebuilt and published (the fixture's folder has nothing new), with the seeds' stale
        # sources.
        stale = run_pipeline(settings, "stale", conf={"full_refresh": True})
        assert stale.succeeded
        ((subject, text),) = inbox.texts()
        assert subject.startswith("[warehouse] WARNING: ai_revenue_warehouse run ")
        assert "published with 2 stale sources" in subject
        assert "usage: data through 2024-12-31, next due 2025-02-05: STALE (error)" in text
        assert inbox.messages[0]["To"] == "data-team@example.com, oncall@example.com"
        assert posts[-1]["text"].startswith(subject) and posts[-1]["kind"] == "warning"

        # The verdict is in the run's summary, the manifest and `warehouse status`.
        assert "freshness (as of " in stale.log_file.read_text()
        manifest = json.loads(settings.manifest.read_text())
        assert {v["source"]: v["state"] for v in manifest["freshness"]} == {
            "customers": "fresh",
            "earnings": "error",
            "usage": "error",
        }
        status = subprocess.run(
            [sys.executable, "-m", "warehouse.cli", "status"],
            env={**os.environ, **settings.environment()},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "  usage: data through 2024-12-31, next due 2025-02-05: STALE (error)" in status
        assert "  customers: data through " in status and ": fresh" in status

        march = add_tiktok_double(settings.landing_dir)
        broken = run_pipeline(settings, "broken-claim")
        assert "validate (failed)" in broken.failed_tasks
        subject, text = inbox.texts()[1]
        assert subject.startswith(f"[warehouse] FAILED: ai_revenue_warehouse run {broken.run_id}")
        assert "FAILED at task validate" in text and "Nothing was published" in text
        assert "claims: tiktok_share_2024_03: expected 0.24 &lt;= x &lt;= 0.26, observed" in text
        assert "tiktok_spend_2024_03_usd" in text

        (settings.landing_dir / "spend" / "usage_2024_03.csv").write_text(march)
        fixed = run_pipeline(settings, "fixed")
        assert fixed.succeeded
        subject, text = inbox.texts()[2]
        assert (
            subject == f"[warehouse] RECOVERED: ai_revenue_warehouse run {fixed.run_id} succeeded"
        )
        assert len(inbox.messages) == 3 and len(posts) == 3
        for number, (subject, text) in enumerate(inbox.texts()):
            print(f"--- email {number + 1}\nSubject: {subject}\n{text[:1500]}")


@pytest.mark.slow
def test_a_refused_file_is_the_cause_and_stale_sources_can_fail_the_run(published, monkeypatch):
    with smtp_server() as (port, inbox):
        for name, value in connections(port).items():
            monkeypatch.setenv(name, value)
        settings = dataclasses.replace(alerting(published), stale_sources="fail")
        (settings.landing_dir / "spend" / "usage_2025_01.csv").write_text(
            "usage_date,customer_id,product_line\n2025-01-01,cus_tiktok,azure_openai\n"
        )
        refused = run_pipeline(settings, "refused")
        assert "ingest.usage (failed)" in refused.failed_tasks
        ((subject, text),) = inbox.texts()
        assert "FAILED at task ingest.usage" in text
        assert "refused file spend/usage_2025_01.csv: " in text
        print(f"--- email\nSubject: {subject}\n{text[:1500]}")

        (settings.landing_dir / "spend" / "usage_2025_01.csv").unlink()
        stale = run_pipeline(settings, "stale-fails")
        assert "freshness (failed)" in stale.failed_tasks
        # Not published: skipped (nothing new since the fixture's publish) or, had there been
        # something to publish, stopped by the failed freshness.
        assert stale.task_states["publish"] in {"skipped", "upstream_failed"}
        assert not stale.succeeded and "summarize (upstream_failed)" in stale.failed_tasks
        subject, text = inbox.texts()[1]
        assert "FAILED at task freshness" in text
        assert "usage: data through 2024-12-31" in text
        print(f"--- email\nSubject: {subject}\n{text[:1500]}")


@pytest.mark.slow
def test_a_failing_dbt_test_is_the_cause_with_its_offending_rows(published, monkeypatch):
    """A build database whose ledger no longer matches the usage fact (two files' counts off by
    one): dbt's own test fails the build, and the email shows its rows."""
    import duckdb

    with duckdb.connect(str(published.build_db)) as con:
        con.execute(
            "update ingest.ledger set rows_loaded = rows_loaded + 1 where file_path in "
            "('spend/usage_2024_05.csv', 'spend/usage_2024_06.csv')"
        )
    with smtp_server() as (port, inbox):
        for name, value in connections(port).items():
            monkeypatch.setenv(name, value)
        run = run_pipeline(alerting(published), "dbt-test")
    assert "transform (failed)" in run.failed_tasks
    ((subject, text),) = inbox.texts()
    assert subject.endswith(": dbt test.ai_revenue.assert_usage_fact_holds_every_loaded_row fail")
    assert "Got 2 results, configured to fail if != 0" in text
    assert "e.g. spend/usage_2024_05.csv, 4372, 4371" in text
    print(f"--- email\nSubject: {subject}\n{text[:1500]}")


@pytest.mark.slow
def test_a_channel_that_is_down_is_logged_and_the_run_ends_as_it_should(published, monkeypatch):
    """An SMTP server that accepts and never answers (bounded by WAREHOUSE_ALERT_TIMEOUT_SECONDS)
    and a webhook whose port refuses: both logged, the run fails on its claim as it would."""
    with webhook_server() as (hook_port, _):
        pass  # stopped: nothing listens on its port now
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        for name, value in connections(silent.getsockname()[1], hook_port).items():
            monkeypatch.setenv(name, value)
        settings = dataclasses.replace(alerting(published, webhook=True), alert_timeout_seconds=2)
        add_tiktok_double(settings.landing_dir)
        run = run_pipeline(settings, "down")
    assert "validate (failed)" in run.failed_tasks and run.state == "failed"
    lines = [line for line in run.log_file.read_text().splitlines() if "alert via " in line]
    assert len(lines) == 2, lines
    email, webhook = lines
    assert (
        "alert via email to data-team@example.com, oncall@example.com: no answer within 2 s"
        in email
    )
    assert "alert via webhook warehouse_alert_webhook failed after " in webhook
    assert float(webhook.split(" failed after ")[1].split(" s")[0]) < 2
    # The callback's start to the run's end: the silent server cost at most its 2 s.
    times = [
        datetime.fromisoformat(line.split(" ")[0])
        for line in run.log_file.read_text().splitlines()
        if "Executing on_failure dag callback" in line or "DagRun Finished" in line
    ]
    assert len(times) == 2 and (times[1] - times[0]).total_seconds() < 4, times
    print("\n".join(lines))


def fetch(url: str, **headers: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.mark.slow
def test_under_the_scheduler_a_failed_run_emails_its_cause_and_the_docs_are_behind_the_login(
    published, stack_home, monkeypatch
):
    """`make up`'s scheduler: the callback runs in Airflow's DAG processor and the email
    arrives; the dbt docs and the Data Docs are served by the API server to a logged-in user
    only, and listed in the UI's Browse menu."""
    from tests.airflow_api import ApiClient
    from warehouse.runtime import services
    from warehouse.serve.docs_plugin import URL_PREFIX
    from warehouse.settings import DAG_ID
    from warehouse.transform.dbt import generate_docs

    with published.applied():
        generate_docs(published)
    add_tiktok_double(published.landing_dir)
    with smtp_server() as (port, inbox):
        for name, value in connections(port).items():
            monkeypatch.setenv(name, value)
        up = own_airflow(alerting(published), stack_home)
        services.start(up)  # the DAGs are created unpaused: the scheduled run starts
        try:
            password = services.ensure_passwords(up)[services.USERNAME]
            url = f"http://localhost:{up.airflow_port}"
            client = ApiClient(url, services.USERNAME, password)
            deadline = time.monotonic() + 900
            while not inbox.messages and time.monotonic() < deadline:
                time.sleep(2)
            runs = client.dag_runs(DAG_ID)
            token = client._token
            pages = {
                site: fetch(f"{url}{URL_PREFIX}/{site}/index.html", Cookie=f"_token={token}")
                for site in ("dbt", "gx")
            }
            bearer = fetch(f"{url}{URL_PREFIX}/gx/index.html", Authorization=f"Bearer {token}")
            anonymous = fetch(f"{url}{URL_PREFIX}/gx/index.html")
            outside = fetch(
                f"{url}{URL_PREFIX}/gx/..%2F..%2F..%2Fbuild.duckdb", Cookie=f"_token={token}"
            )
            views = fetch(f"{url}/api/v2/plugins", Authorization=f"Bearer {token}")
        finally:
            services.stop(up.airflow_home)
    ((subject, text),) = inbox.texts()
    run = runs[0]
    assert (run["run_type"], run["state"]) == ("scheduled", "failed")
    assert subject.startswith(f"[warehouse] FAILED: {DAG_ID} run {run['dag_run_id']}: validate: ")
    assert "tiktok_share_2024_03" in subject
    assert "claims: tiktok_share_2024_03: expected 0.24 &lt;= x &lt;= 0.26" in text
    print(f"--- email under the scheduler\nSubject: {subject}\n{text[:1500]}")
    assert pages["dbt"][0] == 200 and b"dbt" in pages["dbt"][1]
    assert pages["gx"][0] == 200 and b"Data Docs" in pages["gx"][1]
    assert bearer[0] == 200
    assert anonymous[0] in (401, 403)
    assert outside[0] == 404
    assert b"Data Docs (last run)" in views[1] and b"Warehouse docs (dbt)" in views[1]


def test_with_no_channel_configured_nothing_is_attempted_and_the_run_says_so_once(
    settings, monkeypatch, caplog, capfd
):
    from warehouse.serve.alerts import RunAlerts

    for name, value in settings.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WAREHOUSE_ALERT_EMAIL", raising=False)
    monkeypatch.delenv("WAREHOUSE_ALERT_WEBHOOK_CONN", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", "smtp://127.0.0.1:9?timeout=1")
    context = {
        "run_id": "r1",
        "dag": types.SimpleNamespace(dag_id="ai_revenue_warehouse"),
        "ti": types.SimpleNamespace(task_id="validate", map_index=-1),
    }
    RunAlerts(failed=True).notify(context)
    out = "".join(capfd.readouterr()) + "".join(r.getMessage() for r in caplog.records)
    assert out.count("alerts: no channel configured") == 1
    assert (
        "(set WAREHOUSE_ALERT_EMAIL and the smtp_default connection, or "
        "WAREHOUSE_ALERT_WEBHOOK_CONN); nothing sent; the message: "
        "[warehouse] FAILED: ai_revenue_warehouse run r1: task validate failed"
    ) in out
    # The outcome is kept: the next success is a recovery.
    assert json.loads(settings.alert_state.read_text()) == {"run_id": "r1", "failed": True}
