"""What a finished run tells a person, and whether it tells anything: Airflow's notifiers send
(SmtpNotifier over `smtp_default`, HttpNotifier over WAREHOUSE_ALERT_WEBHOOK_CONN); this module
composes the message with its cause (the failed claims, dbt tests, refused files, stale
sources) and decides failure, warning, recovery or nothing.

The last outcome is kept in the data folder, not read from Airflow's metadata: `make run` and
`make up` keep separate Airflow databases over the same data folder, and a recovery is the data
folder's.
"""

from __future__ import annotations

import html
import json
import threading
import time
from dataclasses import dataclass
from decimal import Decimal

from airflow.sdk import BaseNotifier

# How many rows of a failing dbt test, failed checks and refused files a message shows.
SHOWN = 3
# Tasks whose failure dbt's run results explain.
DBT_TASKS = ("transform", "model")


@dataclass(frozen=True)
class Alert:
    kind: str  # failure, warning, recovery
    subject: str
    body: str


def compose(facts: dict) -> Alert | None:
    """The message for a finished run, or None when nothing needs a person. `facts`: dag_id,
    run_id, failed, failed_task, previous_failed, refused, failures (validation checks that
    failed), reconciliation, dbt, freshness, rejected, quarantined, published, where."""
    run = f"{facts['dag_id']} run {facts['run_id']}"
    if facts["failed"]:
        cause = _cause_lines(facts)
        headline = _headline(facts) or f"task {facts['failed_task']} failed"
        lines = [
            f"Run {facts['run_id']} of {facts['dag_id']} FAILED at task {facts['failed_task']}.",
            _kept(facts),
            "",
            "Cause:",
            *(cause or [f"  task {facts['failed_task']} failed; see its log"]),
            *(line for line in _warning_lines(facts) if line not in cause),
            "",
            *facts.get("where", []),
        ]
        return Alert("failure", f"[warehouse] FAILED: {run}: {headline}", "\n".join(lines))
    warnings = _warning_lines(facts)
    # A run with nothing new skips the publish (warehouse.publish.changes); a stale source is
    # still worth a message every day it stays stale.
    published = facts.get("published") or {}
    outcome = (
        "published"
        if published.get("run_id", facts["run_id"]) == facts["run_id"]
        else ("had nothing new to publish")
    )
    if facts.get("previous_failed"):
        lines = [
            f"Run {facts['run_id']} of {facts['dag_id']} succeeded after a failed run: "
            f"RECOVERED, and {outcome}.",
            *warnings,
            "",
            *facts.get("where", []),
        ]
        return Alert("recovery", f"[warehouse] RECOVERED: {run} succeeded", "\n".join(lines))
    if warnings:
        counts = _warning_counts(facts)
        lines = [
            f"Run {facts['run_id']} of {facts['dag_id']} succeeded and {outcome}, with {counts}:",
            *warnings,
            "",
            *facts.get("where", []),
        ]
        return Alert(
            "warning", f"[warehouse] WARNING: {run} {outcome} with {counts}", "\n".join(lines)
        )
    return None


def _headline(facts: dict) -> str | None:
    """The cause in a subject's few words: the failed checks, the refused file, the dbt test,
    the stale sources."""
    if failures := facts.get("failures"):
        names = [check["expectation"].split()[-1] for check in failures]
        more = f" (+{len(names) - 2} more)" if len(names) > 2 else ""
        return f"{facts['failed_task']}: failed {', '.join(names[:2])}{more}"
    if refused := facts.get("refused"):
        return f"refused {refused[0]['file_path']}: {refused[0]['problem']}"
    if dbt := facts.get("dbt"):
        return f"dbt {dbt[0]['node']} {dbt[0]['status']}" + (
            f" (+{len(dbt) - 1} more)" if len(dbt) > 1 else ""
        )
    if facts.get("failed_task") == "freshness" and (stale := _stale(facts)):
        return "stale " + ", ".join(v["source"] for v in stale)
    return None


def _kept(facts: dict) -> str:
    published = facts.get("published")
    if published:
        return (
            "Nothing was published; users keep the publish of run "
            f"{published['run_id']} ({published['published_at']})."
        )
    return "Nothing was published."


