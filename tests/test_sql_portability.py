"""The portability lint `make lint` runs on the dbt project: engine-only types and inexact
money arithmetic are found, and the project has none."""

from __future__ import annotations

from pathlib import Path

from warehouse.engines.sql_portability import check_project, check_sql, check_yaml

REPO = Path(__file__).resolve().parents[1]


def rules(sql: str) -> list[tuple[int, str]]:
    return [(f.line, f.rule) for f in check_sql(Path("model.sql"), sql)]


def test_the_dbt_project_is_portable_and_its_money_exact():
    assert check_project(REPO / "dbt_project") == []


def test_engine_only_types_and_casts_are_found():
    assert rules("select cast(a as varchar), b::int, cast(c as hugeint) from t") == [
        (1, "PORT01"),
        (1, "PORT01"),
        (1, "PORT01"),
    ]
    assert rules("select cast(a as string), cast(b as varchar(10)), cast(c as bigint)") == []


def test_inexact_money_arithmetic_is_found():
    sql = "\n".join(
        [
            "select total_usd - top_usd / 2 as halved_usd,",  # DOUBLE on DuckDB
            "cast(spend_usd as double) as spend,",
            "spend_usd * 1e2 as cents,",
            "total_usd - top_usd * 0.5 as exact_usd,",  # exact: DECIMAL times DECIMAL
            "spend_usd / 2 as exempt_usd -- portable: shown as a float on purpose",
            "from t -- a comment may say a_usd / 2",
        ]
    )
    assert rules(sql) == [(1, "PORT02"), (2, "PORT02"), (3, "PORT02")]


def test_contract_types_must_be_portable():
    yml = """
models:
  - name: m
    columns:
      - name: a
        data_type: varchar
      - name: b
        data_type: string
      - name: c
        data_type: decimal(18,2)
      - name: d
        data_type: timestamptz
"""
    found = check_yaml(Path("m.yml"), yml)
    assert [f.message.split(":")[0] for f in found] == ["m.a", "m.d"]
