"""The landing sources: which files belong to each, their exact columns and types, and the row
rules a loaded row must pass. Ingestion is generic; everything specific to a file lives here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RowRule:
    """A row is rejected with `reason` when `violated_when` (a SQL predicate) is true.

    Predicates may use `$file_month`: the first day of the month named in the file name
    (`usage_2024_03.csv`), or NULL when the name carries no month.
    """

    reason: str
    violated_when: str


@dataclass(frozen=True)
class Source:
    name: str
    pattern: str  # glob, relative to the landing folder
    table: str  # loaded into raw.<table>
    columns: dict[str, str]  # header name -> DuckDB type, in file order
    required: tuple[str, ...]  # may not be empty
    key: tuple[str, ...]  # a later row with the same key as an earlier one is rejected
    rules: tuple[RowRule, ...] = field(default_factory=tuple)
    # Whether a row whose key another file of the source already loaded is rejected (the
    # source spreads one table over many files, as usage does by month).
    unique_across_files: bool = False

    @property
    def header(self) -> list[str]:
        return list(self.columns)


FILE_MONTH = re.compile(r"(\d{4})_(\d{2})")

CUSTOMERS = Source(
    name="customers",
    pattern="customers.csv",
    table="customers",
    columns={
        "customer_id": "VARCHAR",
        "customer_name": "VARCHAR",
        "parent_company": "VARCHAR",
        "industry": "VARCHAR",
        "segment": "VARCHAR",
        "hq_country": "VARCHAR",
        "is_synthetic": "BOOLEAN",
        "source": "VARCHAR",
    },
    required=(
        "customer_id",
        "customer_name",
        "parent_company",
        "segment",
        "is_synthetic",
    ),
    key=("customer_id",),
)

EARNINGS = Source(
    name="earnings",
    pattern="earnings.csv",
    table="earnings",
    columns={
        "fiscal_year": "INTEGER",
        "fiscal_quarter": "INTEGER",
        "reported_on": "DATE",
        "intelligent_cloud_revenue_usd": "DECIMAL(18,2)",
        "intelligent_cloud_growth_pct": "DECIMAL(6,2)",
        "segment_basis": "VARCHAR",
        "azure_growth_pct": "DECIMAL(6,2)",
        "azure_growth_cc_pct": "DECIMAL(6,2)",
        "azure_consensus_pct": "DECIMAL(6,2)",
        "azure_consensus_basis": "VARCHAR",
        "ai_contribution_pts": "DECIMAL(6,2)",
        "stock_move_pct": "DECIMAL(6,2)",
        "stock_move_window": "VARCHAR",
        "source": "VARCHAR",
        "note": "VARCHAR",
    },
    required=("fiscal_year", "fiscal_quarter", "reported_on", "source"),
    key=("fiscal_year", "fiscal_quarter"),
    rules=(
        RowRule("fiscal_quarter must be 1 to 4", "fiscal_quarter not between 1 and 4"),
        RowRule(
            "fiscal_year out of range 2000-2100",
            "fiscal_year not between 2000 and 2100",
        ),
        RowRule(
            "reported_on is before the fiscal quarter ended",
            # FY N Qq ends in calendar month 3q+6 of year N-1 (fiscal year ends 30 June).
            "reported_on < make_date(fiscal_year - 1, 1, 1) + to_months(3 * fiscal_quarter + 6)",
        ),
    ),
)

USAGE = Source(
    name="usage",
    pattern="spend/*.csv",
    table="usage",
    columns={
        "usage_date": "DATE",
        "customer_id": "VARCHAR",
        "product_line": "VARCHAR",
        "model": "VARCHAR",
        "tokens": "BIGINT",
        "amount_usd": "DECIMAL(18,4)",
    },
    required=(
        "usage_date",
        "customer_id",
        "product_line",
        "model",
        "tokens",
        "amount_usd",
    ),
    key=("usage_date", "customer_id", "product_line", "model"),
    unique_across_files=True,
    rules=(
        RowRule("amount_usd is negative", "amount_usd < 0"),
        RowRule("tokens is negative", "tokens < 0"),
        # TikTok, the largest customer, paid about $20M a month: $100M on one day's line
        # item is a unit or keying error, not revenue.
        RowRule("amount_usd above 100,000,000 for one day is implausible", "amount_usd > 1e8"),
        RowRule(
            "usage_date is outside the month named in the file name",
            "$file_month is not null and date_trunc('month', usage_date) <> $file_month",
        ),
        RowRule(
            "usage_date is out of range 2020-01-01 to 2099-12-31",
            "usage_date not between date '2020-01-01' and date '2099-12-31'",
        ),
        RowRule("usage_date is in the future", "usage_date > current_date"),
        # Customers load first (the DAG's order): spend must belong to a known customer.
        RowRule(
            "customer_id is not in customers.csv",
            "customer_id not in (select customer_id from raw.customers)",
        ),
    ),
)

SOURCES: dict[str, Source] = {s.name: s for s in (CUSTOMERS, EARNINGS, USAGE)}
