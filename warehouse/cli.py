"""The `warehouse` command, the one entry point behind the Makefile; each command works the
same with or without `make` (settings come from the environment, with fresh-clone defaults).

  pipeline   run (the DAG once, end to end), ingest, docs (dbt docs), summary (the build)
  serving    query (read-only SQL), status (the last publish), marts (what each column means)
  airflow    up / down (the local services), airflow (its CLI against them), airflow-init
             (migrate, pool, logins)
  test data  generate (a calibrated, synthetic landing folder of any size)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import signal
import sys
import traceback
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from warehouse.db import StorageError
from warehouse.lock import LockHeldError, hold_data_lock
from warehouse.settings import REPORT_DAG_ID, WRITER_POOL, Settings


def _generate(args: argparse.Namespace, settings: Settings) -> int:
    from warehouse.synthetic.generate import write_landing

    counts = write_landing(args.out, rows=args.rows, seed=args.seed)
    usage = sum(n for name, n in counts.items() if name.startswith("spend/"))
    print(f"wrote {len(counts)} files to {args.out}: {usage:,} usage rows")
    return 0


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    from warehouse.ingest import SOURCES, SourceRefusedError, ingest_source

    run_id = f"manual__{datetime.now(UTC):%Y-%m-%dT%H:%M:%S}"
    failed = False
    with hold_data_lock(settings, "warehouse ingest", run_id):
        for name in args.source or list(SOURCES):
            try:
                result = ingest_source(name, run_id, settings)
                print(json.dumps(result.to_dict()))
            except SourceRefusedError as error:
                print(error, file=sys.stderr)
                failed = True
    return 1 if failed else 0


def _run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the pipeline (and the report) under the data folder's lock, in a child process that
    this one ends however it ends itself: in the process running a task, Airflow's task runner
    takes SIGTERM for itself (task_runner.py, `_on_term`)."""
    from warehouse.runtime.children import die_with_parent

    supervisor = os.getpid()
    with hold_data_lock(settings, "warehouse run"):
        _check_build_db(settings)
        sys.stdout.flush()
        sys.stderr.flush()
        child = os.fork()  # before Airflow is imported: one thread here
        if child == 0:
            code = 1
            try:
                die_with_parent(signal.SIGKILL)  # the supervisor's death ends the run
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides
                if os.getppid() == supervisor:
                    code = _run_pipeline(args, settings)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)  # the lock stays with the supervisor, released there
        return _supervise(child)


def _check_build_db(settings: Settings) -> None:
    """Fail at once, in one line, on a build database that cannot be opened read-write
    (corrupt, not a DuckDB file, permission denied, open elsewhere) rather than in every task."""
    from warehouse.db import connect

    if settings.build_db.exists():
        with connect(settings.build_db, settings):
            pass


def _supervise(child: int) -> int:
    """Wait for the run's process; on SIGTERM, SIGINT (Ctrl-C) or SIGHUP, kill it, end every
    process below it (dbt's launcher, which removes Cosmos's project copy) and say so."""
    from warehouse.runtime.processes import terminate, tree

    stopped: list[int] = []

    def stop(signum, _frame):
        if not stopped:
            stopped.append(signum)
            below = tree(child)[1:]
            os.kill(child, signal.SIGKILL)
            terminate(below)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)
    _, status = os.waitpid(child, 0)  # retried across signals (PEP 475)
    if stopped:
        name = signal.Signals(stopped[0]).name
        print(
            f"error: stopped by {name}: the run and every process it started were ended; "
            "the last publish is unchanged unless this run's publish had completed",
            file=sys.stderr,
        )
        return 128 + stopped[0]
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _run_pipeline(args: argparse.Namespace, settings: Settings) -> int:
    settings.apply()  # Airflow reads its home once, at import
    import airflow  # noqa: F401  (before anything that may import cosmos)

    from warehouse.runtime.run import run_once
    from warehouse.serve.summary import build_summary, format_summary

    print("running the pipeline DAG once (airflow dag.test) ...", flush=True)
    run = run_once(settings, conf={"full_refresh": args.full_refresh})
    print(f"run {run.run_id}: {run.state}; Airflow log: {run.log_file}")
    if run.task_seconds:
        print(f"slowest tasks: {run.slowest()}")
    if settings.build_db.exists():
        with contextlib.suppress(StorageError, duckdb.Error):
            print(format_summary(build_summary(settings, run_id=run.run_id)))
    if not run.succeeded:
        if "transform (failed)" in run.failed_tasks:
            from warehouse.serve.summary import dbt_failures, format_dbt_failures

            print(format_dbt_failures(dbt_failures(settings)), file=sys.stderr)
        cause = _failure_cause(run.log_file)
        print(
            f"error: failed tasks: {', '.join(run.failed_tasks)}; "
            + (f"cause: {cause}" if cause else "see the log"),
            file=sys.stderr,
        )
        return 1
    if run.task_states.get("publish") == "skipped":
        from warehouse.publish import read_manifest
        from warehouse.publish.changes import nothing_changed

        # No publish, no Asset event: the scheduler would not run the report either.
        print(f"{nothing_changed(read_manifest(settings))}: nothing rebuilt or published")
        return 0
    if args.no_report:
        return 0
    # What the scheduler does on the published Asset's event.
    report = run_once(settings, run.log_file, dag_id=REPORT_DAG_ID)
    if not report.succeeded:
        failed = ", ".join(report.failed_tasks)
        print(f"error: the report DAG failed ({failed}); see the log", file=sys.stderr)
        return 1
    report_dir = settings.report_dir
    print(f"report: {report_dir / 'index.html'} (charts: {report_dir}/*.png)")
    return 0


