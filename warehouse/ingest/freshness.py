"""Each source's freshness judged against a run's logical date, from the declarations in
sources.py: dbt's source freshness judges against the wall clock and a loaded-at column, while
ours must judge a run for an old date by that date, and periods (months, fiscal quarters) that
arrive in files."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pendulum

from warehouse.db import connect
from warehouse.ingest.sources import SOURCES, Freshness
from warehouse.settings import Settings

STATES = ("fresh", "warn", "error")


def judge_one(name: str, rule: Freshness, covered_until: date | None, as_of: date) -> dict:
    """One source's verdict: its newest data, when the next delivery was due, and how late."""
    if covered_until is None:
        return {"source": name, "state": "error", "through": None, "cadence": rule.cadence}
    period_end = pendulum.Date(covered_until.year, covered_until.month, covered_until.day).add(
        months=rule.every_months
    )
    due = period_end + timedelta(days=rule.due_day - 1)
    late = (as_of - due).days
    state = (
        "error"
        if late > rule.error_after_days
        else "warn"
        if late > rule.warn_after_days
        else "fresh"
    )
    return {
        "source": name,
        "state": state,
        "through": (covered_until - timedelta(days=1)).isoformat(),
        "due": due.isoformat(),
        "days_late": max(late, 0),
        "warn_after_days": rule.warn_after_days,
        "error_after_days": rule.error_after_days,
        "cadence": rule.cadence,
    }


def judge(settings: Settings, as_of: date) -> list[dict]:
    """Every source with a freshness rule, judged on the build database at `as_of`."""
    verdicts = []
    with connect(settings.build_db, settings, read_only=True) as con:
        for name, source in SOURCES.items():
            if source.freshness is None:
                continue
            try:
                (covered,) = con.execute(source.freshness.covered_until).fetchone()
            except Exception:  # the source never loaded (no table yet): nothing delivered
                covered = None
            verdicts.append(judge_one(name, source.freshness, covered, as_of))
    return verdicts


def stale(verdicts: list[dict], level: str = "warn") -> list[dict]:
    """The verdicts at `level` or worse."""
    return [v for v in verdicts if STATES.index(v["state"]) >= STATES.index(level)]


def describe(verdict: dict) -> str:
    """One line: `usage: STALE (error) ...` or `usage: fresh ...`."""
    if verdict["through"] is None:
        return f"{verdict['source']}: STALE (error), nothing delivered yet ({verdict['cadence']})"
    head = f"{verdict['source']}: data through {verdict['through']}, next due {verdict['due']}"
    if verdict["state"] == "fresh":
        return f"{head}: fresh"
    return (
        f"{head}: STALE ({verdict['state']}), {verdict['days_late']} days late "
        f"(warn after {verdict['warn_after_days']}, error after {verdict['error_after_days']}; "
        f"{verdict['cadence']})"
    )


def write_report(settings: Settings, run_id: str | None, as_of: date, verdicts: list[dict]):
    path = settings.freshness_report
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {"run_id": run_id, "as_of": as_of.isoformat(), "sources": verdicts}
    path.write_text(json.dumps(report, indent=2) + "\n")
    return report


def read_report(settings: Settings) -> dict | None:
    """The last run's freshness judgement, or None before the first."""
    path = settings.freshness_report
    return json.loads(path.read_text()) if path.exists() else None
