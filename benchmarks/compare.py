"""Two builds' marts held against each other: the tests' check that Spark builds the marts
DuckDB builds (money to the cent, ratios to 1e-9, exact DECIMAL money).

``python -m benchmarks.compare --duckdb data/build.duckdb --spark-data data`` compares Spark's
marts (read as Parquet through DuckDB) with a DuckDB build's; it exits 1 when they differ.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb

from warehouse.engines.spark.load import MARTS_SCHEMA, spark_tables
from warehouse.settings import Settings


def spark_marts(settings: Settings) -> dict[str, str]:
    """The marts Spark built, as DuckDB `read_parquet` calls."""
    return spark_tables(settings, MARTS_SCHEMA)


def duckdb_marts(build_db: Path) -> dict[str, str]:
    con = duckdb.connect(str(build_db), read_only=True)
    try:
        names = [
            row[0]
            for row in con.execute(
                "select table_name from information_schema.tables where table_schema = ? "
                "order by 1",
                [MARTS_SCHEMA],
            ).fetchall()
        ]
    finally:
        con.close()
    return {name: f"build.{MARTS_SCHEMA}.{name}" for name in names}


def _rows(
    con: duckdb.DuckDBPyConnection, relation: str
) -> tuple[list[str], list[str], list[tuple]]:
    described = con.execute(f"describe select * from {relation}").fetchall()
    names = [row[0] for row in described]
    types = [row[1] for row in described]
    return names, types, con.execute(f"select * from {relation}").fetchall()


def _is_float(type_: str) -> bool:
    return type_ in ("DOUBLE", "FLOAT", "REAL")


@dataclass
class MartComparison:
    mart: str
    rows_expected: int
    rows_actual: int
    problems: list[str]

    @property
    def equal(self) -> bool:
        return not self.problems


def compare_marts(
    expected: dict[str, str],
    actual: dict[str, str],
    *,
    attach: dict[str, Path] | None = None,
    tolerance: float = 1e-9,
) -> list[MartComparison]:
    """Hold every mart of `expected` against the one of the same name in `actual` (relations
    as DuckDB SQL, e.g. from :func:`duckdb_marts` and :func:`spark_marts`; `attach` names
    DuckDB files to attach read-only under an alias). Rows are matched on their exact columns
    (everything but floating point); DECIMAL money must be equal to the cent, doubles
    (shares, growth, HHI) within `tolerance`, relative or absolute."""
    con = duckdb.connect()
    for alias, path in (attach or {}).items():
        con.execute(f"attach '{path}' as {alias} (read_only)")
    results = []
    try:
        for mart, relation in expected.items():
            problems: list[str] = []
            if mart not in actual:
                results.append(MartComparison(mart, 0, 0, ["missing"]))
                continue
            e_names, e_types, e_rows = _rows(con, relation)
            a_names, a_types, a_rows = _rows(con, actual[mart])
            if sorted(e_names) != sorted(a_names):
                problems.append(f"columns differ: {e_names} vs {a_names}")
                results.append(MartComparison(mart, len(e_rows), len(a_rows), problems))
                continue
            for name, e_type in zip(e_names, e_types, strict=True):
                a_type = a_types[a_names.index(name)]
                if e_type != a_type:
                    problems.append(f"type of {name}: {e_type} vs {a_type}")
            order = [a_names.index(n) for n in e_names]
            a_rows = [tuple(row[i] for i in order) for row in a_rows]
            exact = [i for i, t in enumerate(e_types) if not _is_float(t)]
            floats = [i for i, t in enumerate(e_types) if _is_float(t)]

            def key(row: tuple, exact: list[int] = exact) -> tuple:
                return tuple((row[i] is None, str(row[i])) for i in exact)

            e_index: dict[tuple, list[tuple]] = {}
            for row in e_rows:
                e_index.setdefault(key(row), []).append(row)
            unmatched = 0
            for row in a_rows:
                candidates = e_index.get(key(row))
                if not candidates:
                    unmatched += 1
                    if unmatched <= 3:
                        problems.append(f"row not expected: {dict(zip(e_names, row, strict=True))}")
                    continue
                best = candidates.pop()
                for i in floats:
                    x, y = best[i], row[i]
                    if (x is None) != (y is None) or (
                        x is not None
                        and not math.isclose(x, y, rel_tol=tolerance, abs_tol=tolerance)
                    ):
                        where = dict(zip(e_names, row, strict=True))
                        problems.append(f"{e_names[i]}: {x!r} vs {y!r} in {where}")
            if unmatched > 3:
                problems.append(f"... {unmatched} rows not expected in all")
            missing = sum(len(rows) for rows in e_index.values())
            if missing:
                problems.append(f"{missing} expected rows missing")
            results.append(MartComparison(mart, len(e_rows), len(a_rows), problems))
        for mart in actual:
            if mart not in expected:
                results.append(MartComparison(mart, 0, 0, ["not expected"]))
    finally:
        con.close()
    return results


def money_columns_exact(relations: dict[str, str]) -> list[str]:
    """Every `*_usd` column of the marts is DECIMAL with two places (never floating point)."""
    con = duckdb.connect()
    problems = []
    try:
        for mart, relation in relations.items():
            for name, type_, *_ in con.execute(f"describe select * from {relation}").fetchall():
                if name.endswith("_usd") and type_ != "DECIMAL(18,2)":
                    problems.append(f"{mart}.{name} is {type_}")
    finally:
        con.close()
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.compare",
        description="compare Spark's marts with a DuckDB build's",
    )
    parser.add_argument("--duckdb", type=Path, required=True, help="a build.duckdb")
    parser.add_argument("--spark-data", type=Path, required=True, help="Spark's data folder")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    results = compare_marts(
        duckdb_marts(args.duckdb),
        spark_marts(settings.with_folders(data_dir=args.spark_data)),
        attach={"build": args.duckdb},
    )
    for result in results:
        state = "equal" if result.equal else "DIFFERENT"
        print(f"{result.mart}: {result.rows_expected} vs {result.rows_actual} rows, {state}")
        for problem in result.problems[:10]:
            print(f"    {problem}")
    return 0 if all(r.equal for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
