"""The read-only query commands over the published warehouse: `warehouse query`, `status`,
`marts`. Errors are one line on stderr with a non-zero exit, and nothing can be written."""

from __future__ import annotations

import csv
import hashlib
import io
import json

import pytest

from tests.conftest import ALL_MARTS
from warehouse.cli import main

pytestmark = pytest.mark.slow

HEADLINE = (
    "select level, top_customer_name, round(top1_share, 4) as top1_share "
    "from marts.fct_revenue_concentration where product_line = 'azure_openai' "
    "and month = date '2024-03-01' order by level"
)


@pytest.fixture
def warehouse(first_run, monkeypatch):
    _, settings = first_run
    monkeypatch.setenv("WAREHOUSE_DATA_DIR", str(settings.data_dir))  # as a user configures it
    return settings.published_db


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_query_prints_an_aligned_table(warehouse, capsys):
    code, out, _ = run_cli(capsys, "query", HEADLINE)

    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["level", "top_customer_name", "top1_share"]
    assert lines[2].split() == ["customer", "TikTok", "0.2465"]
    assert lines[3].split() == ["parent_company", "ByteDance", "0.2465"]
    assert lines[-1] == "(2 rows)"


def test_query_prints_csv_and_json(warehouse, capsys):
    _, out, _ = run_cli(capsys, "query", HEADLINE, "--format", "csv")
    assert list(csv.reader(io.StringIO(out)))[1] == ["customer", "TikTok", "0.2465"]

    _, out, _ = run_cli(capsys, "query", HEADLINE, "--format", "json")
    assert json.loads(out)[0] == {
        "level": "customer",
        "top_customer_name": "TikTok",
        "top1_share": 0.2465,
    }


@pytest.mark.parametrize(
    "statement",
    [
        "delete from marts.dim_customers",
        "insert into marts.dim_customers (customer_id) values ('x')",
        "create table marts.mine as select 1 as x",
        "drop table marts.dim_customers",
    ],
)
def test_writes_are_refused_with_one_clear_line(warehouse, capsys, statement):
    before = hashlib.sha256(warehouse.read_bytes()).hexdigest()

    code, out, err = run_cli(capsys, "query", statement)

    assert code == 1 and out == ""
    assert err.startswith("error: the published warehouse is read-only")
    assert len(err.strip().splitlines()) == 1
    assert hashlib.sha256(warehouse.read_bytes()).hexdigest() == before


def test_bad_sql_and_file_access_are_one_line_errors(warehouse, capsys):
    code, _, err = run_cli(capsys, "query", "selec 1")
    assert code == 1 and err.startswith("error: Parser Error")

    code, _, err = run_cli(capsys, "query", "select * from read_csv('/etc/passwd')")
    assert code == 1 and "disabled by configuration" in err


def test_missing_warehouse_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WAREHOUSE_DATA_DIR", str(tmp_path))

    for command in (["query", "select 1"], ["status"], ["marts"]):
        code, _, err = run_cli(capsys, *command)
        assert code == 1
        assert err.startswith("error: ") and "run `make run` first" in err


def test_status_reports_the_last_publish(warehouse, first_run, capsys):
    run, _ = first_run

    code, out, _ = run_cli(capsys, "status")

    assert code == 0
    assert f"by run {run.run_id}" in out
    assert "validation: passed" in out
    code, out, _ = run_cli(capsys, "status", "--format", "json")
    assert json.loads(out)["row_counts"]["dim_customers"] == 39


def test_marts_lists_every_mart_and_column_with_its_description(warehouse, capsys):
    code, out, _ = run_cli(capsys, "marts", "--format", "json")

    assert code == 0
    marts = {m["mart"]: m for m in json.loads(out)}
    assert set(marts) == ALL_MARTS
    for mart in marts.values():
        assert mart["description"]
        assert all(column["description"] for column in mart["columns"]), mart["mart"]
    hhi = next(c for c in marts["fct_revenue_concentration"]["columns"] if c["name"] == "hhi")
    assert hhi["type"] == "DOUBLE" and "10,000" in hhi["description"]
