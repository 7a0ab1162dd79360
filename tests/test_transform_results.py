"""The per-model tasks' reading of dbt's artifacts: which tests belong to which model, each
model's verdict, and never an older build's results (a real failing build: test_dag.py)."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import settings_for
from warehouse.transform.results import BUILD_KEY, NoResults, describe, node_results, verdict

BUILD = "b1"


def _test_node(name: str, attached: str | None, depends_on: list[str]) -> dict:
    return {
        "name": name,
        "resource_type": "test",
        "attached_node": attached,
        "depends_on": {"nodes": depends_on},
    }


MANIFEST_NODES = {
    "model.p.stg_a": {"name": "stg_a", "resource_type": "model"},
    "model.p.mart_b": {"name": "mart_b", "resource_type": "model"},
    "model.p.mart_c": {"name": "mart_c", "resource_type": "model"},
    "test.p.not_null_stg_a_id.1": _test_node("not_null_stg_a_id", "model.p.stg_a", []),
    # A relationship test reads two models; it belongs to the one it is defined on.
    "test.p.relationships_mart_b.2": _test_node(
        "relationships_mart_b", "model.p.mart_b", ["model.p.stg_a", "model.p.mart_b"]
    ),
    # A singular test belongs to every model it reads.
    "test.p.assert_b_reconciles_with_a": _test_node(
        "assert_b_reconciles_with_a", None, ["model.p.stg_a", "model.p.mart_b"]
    ),
    "test.p.source_unique_raw_a_id.3": _test_node(
        "source_unique_raw_a_id", None, ["source.p.raw.a"]
    ),
}
UNIT_TESTS = {
    "unit_test.p.mart_c.adds_up": {
        "name": "adds_up",
        "model": "mart_c",
        "depends_on": {"nodes": ["model.p.mart_c"]},
    }
}
SOURCES = {"source.p.raw.a": {"source_name": "raw", "name": "a"}}


@pytest.fixture
def settings(tmp_path):
    return settings_for(tmp_path / "landing", tmp_path / "data")


def write_build(
    settings, results: list[tuple[str, str]], build: str | None = BUILD, manifest_of: str = "i1"
) -> None:
    """Artifacts shaped as dbt writes them, for a build with these (node, status) results and
    the manifest of dbt invocation `manifest_of` (the build's own is i1). As after a partial
    parse, the manifest's env is an earlier build's."""
    metadata = {"invocation_id": "i1", "env": {BUILD_KEY: build} if build else {}}
    settings.dbt_target_dir.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "unique_id": node,
            "status": status,
            "execution_time": 0.25,
            "adapter_response": {"_message": "OK", "rows_affected": 7},
            "failures": 3 if status == "fail" else 0,
            "message": "Got 3 results, configured to fail if != 0" if status == "fail" else None,
        }
        for node, status in results
    ]
    settings.dbt_run_results.write_text(json.dumps({"metadata": metadata, "results": rows}))
    manifest = {"nodes": MANIFEST_NODES, "unit_tests": UNIT_TESTS, "sources": SOURCES}
    manifest_metadata = {"invocation_id": manifest_of, "env": {BUILD_KEY: "an earlier build"}}
    settings.dbt_manifest.write_text(json.dumps({"metadata": manifest_metadata, **manifest}))


def by_name(nodes: list[dict]) -> dict[str, dict]:
    return {node["name"]: node for node in nodes}


def test_each_model_has_its_tests_in_build_order(settings):
    write_build(
        settings,
        [
            ("test.p.source_unique_raw_a_id.3", "pass"),
            ("model.p.stg_a", "success"),
            ("test.p.not_null_stg_a_id.1", "pass"),
            ("unit_test.p.mart_c.adds_up", "pass"),
            ("model.p.mart_b", "success"),
            ("test.p.relationships_mart_b.2", "pass"),
            ("test.p.assert_b_reconciles_with_a", "pass"),
            ("model.p.mart_c", "success"),
            ("exposure.p.dashboard", "no-op"),
        ],
    )

    nodes = node_results(settings, BUILD)

    assert [n["name"] for n in nodes] == ["raw.a", "stg_a", "mart_c", "mart_b"]
    tests = {n["name"]: [t["name"] for t in n["tests"]] for n in nodes}
    assert tests == {
        "raw.a": ["source_unique_raw_a_id"],
        "stg_a": ["not_null_stg_a_id", "assert_b_reconciles_with_a"],
        "mart_c": ["adds_up"],
        "mart_b": ["relationships_mart_b", "assert_b_reconciles_with_a"],
    }
    mart_c = by_name(nodes)["mart_c"]
    assert (mart_c["status"], mart_c["seconds"], mart_c["rows"]) == ("success", 0.25, 7)
    assert mart_c["tests"][0]["kind"] == "unit"
    assert by_name(nodes)["raw.a"]["resource_type"] == "source"
    assert all(verdict(n)[0] == "success" for n in nodes)


def test_a_failing_test_fails_its_model_and_dbt_skips_are_skips(settings):
    write_build(
        settings,
        [
            ("model.p.stg_a", "success"),
            ("test.p.not_null_stg_a_id.1", "fail"),
            ("unit_test.p.mart_c.adds_up", "pass"),
            ("model.p.mart_c", "error"),
            ("model.p.mart_b", "skipped"),
            ("test.p.relationships_mart_b.2", "skipped"),
            ("test.p.assert_b_reconciles_with_a", "skipped"),
        ],
    )

    nodes = by_name(node_results(settings, BUILD))

    outcome, message = verdict(nodes["stg_a"])
    assert outcome == "failed"
    assert message == (
        "model stg_a failed; failing tests: not_null_stg_a_id (fail, 3 failing rows): "
        "Got 3 results, configured to fail if != 0"
    )
    assert verdict(nodes["mart_c"])[0] == "failed"
    assert verdict(nodes["mart_b"]) == (
        "skipped",
        "model mart_b was not built: dbt skipped it after a failure upstream",
    )
    assert describe(nodes["stg_a"]).splitlines() == [
        "model stg_a: success in 0.25 s, 7 rows",
        "  data test not_null_stg_a_id (fail, 3 failing rows): "
        "Got 3 results, configured to fail if != 0",
        "  data test assert_b_reconciles_with_a (skipped)",
    ]


@pytest.mark.parametrize(
    ("written_by", "asked_for", "reason"),
    [
        (None, BUILD, "not this run's build (no build id, not b1)"),  # an older project's
        ("b0", BUILD, "not this run's build (b0, not b1)"),  # another run built since
        (BUILD, None, "started no dbt build in this run"),  # transform never ran
    ],
)
def test_results_of_another_build_are_refused(settings, written_by, asked_for, reason):
    write_build(settings, [("model.p.stg_a", "success")], build=written_by)

    with pytest.raises(NoResults, match=re.escape(reason)):
        node_results(settings, asked_for)


def test_a_manifest_of_another_build_is_refused(settings):
    write_build(settings, [("model.p.stg_a", "success")], manifest_of="i2")

    with pytest.raises(NoResults, match="is not the manifest of"):
        node_results(settings, BUILD)


def test_a_build_that_wrote_no_results_has_none(settings):
    write_build(settings, [("model.p.stg_a", "success")])
    settings.dbt_run_results.unlink()

    with pytest.raises(NoResults, match="ended before writing it"):
        node_results(settings, BUILD)


def test_results_being_rewritten_by_another_build_are_refused(settings):
    """dbt writes its artifacts in place: another build's half-written file is not this one's."""
    write_build(settings, [("model.p.stg_a", "success")])
    text = settings.dbt_run_results.read_text()
    settings.dbt_run_results.write_text(text[: len(text) // 2])

    with pytest.raises(NoResults, match="is being rewritten by another build"):
        node_results(settings, BUILD)
