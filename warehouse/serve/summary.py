"""What the build database holds, per source, and what one run changed."""

from __future__ import annotations

import json

from warehouse.audit.expectations import Check, format_failures, read_report
from warehouse.db import connect
from warehouse.publish import read_manifest
from warehouse.settings import Settings
from warehouse.transform.results import FAILING

# Current state: the files the ledger holds now (`ingest.current_files`), per source that ever
# loaded one; a retracted file (gone from the landing folder) counts only as this run's
# retraction.
_SUMMARY_SQL = """
select
    source,
    count(file_path) as files,
    coalesce(sum(rows_in_file), 0) as rows_in_files,
    coalesce(sum(rows_loaded), 0) as rows_loaded,
    coalesce(sum(rows_rejected), 0) as rows_rejected,
    coalesce(sum(rows_quarantined), 0) as rows_quarantined,
    count(*) filter (where run_id = $run_id) as files_loaded_this_run,
    coalesce(sum(rows_loaded) filter (where run_id = $run_id), 0) as rows_loaded_this_run,
    coalesce(sum(rows_rejected) filter (where run_id = $run_id), 0) as rows_rejected_this_run
from (select distinct source from ingest.ledger) as sources
left join ingest.current_files using (source)
group by source
order by source
"""
# How many of a failing dbt test's rows, and of a run's rejected rows, the summary shows.
FAILING_ROWS_SHOWN = 3
REJECTS_SHOWN = 5


def build_summary(settings: Settings, run_id: str | None = None) -> dict:
    """What the build database holds, the last validation and publish, and the headline."""
    path = settings.build_db
    with connect(path, settings, read_only=True) as con:
        cursor = con.execute(_SUMMARY_SQL, {"run_id": run_id})
        names = [column[0] for column in cursor.description]
        sources = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        headline = _headline(con)
        refused = con.execute(
            "select file_path, problem from ingest.refused_files where run_id = ? "
            "order by file_path",
            [run_id],
        ).fetchall()
        retracted = con.execute(
            "select file_path from ingest.ledger where run_id = ? and action = 'retracted' "
            "order by file_path",
            [run_id],
        ).fetchall()
        ignored = con.execute(
            "select file_path, reason from ingest.ignored_files order by file_path"
        ).fetchall()
        rejects = con.execute(
            "select file_path, line_number, reason, count(*) over () from ingest.rejects "
            "where run_id = ? order by file_path, line_number limit ?",
            [run_id, REJECTS_SHOWN],
        ).fetchall()
    return {
        "database": str(path),
        "run_id": run_id,
        "validation": read_report(settings),
        "published": read_manifest(settings),
        "published_paths": {
            "warehouse": str(settings.published_db),
            "exports": str(settings.exports_dir),
            "manifest": str(settings.manifest),
        },
        "sources": sources,
        "refused": [{"file_path": f, "problem": p} for f, p in refused],
        "retracted": [f for (f,) in retracted],
        "ignored": [{"file_path": f, "reason": r} for f, r in ignored],
        "rejects": {
            "total": rejects[0][3] if rejects else 0,
            "shown": [{"file_path": f, "line": n, "reason": r} for f, n, r, _ in rejects],
        },
        "headline": headline,
        "freshness": _freshness(settings, run_id),
    }


def _freshness(settings: Settings, run_id: str | None) -> dict | None:
    """The freshness judgement of this run (or the last one, when no run is named)."""
    from warehouse.ingest.freshness import read_report

    report = read_report(settings)
    return report if report and (run_id is None or report["run_id"] == run_id) else None


def dbt_failures(settings: Settings) -> list[dict]:
    """The models and tests that failed in the last dbt build, each test with a few of the rows
    that broke it (its compiled query, rerun on the build database)."""
    results_file = settings.dbt_run_results
    if not results_file.exists():
        return []
    failures = []
    results = json.loads(results_file.read_text())["results"]
    failing = [r for r in results if r["status"] in FAILING]
    with connect(settings.build_db, settings, read_only=True) as con:
        for result in failing:
            node = result["unique_id"]
            rows: list[tuple] = []
            if node.startswith("test.") and result.get("compiled_code"):
                try:
                    rows = con.execute(
                        f"select * from ({result['compiled_code']}) limit {FAILING_ROWS_SHOWN}"
                    ).fetchall()
                except Exception:  # the query itself is what failed; its message says why
                    rows = []
            failures.append(
                {
                    "node": node,
                    "status": result["status"],
                    "failures": result.get("failures"),
                    "message": (result.get("message") or "").splitlines()[0:1],
                    "rows": [list(map(str, row)) for row in rows],
                }
            )
    return failures


def format_dbt_failures(failures: list[dict]) -> str:
    lines = []
    for failure in failures:
        message = failure["message"][0] if failure["message"] else failure["status"]
        lines.append(f"dbt: {failure['node']}: {message}")
        lines += [f"    e.g. {', '.join(row)}" for row in failure["rows"]]
    return "\n".join(lines)


HEADLINE_MONTH = "2024-03-01"


