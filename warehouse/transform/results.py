"""What one `dbt build` did to each model, read from dbt's own artifacts.

The transform task runs the whole project as one dbt process (one start-up, dbt's own order and
skipping). Its `run_results.json` (each node's status) and `manifest.json` (which model each test
belongs to) then say, per model, what happened: the DAG shows each as a task of its own, which
fails when the model or one of its tests failed and is skipped when dbt skipped the model
downstream of a failure. The same functions serve both engines: dbt writes the same artifacts on
DuckDB and Spark, into the data folder's target folder (`Settings.dbt_run_results` and
`Settings.dbt_manifest`).

A build is marked so that its results are never mistaken for an older build's: the transform
task removes `run_results.json` before dbt starts and gives dbt a build id (`BUILD_ENV`), which
dbt writes into the run results' `metadata.env` (every `DBT_ENV_CUSTOM_ENV_*` variable); the
manifest must carry the same dbt invocation id. Results without this run's id (the build died
before writing them, the transform never started, or another run on the data folder has built
since) are refused, never reported.
"""

from __future__ import annotations

import json
from pathlib import Path

from warehouse.settings import Settings

# dbt copies DBT_ENV_CUSTOM_ENV_<name> from its environment into its artifacts' metadata.env.
BUILD_KEY = "WAREHOUSE_BUILD"
BUILD_ENV = f"DBT_ENV_CUSTOM_ENV_{BUILD_KEY}"
# The transform task's XCom that carries the build id to the results task.
BUILD_XCOM = "dbt_build"

# Nodes that get a task: what dbt builds (a source gets one only when it has tests).
BUILT_TYPES = ("model", "seed", "snapshot")
FAILING = ("error", "fail", "runtime error")


class NoResults(Exception):
    """There are no results of this run's dbt build to report (the message says why)."""


def node_results(settings: Settings, build: str | None) -> list[dict]:
    """One small dict per model, seed and snapshot of build `build` (and per source with tests),
    in the order dbt first ran something of it: its status, seconds, rows (where the adapter
    reports them) and the data and unit tests that belong to it, each with its status and
    failures. Raises NoResults when dbt's target folder holds no results of that build."""
    if build is None:
        raise NoResults("the transform task started no dbt build in this run (see its state)")
    results_file, manifest_file = settings.dbt_run_results, settings.dbt_manifest
    if not results_file.exists():
        raise NoResults(
            f"{results_file} is missing: this run's dbt build ended before writing it "
            "(see the transform task's log)"
        )
    run = _read(results_file)
    written_by = run["metadata"].get("env", {}).get(BUILD_KEY)
    if written_by != build:
        raise NoResults(
            f"{results_file} is not this run's build ({written_by or 'no build id'}, "
            f"not {build}): another run on this data folder has built since"
        )
    # The manifest's metadata.env may be an earlier build's (dbt keeps it from the partial
    # parse it starts from); its invocation id is always the build's that wrote it.
    manifest = _read(manifest_file)
    if manifest["metadata"]["invocation_id"] != run["metadata"]["invocation_id"]:
        raise NoResults(
            f"{manifest_file} is not the manifest of {results_file}'s build: another run on "
            "this data folder has built since"
        )
    return _per_node(run["results"], manifest)


def _read(path: Path) -> dict:
    """An artifact; dbt writes them in place, so one that cannot be read is being rewritten by
    another build (this build's dbt has ended)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError) as error:
        raise NoResults(f"{path} is being rewritten by another build ({error})") from error


def _per_node(results: list[dict], manifest: dict) -> list[dict]:
    nodes, unit_tests, sources = manifest["nodes"], manifest["unit_tests"], manifest["sources"]
    entries: dict[str, dict] = {}

    def entry(unique_id: str) -> dict:
        if unique_id not in entries:
            if unique_id in sources:
                source = sources[unique_id]
                name, kind = f"{source['source_name']}.{source['name']}", "source"
            else:
                name, kind = nodes[unique_id]["name"], nodes[unique_id]["resource_type"]
            entries[unique_id] = {
                "unique_id": unique_id,
                "name": name,
                "resource_type": kind,
                "status": None,  # a source, or a node dbt reported nothing of
                "seconds": None,
                "rows": None,
                "message": None,
                "tests": [],
            }
        return entries[unique_id]

    for result in results:
        unique_id, status = result["unique_id"], result["status"]
        kind = unique_id.split(".", 1)[0]
        if kind in BUILT_TYPES:
            entry(unique_id).update(
                status=status,
                seconds=round(result.get("execution_time") or 0.0, 3),
                rows=(result.get("adapter_response") or {}).get("rows_affected"),
                message=_first_line(result.get("message")) if status in FAILING else None,
            )
        elif kind in ("test", "unit_test"):
            test = {
                "name": (unit_tests if kind == "unit_test" else nodes)[unique_id]["name"],
                "kind": "unit" if kind == "unit_test" else "data",
                "status": status,
                "failures": result.get("failures"),
                "message": _first_line(result.get("message")) if status in FAILING else None,
            }
            for owner in _owners(unique_id, nodes, unit_tests):
                entry(owner)["tests"].append(test)
    return list(entries.values())


def _owners(test_id: str, nodes: dict, unit_tests: dict) -> list[str]:
    """The nodes a test belongs to: the one a generic test is defined on, else every model,
    seed, snapshot or source a singular or unit test reads."""
    node = unit_tests.get(test_id) or nodes[test_id]
    if node.get("attached_node"):
        return [node["attached_node"]]
    return [
        upstream
        for upstream in node["depends_on"]["nodes"]
        if upstream.split(".", 1)[0] in (*BUILT_TYPES, "source")
    ]


def _first_line(message: str | None) -> str | None:
    return message.strip().splitlines()[0] if message and message.strip() else None


def verdict(node: dict) -> tuple[str, str]:
    """`success`, `failed` (the node failed or one of its tests did) or `skipped` (dbt did not
    build it, after a failure upstream), with one line saying so."""
    label = f"{node['resource_type']} {node['name']}"
    failing = [t for t in node["tests"] if t["status"] in FAILING]
    if node["status"] in FAILING or failing:
        parts = [f"{label} failed"]
        if node["status"] in FAILING:
            parts.append(f"{node['status']}: {node['message'] or 'see the transform log'}")
        if failing:
            parts.append("failing tests: " + ", ".join(_test_outcome(t) for t in failing))
        return "failed", "; ".join(parts)
    if node["status"] == "skipped":
        return "skipped", f"{label} was not built: dbt skipped it after a failure upstream"
    return "success", f"{label}: {node['status'] or 'no build of its own'}, tests passed"


def describe(node: dict) -> str:
    """What the task log shows: the node's outcome, then each of its tests'."""
    seconds = "" if node["seconds"] is None else f" in {node['seconds']:.2f} s"
    rows = "" if node["rows"] is None else f", {node['rows']:,} rows"
    lines = [f"{node['resource_type']} {node['name']}: {node['status'] or '-'}{seconds}{rows}"]
    if node["message"]:
        lines.append(f"  {node['message']}")
    lines += [f"  {t['kind']} test {_test_outcome(t)}" for t in node["tests"]]
    return "\n".join(lines)


def _test_outcome(test: dict) -> str:
    text = f"{test['name']} ({test['status']}"
    if test["status"] in (*FAILING, "warn") and test["failures"]:
        rows = test["failures"]
        text += f", {rows} failing row{'' if rows == 1 else 's'}"
    text += ")"
    return f"{text}: {test['message']}" if test["message"] else text