def _cause_lines(facts: dict) -> list[str]:
    from warehouse.ingest.freshness import describe

    lines = []
    for refused in facts.get("refused", [])[:SHOWN]:
        lines.append(f"  refused file {refused['file_path']}: {refused['problem']}")
    failures = facts.get("failures", [])
    if failures:
        lines.append(f"  {len(failures)} failed checks (expected vs observed):")
        for check in failures[:SHOWN]:
            name = check["expectation"].split()[-1]
            lines.append(
                f"    {check['suite']}: {name}: expected {check['expected']}, "
                f"observed {check['observed']}"
            )
            if check.get("rule"):
                lines.append(f"      why: {check['rule']}")
    if figures := facts.get("reconciliation"):
        lost = figures["rows_in_landing"] - (
            figures["rows_loaded"] + figures["rows_quarantined"] + figures["rows_rejected"]
        )
        amounts = {Decimal(figures[k]) for k in ("landing_usd", "loaded_usd", "marts_usd")}
        if lost or len(amounts) > 1:
            lines.append(
                f"  reconciliation: {figures['rows_in_landing']:,} rows in the files, "
                f"{lost:,} unaccounted for; ${figures['landing_usd']} in the files, "
                f"${figures['loaded_usd']} loaded, ${figures['marts_usd']} in the marts"
            )
    for failure in facts.get("dbt", [])[:SHOWN]:
        message = failure["message"][0] if failure["message"] else failure["status"]
        lines.append(f"  dbt {failure['node']}: {message}")
        lines += [f"    e.g. {', '.join(row)}" for row in failure["rows"][:SHOWN]]
    if facts.get("failed_task") == "freshness":
        lines += [f"  stale: {describe(v)}" for v in _stale(facts) if v["state"] == "error"]
    if facts.get("reason_text") and not lines:
        lines.append(f"  {facts['reason_text']}")
    return lines


def _stale(facts: dict) -> list[dict]:
    return [v for v in facts.get("freshness", []) if v["state"] != "fresh"]


def _warning_counts(facts: dict) -> str:
    parts = []
    if stale := _stale(facts):
        parts.append(f"{len(stale)} stale source{'s' if len(stale) > 1 else ''}")
    if facts.get("rejected"):
        parts.append(f"{facts['rejected']:,} rejected rows")
    if facts.get("quarantined"):
        parts.append(f"{facts['quarantined']:,} quarantined rows")
    return ", ".join(parts)


def _warning_lines(facts: dict) -> list[str]:
    from warehouse.ingest.freshness import describe

    lines = [f"  stale: {describe(v)}" for v in _stale(facts)]
    if facts.get("rejected"):
        lines.append(
            f"  rejected: {facts['rejected']:,} rows this run (ingest.rejects names file, line "
            "and reason)"
        )
    if facts.get("quarantined"):
        lines.append(
            f"  quarantined: {facts['quarantined']:,} rows wait for what they depend on "
            "(ingest.quarantine)"
        )
    return lines


def gather(settings, dag_id: str, run_id: str, failed: bool, failed_task: str | None) -> dict:
    """The facts `compose` needs, from what the run's tasks wrote (the ledger, the validation
    report, dbt's run results, the freshness report) and the last outcome."""
    from warehouse.audit.expectations import read_report
    from warehouse.ingest.freshness import read_report as read_freshness
    from warehouse.serve.summary import build_summary, dbt_failures

    facts: dict = {
        "dag_id": dag_id,
        "run_id": run_id,
        "failed": failed,
        "failed_task": failed_task,
        "previous_failed": _previous_failed(settings),
        "where": [
            f"Summary: warehouse summary --run-id '{run_id}'",
            f"Data Docs: {settings.data_docs}",
            f"Logs: the Airflow UI, DAG {dag_id}, run {run_id}",
        ],
    }
    validation = read_report(settings)
    if validation and validation.get("run_id") == run_id and not validation["success"]:
        facts["failures"] = validation["failures"]
        facts["reconciliation"] = validation.get("reconciliation")
    freshness = read_freshness(settings)
    if freshness and freshness.get("run_id") == run_id:
        facts["freshness"] = freshness["sources"]
    try:
        summary = build_summary(settings, run_id=run_id)
        facts["refused"] = summary["refused"]
        facts["published"] = summary["published"]
        facts["rejected"] = sum(s["rows_rejected_this_run"] for s in summary["sources"])
        facts["quarantined"] = sum(s["rows_quarantined"] for s in summary["sources"])
        if failed and (failed_task or "").split("[")[0] in DBT_TASKS:
            facts["dbt"] = dbt_failures(settings)
    except Exception as error:  # the build database busy (another writer) or never built
        facts["reason_text"] = f"(the build database could not be read: {error})"
    return facts


