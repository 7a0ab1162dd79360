"""The read-only query commands over the published warehouse: `warehouse query`, `status`,
`marts`. Errors are one line on stderr with a non-zero exit, and nothing can be written.

They run on a small warehouse published by the pipeline's own publish step from a build
database of a few rows; one test reads what a whole run publishes."""

from __future__ import annotations

import csv
import hashlib
import io
import json

import duckdb
import pytest

from tests.conftest import ALL_MARTS, settings_for
from warehouse.cli import main
from warehouse.publish import publish

HEADLINE = (
    "select level, top_customer_name, round(top1_share, 4) as top1_share "
    "from marts.fct_revenue_concentration where product_line = 'azure_openai' "
    "and month = date '2024-03-01' order by level"
)
RUN_ID = "manual__tiny"
VALIDATION = {"success": True, "evaluated_expectations": 12, "failed_expectations": 0}
# A few rows of two marts, with the descriptions dbt writes as comments (persist_docs).
BUILD = """
create schema marts;
create table marts.fct_revenue_concentration (
    month date, product_line varchar, level varchar, total_spend_usd decimal(18, 2),
    top_customer_name varchar, top1_share double, hhi double
);
insert into marts.fct_revenue_concentration values
    ('2024-03-01', 'azure_openai', 'parent_company', 1000.00, 'ByteDance', 0.246512, 1102.5),
    ('2024-03-01', 'azure_openai', 'customer', 1000.00, 'TikTok', 0.246512, 1020.0),
    ('2024-02-01', 'azure_openai', 'customer', 900.00, 'TikTok', 0.2, 900.0),
    ('2024-03-01', 'github_copilot', 'customer', 50.00, 'Shopify', 0.5, 5000.0);
comment on table marts.fct_revenue_concentration is 'How dependent each product line''s
    monthly revenue is on its largest customers.';
comment on column marts.fct_revenue_concentration.month is 'The month (its first day).';
comment on column marts.fct_revenue_concentration.product_line is 'The product line.';
comment on column marts.fct_revenue_concentration.level is 'customer or parent_company.';
comment on column marts.fct_revenue_concentration.total_spend_usd is 'Revenue in USD.';
comment on column marts.fct_revenue_concentration.top_customer_name is 'The largest customer.';
comment on column marts.fct_revenue_concentration.top1_share is 'Its share of revenue (0-1).';
comment on column marts.fct_revenue_concentration.hhi is
    'Sum of squared percentage shares, 0 to 10,000 (one customer).';
create table marts.dim_customers as
    select * from (values ('c1', 'TikTok', 'ByteDance'), ('c2', 'Shopify', 'Shopify'))
    as t (customer_id, customer_name, parent_company);
comment on table marts.dim_customers is 'One row per customer.';
comment on column marts.dim_customers.customer_id is 'The customer''s id.';
comment on column marts.dim_customers.customer_name is 'The customer''s name.';
comment on column marts.dim_customers.parent_company is 'The company that controls it.';
"""


@pytest.fixture(scope="module")
def tiny_publish(tmp_path_factory):
    """A warehouse published by the publish step (`warehouse.publish`) from a build database
    of a few rows, with its manifest and exports."""
    root = tmp_path_factory.mktemp("tiny-publish")
    settings = settings_for(root / "landing", root / "data")
    settings.data_dir.mkdir()
    with duckdb.connect(str(settings.build_db)) as con:
        con.execute(BUILD)
    publish(settings, RUN_ID, VALIDATION)
    return settings


@pytest.fixture
def warehouse(tiny_publish, monkeypatch):
    monkeypatch.setenv("WAREHOUSE_DATA_DIR", str(tiny_publish.data_dir))  # as a user configures it
    return tiny_publish.published_db


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
    # Text left-aligned, numbers right-aligned, under their headers.
    assert lines[1].split() == ["-" * len("parent_company"), "-" * 17, "-" * 10]
    assert lines[3].endswith("    0.2465")


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
    ("statement", "refusal"),
    [
        ("delete from marts.dim_customers", "read-only: DELETE is refused"),
        ("insert into marts.dim_customers (customer_id) values ('x')", "INSERT is refused"),
        ("create table marts.mine as select 1 as x", "read-only: CREATE TABLE is refused"),
        ("drop table marts.dim_customers", "read-only: DROP is refused"),
        ("create temp table mine as select 1 as x", "CREATE TEMP is refused"),
        ("set memory_limit = '100GB'", "SET is refused"),
        ("set threads = 1000", "SET is refused"),
        ("reset memory_limit", "RESET is refused"),
        ("pragma threads = 1000", "PRAGMA is refused"),
        ("checkpoint", "CHECKPOINT is refused"),
        ("select * from checkpoint()", "checkpoint() is refused"),
        ("attach ':memory:' as scratch", "ATTACH is refused"),
        ("select 1; select 2", "2 statements given"),
        ("select 1; set threads = 1000", "2 statements given"),
    ],
)
def test_anything_but_one_query_is_refused_in_one_line_and_changes_nothing(
    warehouse, capsys, statement, refusal
):
    before = hashlib.sha256(warehouse.read_bytes()).hexdigest()

    code, out, err = run_cli(capsys, "query", statement)

    assert code == 1 and out == ""
    assert err.startswith("error: ") and refusal in err
    assert len(err.strip().splitlines()) == 1
    assert hashlib.sha256(warehouse.read_bytes()).hexdigest() == before