def _headline(con) -> list[dict]:
    """The reference month's azure_openai concentration at both levels, once marts exist."""
    built = con.execute(
        "select count(*) from information_schema.tables "
        "where table_schema = 'marts' and table_name = 'fct_revenue_concentration'"
    ).fetchone()[0]
    if not built:
        return []
    cursor = con.execute(
        "select level, top_customer_name, top1_share, hhi, concentration_level, "
        "total_spend_usd::double as total_spend_usd from marts.fct_revenue_concentration "
        "where month = ?::date and product_line = 'azure_openai' order by level",
        [HEADLINE_MONTH],
    )
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def format_summary(summary: dict) -> str:
    header = (
        f"{'source':<10} {'files':>5} {'rows in files':>13} {'loaded':>10} {'rejected':>8}"
        f"   this run: {'files':>5} {'loaded':>10} {'rejected':>8}"
    )
    lines = [header, "-" * len(header)]
    for s in summary["sources"]:
        lines.append(
            f"{s['source']:<10} {s['files']:>5} {s['rows_in_files']:>13,} "
            f"{s['rows_loaded']:>10,} {s['rows_rejected']:>8,}"
            f"             {s['files_loaded_this_run']:>5} {s['rows_loaded_this_run']:>10,} "
            f"{s['rows_rejected_this_run']:>8,}"
        )
    lines += [f"refused: {r['file_path']}: {r['problem']}" for r in summary["refused"]]
    lines += [
        f"retracted: {path} (no longer in the landing folder; its rows were removed)"
        for path in summary["retracted"]
    ]
    lines += [f"ignored: {i['file_path']}: {i['reason']}" for i in summary["ignored"]]
    rejects = summary["rejects"]
    lines += [
        f"rejected: {r['file_path']} line {r['line']}: {r['reason']}" for r in rejects["shown"]
    ]
    if rejects["total"] > len(rejects["shown"]):
        lines.append(
            f"  and {rejects['total'] - len(rejects['shown']):,} more rejected rows this run: "
            f"warehouse query \"select * from ingest.rejects where run_id = '{summary['run_id']}'\""
        )
    quarantined = sum(s["rows_quarantined"] for s in summary["sources"])
    if quarantined:
        lines.append(
            f"quarantined: {quarantined:,} rows wait for what they depend on (a customer not "
            "yet in customers.csv, a key another file holds); they load when it arrives"
        )
    for h in summary["headline"]:
        lines.append(
            f"{HEADLINE_MONTH[:7]} azure_openai by {h['level']}: top {h['top_customer_name']} "
            f"with {h['top1_share']:.2%} of ${h['total_spend_usd'] / 1e6:,.1f}M, "
            f"HHI {h['hhi']:,.0f} ({h['concentration_level'].replace('_', ' ')})"
        )
    lines += freshness_lines(summary.get("freshness"))
    lines.append(f"build database: {summary['database']}")
    lines += _audit_lines(summary)
    return "\n".join(lines)


def freshness_lines(report: dict | None) -> list[str]:
    """Each source's freshness at the judged run's logical date."""
    from warehouse.ingest.freshness import describe

    if not report:
        return []
    return [f"freshness (as of {report['as_of']}):"] + [
        f"  {describe(verdict)}" for verdict in report["sources"]
    ]


def _audit_lines(summary: dict) -> list[str]:
    """The validation and the publish, said of this run when they belong to it."""
    lines = []
    validation, published = summary["validation"], summary["published"]
    if validation:
        this_run = validation.get("run_id") == summary["run_id"]
        when = "this run" if this_run else f"run {validation.get('run_id')}"
        evaluated, failed = validation["evaluated_expectations"], validation["failed_expectations"]
        if validation["success"]:
            lines.append(
                f"validation ({when}): passed, {evaluated} expectations "
                f"in {validation['seconds']} s"
            )
        else:
            lines.append(
                f"validation ({when}): FAILED {failed} of {evaluated} expectations; "
                "nothing was published"
            )
            lines.append(format_failures([Check(**f) for f in validation["failures"]]))
        if figures := validation.get("reconciliation"):
            lost = figures["rows_in_landing"] - (
                figures["rows_loaded"] + figures["rows_quarantined"] + figures["rows_rejected"]
            )
            lines.append(
                f"reconciliation ({when}): {figures['usage_files']} usage files, "
                f"{figures['rows_in_landing']:,} rows = {figures['rows_loaded']:,} loaded + "
                f"{figures['rows_quarantined']:,} quarantined + {figures['rows_rejected']:,} "
                f"rejected (lost: {lost:,}); ${float(figures['landing_usd']):,.2f} in the files, "
                f"${float(figures['loaded_usd']):,.2f} loaded, "
                f"${float(figures['marts_usd']):,.2f} in the marts"
            )
        lines.append(f"data docs: {validation['data_docs']}")
    if published:
        this_run = published["run_id"] == summary["run_id"]
        when = "this run" if this_run else f"kept from run {published['run_id']}"
        marts = ", ".join(f"{name} {rows:,}" for name, rows in published["row_counts"].items())
        paths = summary["published_paths"]
        lines += [
            f"published ({when}, {published['published_at']}): {paths['warehouse']}",
            f"  marts (rows): {marts}",
            f"  exports: {paths['exports']}/<mart>.parquet",
            f"  manifest: {paths['manifest']}",
        ]
    return lines
