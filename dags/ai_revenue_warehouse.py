"""
### AI revenue warehouse pipeline

Loads whatever is in the landing folder, rebuilds what changed with one `dbt build`, audits the
marts, and publishes only an audited build, emitting the Asset `ai_revenue_report` is scheduled
on. When nothing changed since the last publish (landing files, dbt project, expectations), the
build, audit and publish are skipped and the report is not triggered. Each task, the writer
pool and the data folder's lock: README.md, "The pipeline".
"""

from __future__ import annotations

from airflow.sdk import Param, TriggerRule, dag, task, task_group
from cosmos import ProfileConfig
from cosmos.constants import InvocationMode

from warehouse import tasks
from warehouse.serve.alerts import RunAlerts
from warehouse.settings import DAG_ID, WRITER_POOL, Settings
from warehouse.transform import dbt
from warehouse.transform.operator import OwnedDbtBuildOperator
from warehouse.transform.results import BUILD_XCOM

# The DAG's settings at parse time (retries, dbt's environment); each task builds its own from
# its process's environment when it runs, as every entry point does.
SETTINGS = Settings.from_env()


@task(pool=WRITER_POOL)
def load(source: str, run_id: str | None = None) -> dict:
    """One landing source into `raw`; a refused file fails without retries (bad data)."""
    return tasks.load(source, run_id)


@task(pool=WRITER_POOL)
def export_raw() -> dict:
    """Spark only: the raw tables as Parquet, the sources dbt reads on Spark."""
    return tasks.export_raw()


@task(pool=WRITER_POOL, retries=0)
def load_spark_marts() -> dict:
    """Spark only: the tables Spark built, into the build database."""
    return tasks.load_spark_marts()


# No retries for either: they report dbt's verdict on the build, which a retry cannot change.
@task(trigger_rule=TriggerRule.ALL_DONE, retries=0)
def transform_results(ti=None) -> list[dict]:
    """Each model's outcome in this run's dbt build, from dbt's artifacts."""
    return tasks.transform_results(ti.xcom_pull(task_ids="transform", key=BUILD_XCOM))


# Named by the model in the UI; from the task's argument, so the name shows while it runs too.
@task(retries=0, map_index_template="{{ task.op_kwargs['node']['name'] }}")
def model(node: dict) -> None:
    """One model of the build: failed or skipped as dbt left it."""
    tasks.model(node)


# Nothing changed since the last publish: skip the build (its direct downstream), and through
# the trigger rules validate and publish, so no Asset event triggers the report; summarize runs.
@task.short_circuit(ignore_downstream_trigger_rules=False, pool=WRITER_POOL)
def changes(params=None, run_id: str | None = None) -> dict | None:
    """Whether anything changed since the last publish; the inputs the build is built from."""
    return tasks.changes(run_id, full_refresh=params["full_refresh"])


@task(task_id="validate", pool=WRITER_POOL)
def validate_marts(run_id: str | None = None) -> dict:
    """The GX suites and the claims; a failure publishes nothing."""
    return tasks.validate(run_id)


@task(pool=WRITER_POOL)
def freshness(run_id: str | None = None, dag_run=None) -> list[dict]:
    """Each source's freshness at the run's logical date; stale fails only if so configured."""
    return tasks.freshness(run_id, dag_run.logical_date or dag_run.run_after)


@task(pool=WRITER_POOL, outlets=[tasks.PUBLISHED_WAREHOUSE])
def publish(
    validation: dict, run_id: str | None = None, outlet_events=None, inputs: dict | None = None
) -> dict:
    """The audited marts, published atomically; the Asset's event says what was published."""
    published = tasks.publish(validation, run_id, inputs)
    outlet_events[tasks.PUBLISHED_WAREHOUSE].extra = published
    return published


# Also after a publish skipped because nothing changed; not after a failure.
@task(pool=WRITER_POOL, trigger_rule=TriggerRule.NONE_FAILED)
def summarize(run_id: str | None = None) -> dict:
    """What this run loaded, the validation, the publish and the headline, in the log."""
    return tasks.summarize(run_id)


@dag(
    dag_id=DAG_ID,
    schedule="@daily",
    **tasks.dag_settings(SETTINGS),
    doc_md=__doc__,
    tags=["warehouse", SETTINGS.engine, "dbt"],
    # `warehouse run --full-refresh`, or a trigger with {"full_refresh": true}: rebuild every
    # model from raw (dbt's --full-refresh), even when nothing changed.
    params={"full_refresh": Param(False, type="boolean", description="Rebuild every model.")},
    # One message with its cause on a failure; a warning or a recovery on a success.
    on_failure_callback=RunAlerts(failed=True),
    on_success_callback=RunAlerts(failed=False),
)
def ai_revenue_warehouse():
    @task_group(group_id="ingest")
    def ingest():
        # Customers first: later rules and models read them alongside usage.
        customers = load.override(task_id="customers")("customers")
        earnings = load.override(task_id="earnings")("earnings")
        usage = load.override(task_id="usage")("usage")
        customers >> [earnings, usage]

    # One `dbt build` of the whole project: every model with its tests, in dependency order; a
    # failure skips what depends on it and fails the task, so nothing is validated or published.
    # One dbt process, owned by the task (it ends with the task) and under the data folder's lock.
    transform = OwnedDbtBuildOperator(
        task_id="transform",
        project_dir=dbt.DBT_PROJECT_DIR,
        profile_config=ProfileConfig(
            profile_name=dbt.PROFILE_NAME,
            target_name=SETTINGS.dbt_target,
            profiles_yml_filepath=dbt.PROFILES_YML,
        ),
        dbt_executable_path=SETTINGS.dbt_executable,
        # A subprocess: dbt holds DuckDB's one write handle only while it builds, even under
        # dag.test(), where every task shares one process.
        invocation_mode=InvocationMode.SUBPROCESS,
        install_deps=False,
        emit_datasets=False,
        env=dbt.dbt_env(SETTINGS),
        full_refresh="{{ params.full_refresh }}",
        # Unit tests check the models' logic on fixed rows, so a scheduled run repeats what the
        # tests (`make test`, which builds with them) proved of the same project: dbt's advice.
        dbt_cmd_flags=["--exclude-resource-type", "unit_test"],
        append_env=True,
        pool=WRITER_POOL,
        # A failing model or test is bad data or a bad model, not a transient fault: no retry.
        retries=0,
    )

    # Beside the audit, not before it: a successful build is validated and published without
    # waiting for its per-model tasks, and a failing model already fails the run (transform).
    results = transform_results()
    transform >> results
    model.expand(node=results)

    loaded = ingest()
    validation = validate_marts()
    inputs = changes()
    if SETTINGS.engine == "spark":
        # Parse-time choice: on DuckDB (the default) the DAG has neither task.
        loaded >> inputs >> export_raw() >> transform >> load_spark_marts() >> validation
    else:
        loaded >> inputs >> transform >> validation
    # Judged on every run, rebuilt or not; a stale source, when set to fail, stops the publish
    # and fails the run through the summary, even when nothing new skipped the publish.
    fresh = freshness()
    summary = summarize()
    loaded >> fresh >> publish(validation, inputs=inputs) >> summary
    fresh >> summary


ai_revenue_warehouse()