def test_bad_sql_and_file_access_are_one_line_errors(warehouse, capsys):
    code, _, err = run_cli(capsys, "query", "selec 1")
    assert code == 1 and err.startswith("error: Parser Error")

    code, _, err = run_cli(capsys, "query", "select * from read_csv('/etc/passwd')")
    assert code == 1 and "disabled by configuration" in err


def test_a_query_over_its_memory_limit_is_a_one_line_error_naming_the_setting(
    warehouse, capsys, monkeypatch
):
    needs_160_mb = "select len(list(range)) as n from range(20000000)"
    code, out, _ = run_cli(capsys, "query", needs_160_mb, "--format", "csv")
    assert code == 0 and out.splitlines() == ["n", "20000000"]  # within the default limit

    monkeypatch.setenv("WAREHOUSE_QUERY_MEMORY_LIMIT", "64MB")
    code, out, err = run_cli(capsys, "query", needs_160_mb)

    assert code == 1 and out == ""
    assert err.startswith("error: Out of Memory Error")
    assert err.rstrip().endswith("(the query's memory limit is 64MB: WAREHOUSE_QUERY_MEMORY_LIMIT)")
    assert len(err.strip().splitlines()) == 1


def test_missing_warehouse_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WAREHOUSE_DATA_DIR", str(tmp_path))

    for command in (["query", "select 1"], ["status"], ["marts"]):
        code, _, err = run_cli(capsys, *command)
        assert code == 1
        assert err.startswith("error: ") and "run `make run` first" in err


def test_status_reports_the_last_publish(warehouse, capsys):
    code, out, _ = run_cli(capsys, "status")

    assert code == 0
    assert f"by run {RUN_ID}" in out
    assert "validation: passed, 12 expectations, 0 failed" in out
    rows = [line.split() for line in out.splitlines() if line.endswith(" rows")]
    assert rows == [["dim_customers", "2", "rows"], ["fct_revenue_concentration", "4", "rows"]]
    assert f"duckdb: {warehouse} serves run {RUN_ID}" in out.splitlines()
    code, out, _ = run_cli(capsys, "status", "--format", "json")
    assert json.loads(out)["row_counts"] == {"dim_customers": 2, "fct_revenue_concentration": 4}


def test_marts_lists_every_mart_and_column_with_its_description(warehouse, capsys):
    code, out, _ = run_cli(capsys, "marts", "--format", "json")

    assert code == 0
    marts = {m["mart"]: m for m in json.loads(out)}
    assert set(marts) == {"dim_customers", "fct_revenue_concentration"}
    assert marts["dim_customers"]["description"] == "One row per customer."
    assert marts["dim_customers"]["columns"] == [
        {"name": "customer_id", "type": "VARCHAR", "description": "The customer's id."},
        {"name": "customer_name", "type": "VARCHAR", "description": "The customer's name."},
        {
            "name": "parent_company",
            "type": "VARCHAR",
            "description": "The company that controls it.",
        },
    ]
    concentration = marts["fct_revenue_concentration"]
    # Descriptions are one line, however dbt wrapped them.
    assert concentration["description"] == (
        "How dependent each product line's monthly revenue is on its largest customers."
    )
    types = {c["name"]: c["type"] for c in concentration["columns"]}
    assert types["month"] == "DATE" and types["total_spend_usd"] == "DECIMAL(18,2)"
    hhi = next(c for c in concentration["columns"] if c["name"] == "hhi")
    assert hhi == {
        "name": "hhi",
        "type": "DOUBLE",
        "description": "Sum of squared percentage shares, 0 to 10,000 (one customer).",
    }

    code, out, _ = run_cli(capsys, "marts")
    assert code == 0
    assert out.splitlines()[0] == "dim_customers: One row per customer."
    assert out.splitlines()[1].split() == ["customer_id", "VARCHAR", "The", "customer's", "id."]


@pytest.mark.slow  # dbt's descriptions reach the published file only through a whole run
def test_a_runs_published_marts_describe_every_mart_and_column(first_run, monkeypatch, capsys):
    _, settings = first_run
    monkeypatch.setenv("WAREHOUSE_DATA_DIR", str(settings.data_dir))

    code, out, _ = run_cli(capsys, "marts", "--format", "json")

    assert code == 0
    marts = {m["mart"]: m for m in json.loads(out)}
    assert set(marts) == ALL_MARTS
    for mart in marts.values():
        assert mart["description"]
        assert all(column["description"] for column in mart["columns"]), mart["mart"]
    hhi = next(c for c in marts["fct_revenue_concentration"]["columns"] if c["name"] == "hhi")
    assert hhi["type"] == "DOUBLE" and "10,000" in hhi["description"]