# The one-line causes the pipeline's own errors carry (disk full, permission, corrupt database,
# a data folder in use), as they appear in a task's log.
_CAUSE = re.compile(r"\b(?:StorageError|LockHeldError): (.+)")


def _failure_cause(log_file: Path) -> str | None:
    """The last one-line cause a failed task logged (a StorageError's or LockHeldError's
    message), or None when the log holds none."""
    try:
        causes = _CAUSE.findall(log_file.read_text(errors="replace"))
    except OSError:
        return None
    return causes[-1].strip() if causes else None


def _build_db_missing(settings: Settings) -> bool:
    missing = not settings.build_db.exists()
    if missing:
        print(
            f"error: no build database at {settings.build_db}; run `make run` first",
            file=sys.stderr,
        )
    return missing


def _docs(args: argparse.Namespace, settings: Settings) -> int:
    from warehouse.transform.dbt import generate_docs

    if _build_db_missing(settings):
        return 1
    with hold_data_lock(settings, "warehouse docs"):
        print(f"dbt docs (offline, one file): {generate_docs(settings)}")
    return 0


def _summary(args: argparse.Namespace, settings: Settings) -> int:
    from warehouse.serve.summary import build_summary, format_summary

    if _build_db_missing(settings):
        return 1
    with hold_data_lock(settings, "warehouse summary"):
        print(format_summary(build_summary(settings, run_id=args.run_id)))
    return 0


def _query(args: argparse.Namespace, settings: Settings) -> int:
    from warehouse.serve.query import QueryLimits, format_rows, run_query

    limits = QueryLimits.from_settings(settings, args.timeout)
    columns, rows = run_query(args.sql, settings.published_db, limits, multiple=args.multiple)
    print(format_rows(columns, rows, args.format))
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from warehouse.serve.query import status

    manifest = status(settings)
    if args.format == "json":
        print(json.dumps(manifest, indent=2))
        return 0
    validation = manifest["validation"]
    print(f"published: {manifest['published_at']} by run {manifest['run_id']}")
    print(f"git revision: {manifest['git_revision'] or 'unknown'}")
    print(
        f"validation: {'passed' if validation['success'] else 'FAILED'}, "
        f"{validation['evaluated_expectations']} expectations, "
        f"{validation['failed_expectations']} failed"
    )
    for mart, rows in manifest["row_counts"].items():
        print(f"  {mart:<28} {rows:>10,} rows")
    print(f"duckdb: {settings.published_db} serves run {manifest['run_id']}")
    if settings.serve_postgres_url:
        from warehouse.publish.postgres import served_run

        served = served_run(settings.serve_postgres_url)  # asked of the target itself
        state = f"serves run {served['run_id']}" if "run_id" in served else served["error"]
        print(f"postgres: {served['target']} {state}")
    _print_freshness(settings, manifest)
    return 0


def _print_freshness(settings: Settings, manifest: dict) -> None:
    """The freshness the last run judged (it may be newer than the publish: a failed run)."""
    from warehouse.ingest.freshness import read_report
    from warehouse.serve.summary import freshness_lines

    report = read_report(settings)
    if report is None and manifest.get("freshness"):
        report = {"as_of": manifest["published_at"][:10], "sources": manifest["freshness"]}
    for line in freshness_lines(report):
        print(line)


def _marts(args: argparse.Namespace, settings: Settings) -> int:
    from warehouse.serve.query import describe_marts

    marts = describe_marts(settings.published_db)
    if args.format == "json":
        print(json.dumps(marts, indent=2))
        return 0
    for mart in marts:
        print(f"{mart['mart']}: {mart['description']}")
        for column in mart["columns"]:
            print(f"  {column['name']:<32} {column['type']:<14} {column['description']}")
        print()
    return 0


def _up(args: argparse.Namespace, settings: Settings) -> int:
    from warehouse.runtime import services
    from warehouse.settings import DAG_ID

    if args.port:
        settings = dataclasses.replace(settings, airflow_port=args.port)
    print(
        "starting PostgreSQL, then Airflow: api-server, scheduler, dag-processor, triggerer, "
        "log servers ...",
        flush=True,
    )
    try:
        services.start(settings)
    except services.NotStarted as error:  # nothing was started: nothing to stop
        print(f"error: {error}", file=sys.stderr)
        return 1
    except services.ServiceError as error:
        services.stop(settings.airflow_home)
        print(f"error: {error}", file=sys.stderr)
        return 1
    home, url = settings.airflow_home, f"http://localhost:{settings.airflow_port}"
    print(f"Airflow UI: {url}  (logins: {services.USERNAME}; {services.VIEWER}, read-only)")
    print(f"their passwords are in {services.password_file(home)} (readable by you only)")
    print(f"{DAG_ID} is created unpaused, daily; {REPORT_DAG_ID} runs after each publish")
    print(f"service logs: {home / 'services'}/; stop with `make down`")
    return 0


