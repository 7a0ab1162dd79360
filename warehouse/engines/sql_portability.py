"""A lint for the dbt project that sqlfluff's rules cannot express: the models must run
unchanged on DuckDB and on Spark, and money must stay exact.

- **engine-only types** (PORT01): a type one engine lacks or reads differently, in a cast or a
  contract's `data_type` (`varchar` without a length, which Spark refuses; `hugeint`,
  `timestamptz`, unsigned integers, `blob` on DuckDB's side; `binary`, `timestamp_ntz`,
  `array<...>` on Spark's), and DuckDB's `::` cast shorthand;
- **inexact money** (PORT02): a `*_usd` amount divided (`/`: DuckDB turns DECIMAL / INTEGER
  into DOUBLE), cast to a floating-point type, or multiplied by a floating-point literal
  (`1e2`); ratios of money go through the `safe_ratio` macro, which is meant to be a double.

A line ending in the comment `-- portable: <why>` is exempt. Run it with
``python -m warehouse.engines.sql_portability dbt_project`` (`make lint` does).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ENGINE_ONLY_TYPES = (
    # DuckDB (or PostgreSQL) only, or not what Spark means by them
    r"varchar(?!\s*\()",
    r"text",
    r"bpchar",
    r"hugeint",
    r"uhugeint",
    r"ubigint",
    r"uinteger",
    r"usmallint",
    r"utinyint",
    r"timestamptz",
    r"timestamp\s+with\s+time\s+zone",
    r"blob",
    r"bytea",
    r"json",
    r"uuid",
    r"int[1248]",
    r"float[48]",
    # Spark only
    r"binary",
    r"timestamp_ntz",
    r"timestamp_ltz",
    r"array\s*<",
    r"map\s*<",
    r"struct\s*<",
)
_TYPE = "(?:" + "|".join(ENGINE_ONLY_TYPES) + ")"
CAST_TO_ENGINE_ONLY_TYPE = re.compile(rf"\bas\s+{_TYPE}\b|::", re.IGNORECASE)
# Types a contract may name: what both engines call the same thing.
PORTABLE_DATA_TYPE = re.compile(
    r"^(string|boolean|date|timestamp|smallint|integer|int|bigint|double|float|"
    r"decimal\(\s*\d+\s*,\s*\d+\s*\))$",
    re.IGNORECASE,
)

_MONEY = r"\b\w+_usd\b"
MONEY_DIVIDED = re.compile(rf"{_MONEY}\s*\)*\s*/(?![/*])", re.IGNORECASE)
MONEY_TO_FLOAT = re.compile(
    rf"cast\s*\(\s*[^()]*{_MONEY}[^()]*\s+as\s+(double|float|real)\b", re.IGNORECASE
)
MONEY_TIMES_FLOAT = re.compile(
    rf"{_MONEY}\s*\*\s*\d+(\.\d+)?e[+-]?\d+|\d+(\.\d+)?e[+-]?\d+\s*\*\s*{_MONEY}", re.IGNORECASE
)
EXEMPT = re.compile(r"--\s*portable:")
_JINJA_COMMENT = re.compile(r"\{#.*?#\}", re.DOTALL)
_SQL_COMMENT = re.compile(r"--.*$")


@dataclass(frozen=True)
class Finding:
    path: Path
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule} {self.message}"


def _blank_comments(text: str) -> str:
    """Jinja comments become blank lines (line numbers stay right)."""
    return _JINJA_COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def check_sql(path: Path, text: str) -> list[Finding]:
    findings = []
    for number, raw in enumerate(_blank_comments(text).splitlines(), start=1):
        if EXEMPT.search(raw):
            continue
        line = _SQL_COMMENT.sub("", raw)
        for match in CAST_TO_ENGINE_ONLY_TYPE.finditer(line):
            findings.append(
                Finding(path, number, "PORT01", f"engine-only type or cast: {match.group(0)!r}")
            )
        for pattern, what in (
            (MONEY_DIVIDED, "money divided (DECIMAL / INTEGER is DOUBLE on DuckDB)"),
            (MONEY_TO_FLOAT, "money cast to floating point"),
            (MONEY_TIMES_FLOAT, "money times a floating-point literal"),
        ):
            for match in pattern.finditer(line):
                findings.append(Finding(path, number, "PORT02", f"{what}: {match.group(0)!r}"))
    return findings


def check_yaml(path: Path, text: str) -> list[Finding]:
    findings = []
    lines = text.splitlines()
    document = yaml.safe_load(text) or {}
    for model in document.get("models") or []:
        for column in model.get("columns") or []:
            data_type = column.get("data_type")
            if data_type is None or PORTABLE_DATA_TYPE.match(str(data_type).strip()):
                continue
            name = column.get("name")
            number = next(
                (i for i, line in enumerate(lines, start=1) if f"data_type: {data_type}" in line),
                0,
            )
            findings.append(
                Finding(
                    path,
                    number,
                    "PORT01",
                    f"{model.get('name')}.{name}: data_type {data_type!r} is not portable "
                    "(use string, boolean, date, timestamp, integer, bigint, double, "
                    "decimal(p,s))",
                )
            )
    return findings


def check_project(project: Path) -> list[Finding]:
    findings: list[Finding] = []
    for folder in ("models", "macros", "tests", "snapshots", "analyses"):
        root = project / folder
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*.sql")):
            findings += check_sql(path, path.read_text())
        for path in sorted([*root.rglob("*.yml"), *root.rglob("*.yaml")]):
            findings += check_yaml(path, path.read_text())
    return findings


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    project = Path(args[0] if args else "dbt_project")
    findings = check_project(project)
    for finding in findings:
        print(finding)
    print(f"sql portability: {len(findings)} finding(s) in {project}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