def _previous_failed(settings) -> bool:
    path = settings.alert_state
    return path.exists() and json.loads(path.read_text()).get("failed", False)


def _record(settings, run_id: str, failed: bool) -> None:
    path = settings.alert_state
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run_id": run_id, "failed": failed}) + "\n")


def channels(settings, alert: Alert) -> list[tuple[str, BaseNotifier]]:
    """Airflow's notifiers for the configured channels, each carrying `alert`."""
    found: list[tuple[str, BaseNotifier]] = []
    if settings.alert_email:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        recipients = [a.strip() for a in settings.alert_email.split(",") if a.strip()]
        notifier = SmtpNotifier(
            to=recipients,
            subject=alert.subject,
            html_content=f"<pre>{html.escape(alert.body)}</pre>",
        )
        found.append((f"email to {', '.join(recipients)}", notifier))
    if settings.alert_webhook_conn:
        from airflow.providers.http.notifications.http import HttpNotifier

        notifier = HttpNotifier(
            http_conn_id=settings.alert_webhook_conn,
            json={"text": f"{alert.subject}\n{alert.body}", "kind": alert.kind},
            extra_options={"timeout": settings.alert_timeout_seconds},
        )
        found.append((f"webhook {settings.alert_webhook_conn}", notifier))
    return found


def _deliver(name: str, notifier: BaseNotifier, context, seconds: float, log) -> None:
    """Send through one channel, waiting at most `seconds`; a failure is logged, never raised
    (the run's outcome stands)."""
    outcome: list[BaseException | None] = []

    def send():
        try:
            notifier.notify(context)  # already composed: no templates to render
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    started = time.monotonic()
    sender = threading.Thread(target=send, name=f"alert {name}", daemon=True)
    sender.start()
    sender.join(seconds)
    took = time.monotonic() - started
    if not outcome:
        log.error("alert via %s: no answer within %.0f s; not sent", name, seconds)
    elif outcome[0] is not None:
        log.error("alert via %s failed after %.1f s: %s", name, took, outcome[0])
    else:
        log.info("alert via %s: sent in %.1f s", name, took)


class RunAlerts(BaseNotifier):
    """A DAG's `on_failure_callback` (failed=True) or `on_success_callback`: composes the run's
    message and sends it through the configured channels."""

    def __init__(self, failed: bool):
        super().__init__()
        self.failed = failed

    def render_template_fields(self, context, jinja_env=None) -> None:
        """Nothing to render: the message is composed, not templated (and under `dag.test()`
        the context's DAG is the serialized one, which has no template environment)."""

    def notify(self, context) -> None:
        from warehouse.settings import Settings

        settings = Settings.from_env()
        run_id = context["run_id"]
        ti = context.get("ti")
        failed_task = None
        if ti is not None and self.failed:  # a mapped task by its index's name: model[stg_x]
            index = getattr(ti, "rendered_map_index", None) or getattr(ti, "map_index", -1)
            failed_task = ti.task_id + (f"[{index}]" if index not in (None, -1) else "")
        facts = gather(settings, context["dag"].dag_id, run_id, self.failed, failed_task)
        alert = compose(facts)
        _record(settings, run_id, self.failed)
        if not (settings.alert_email or settings.alert_webhook_conn):
            self.log.warning(
                "alerts: no channel configured (set WAREHOUSE_ALERT_EMAIL and the smtp_default "
                "connection, or WAREHOUSE_ALERT_WEBHOOK_CONN); nothing sent; the message: %s",
                alert.subject if alert else "none needed",
            )
            return
        if alert is None:
            self.log.info("alerts: run %s needs no message", run_id)
            return
        found = channels(settings, alert)
        # The channels render only their own plain fields (SmtpNotifier: the sender from the
        # connection), in Airflow's default template environment rather than the DAG's.
        plain = {key: value for key, value in context.items() if key != "dag"}
        for name, notifier in found:
            _deliver(name, notifier, plain, settings.alert_timeout_seconds, self.log)