def _down(args: argparse.Namespace, settings: Settings) -> int:
    from warehouse.runtime import services

    try:
        stopped = services.stop(settings.airflow_home)
    except services.ServiceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"stopped: {', '.join(stopped)}" if stopped else "no Airflow services were running")
    return 0


def _airflow(args: argparse.Namespace, settings: Settings) -> int:
    """`airflow ...` with the environment of make up's services (PostgreSQL, FAB), which the
    plain `airflow` command (SQLite, make run's) does not have."""
    import os

    from warehouse.runtime import services

    command = [sys.executable, "-m", "airflow", *args.arguments]
    os.execve(sys.executable, command, services.service_environment(settings))


def _airflow_init(args: argparse.Namespace, settings: Settings) -> int:
    """For docker-compose.yml: its environment names the metadata database and the FAB auth
    manager; the passwords come from .env through the settings."""
    from warehouse.runtime import services

    home = services.prepare_airflow_home(settings, logins=True)
    print(
        f"Airflow ready in {home}: metadata migrated, pool {WRITER_POOL}, "
        f"logins {services.USERNAME} and {services.VIEWER}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    # Quietly stop when the reader of the output goes away (`warehouse marts | head`).
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    parser = argparse.ArgumentParser(prog="warehouse", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate", help="write synthetic, calibrated landing files")
    generate.add_argument("--out", type=Path, required=True, help="landing folder to write")
    generate.add_argument("--rows", type=int, help="exact number of usage rows (default: seeds)")
    generate.add_argument("--seed", type=int, default=20240731)
    generate.set_defaults(handler=_generate)

    ingest = commands.add_parser("ingest", help="load the landing folder into the build database")
    ingest.add_argument("--source", action="append", choices=["customers", "earnings", "usage"])
    ingest.set_defaults(handler=_ingest)

    run = commands.add_parser("run", help="run the pipeline DAG once, end to end")
    run.add_argument("--no-report", action="store_true", help="skip the report DAG after it")
    run.add_argument(
        "--full-refresh",
        action="store_true",
        help="rebuild every model from raw (dbt --full-refresh), even when nothing changed",
    )
    run.set_defaults(handler=_run)

    docs = commands.add_parser("docs", help="write the dbt docs site to <data>/docs/index.html")
    docs.set_defaults(handler=_docs)

    summary = commands.add_parser("summary", help="what the build database holds")
    summary.add_argument("--run-id", help="also show what this run loaded")
    summary.set_defaults(handler=_summary)

    query = commands.add_parser("query", help="run SQL against the published warehouse (read-only)")
    query.add_argument("sql", help='one SQL statement, e.g. "select * from marts.dim_customers"')
    query.add_argument("--format", choices=["table", "csv", "json"], default="table")
    query.add_argument(
        "--timeout",
        type=float,
        help="stop the query after this many seconds, 0 for none "
        "(default: WAREHOUSE_QUERY_TIMEOUT_SECONDS, 300)",
    )
    query.add_argument(
        "--multiple",
        action="store_true",
        help="run several ;-separated queries (the last one's rows are printed)",
    )
    query.set_defaults(handler=_query)

    status = commands.add_parser("status", help="the last publish: time, run, rows, validation")
    status.add_argument("--format", choices=["text", "json"], default="text")
    status.set_defaults(handler=_status)

    marts = commands.add_parser("marts", help="the published marts, their columns and meaning")
    marts.add_argument("--format", choices=["text", "json"], default="text")
    marts.set_defaults(handler=_marts)

    up = commands.add_parser("up", help="start Airflow's services in the background (make up)")
    up.add_argument("--port", type=int, help="UI and API port (default: WAREHOUSE_AIRFLOW_PORT)")
    up.set_defaults(handler=_up)

    down = commands.add_parser("down", help="stop the services `up` started (make down)")
    down.set_defaults(handler=_down)

    airflow_init = commands.add_parser(
        "airflow-init", help="migrate Airflow's metadata, create the pool and the logins"
    )
    airflow_init.set_defaults(handler=_airflow_init)

    airflow = commands.add_parser(
        "airflow",
        help="Airflow's own CLI against make up's metadata database (dags trigger, backfill ...)",
    )
    airflow.add_argument("arguments", nargs=argparse.REMAINDER, help="airflow's arguments")
    airflow.set_defaults(handler=_airflow)

    args = parser.parse_args(argv)
    settings = Settings.from_env()  # built once, here, and passed down
    from warehouse.serve.query import QueryError

    try:
        return args.handler(args, settings)
    except (QueryError, LockHeldError, StorageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
