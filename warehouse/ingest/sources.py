"""The landing sources: which files belong to each, their exact columns and types, and the rules
a loaded row must pass. Ingestion is generic; everything specific to a file lives here.

Two kinds of rule. A row that breaks an intrinsic rule (a value that is not exactly of its
type, a negative amount, a date outside its file's month) is rejected for good: only a new
version of its file can change it. A row that breaks a rule about other data (a customer not
yet in customers.csv, a key another file holds) is quarantined: it is checked again on every
run, and loaded as soon as the rule holds, with no re-delivery.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from warehouse.reference import ACCEPTED

# How a value of each column type must be written: exactly, or the row is rejected (never
# rounded, never read as hex or in scientific notation). A date has no pattern: it is what
# DuckDB's parser reads with DATE_FORMAT, on both paths (`2024-3-5` is March 5th; `20240305`,
# `2024/03/05` and `2024-02-30` are not dates).
EXACT_TYPES = {
    "BIGINT": (r"-?[0-9]{1,18}", "a whole number"),
    "INTEGER": (r"-?[0-9]{1,9}", "a whole number"),
    "DATE": (None, "a date (YYYY-MM-DD)"),
    "BOOLEAN": (r"(?i)true|false", "true or false"),
}
DATE_FORMAT = "%Y-%m-%d"
DECIMAL = re.compile(r"DECIMAL\((\d+),(\d+)\)")
# Ids are lowercase letters, digits and underscores: `CUS_TIKTOK` is not `cus_tiktok` by
# accident of case, it is rejected, so one customer can never load as two.
IDENTIFIER = (r"[a-z0-9_]+", "lowercase letters, digits and _")


@dataclass(frozen=True)
class RowRule:
    """A row is rejected with `reason` when `violated_when` (a SQL predicate) is true.

    Predicates may use `$file_month`: the first day of the month named in the file name
    (`usage_2024_03.csv`).
    """

    reason: str
    violated_when: str


@dataclass(frozen=True)
class Reference:
    """A column whose value must exist in another source's table (quarantined until it does)."""

    column: str
    table: str  # raw.<table>
    reason: str


@dataclass(frozen=True)
class Freshness:
    """When a source's next delivery is due, and how late is a warning or an error.

    `covered_until` is SQL over the build database giving the first day after the newest period
    the source has delivered. The next period (`every_months` long) is due on day `due_day`
    after it ends; a run whose logical date is more than `warn_after_days` past that is warned
    about, more than `error_after_days` past is an error (it fails the run before publish when
    WAREHOUSE_STALE_SOURCES is `fail`).
    """

    covered_until: str
    every_months: int
    due_day: int
    warn_after_days: int
    error_after_days: int
    cadence: str  # in words, for the summary and the alert


@dataclass(frozen=True)
class Source:
    name: str
    table: str  # loaded into raw.<table>
    columns: dict[str, str]  # header name -> DuckDB type, in file order
    required: tuple[str, ...]  # may not be empty (nor blank)
    key: tuple[str, ...]  # a later row with the same key as an earlier one is rejected
    rules: tuple[RowRule, ...] = field(default_factory=tuple)
    # One file at the top of the landing folder (`customers.csv`), or the monthly files of a
    # folder (`spend/usage_2024_03.csv`), each named for its month.
    file_name: str | None = None
    folder: str | None = None
    identifiers: tuple[str, ...] = ()  # columns holding ids (IDENTIFIER)
    accepted: dict[str, tuple[str, ...]] = field(default_factory=dict)  # column -> values
    references: tuple[Reference, ...] = ()
    # Whether a row whose key another file of the source holds is quarantined (the source
    # spreads one table over many files, as usage does by month).
    unique_across_files: bool = False
    freshness: Freshness | None = None

    @property
    def header(self) -> list[str]:
        return list(self.columns)

    @property
    def monthly(self) -> bool:
        return self.folder is not None


# The month a monthly file is for: the first `YYYY_MM` in its name (`usage_2024_03.csv`,
# `usage_2024_03_v2.csv.gz`); a name without a valid month is refused.
FILE_MONTH = re.compile(r"(\d{4})_(\d{2})")
# What a landing file's name may end with; DuckDB reads gzip-compressed CSV natively.
CSV_SUFFIXES = (".csv", ".csv.gz")

CUSTOMERS = Source(
    name="customers",
    file_name="customers",
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
    identifiers=("customer_id",),
    accepted={"segment": tuple(ACCEPTED["segments"])},
    # A reference list without dates: its delivery (the current file's load) counts, once a year.
    freshness=Freshness(
        covered_until="select max(loaded_at)::date + 1 from ingest.current_files "
        "where source = 'customers'",
        every_months=12,
        due_day=1,
        warn_after_days=0,
        error_after_days=90,
        cadence="the customer list, re-delivered at least once a year",
    ),
)

EARNINGS = Source(
    name="earnings",
    file_name="earnings",
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
    # Each fiscal quarter's results, within 45 days of its end (Microsoft reports in about 4
    # weeks); the quarter after the newest one reported ends 3 months after it.
    freshness=Freshness(
        covered_until="select max(make_date(fiscal_year - 1, 1, 1) + to_months(3 * fiscal_quarter"
        " + 6))::date from raw.earnings",
        every_months=3,
        due_day=45,
        warn_after_days=0,
        error_after_days=45,
        cadence="each fiscal quarter's results by day 45 after the quarter ends",
    ),
)

USAGE = Source(
    name="usage",
    folder="spend",
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
    identifiers=("customer_id",),
    accepted={"product_line": tuple(ACCEPTED["product_lines"])},
    unique_across_files=True,
    rules=(
        # A credit note or refund is not usage: the marts report charges, so a credit is
        # rejected by name rather than netted silently into a month's revenue.
        RowRule(
            "amount_usd is negative (a credit note?): spend files carry charges only",
            "amount_usd < 0",
        ),
        RowRule("tokens is negative", "tokens < 0"),
        # TikTok, the largest customer, paid about $20M a month: $100M on one day's line
        # item is a unit or keying error, not revenue.
        RowRule("amount_usd above 100,000,000 for one day is implausible", "amount_usd > 1e8"),
        RowRule(
            "usage_date is out of range 2020-01-01 to 2099-12-31",
            "usage_date not between date '2020-01-01' and date '2099-12-31'",
        ),
        RowRule(
            "usage_date is outside the month named in the file name",
            "date_trunc('month', usage_date) <> $file_month",
        ),
        RowRule("usage_date is in the future", "usage_date > current_date"),
    ),
    # Customers load first (the DAG's order); spend for a customer not yet registered waits in
    # quarantine until customers.csv has it.
    references=(Reference("customer_id", "customers", "customer_id is not in customers.csv"),),
    # The file for month M by day 5 of month M+1; a month missed entirely is an error.
    freshness=Freshness(
        # The loaded months as the loaded totals hold them, not from every row of raw.
        covered_until="select (max(month) + interval 1 month)::date from ingest.loaded_totals",
        every_months=1,
        due_day=5,
        warn_after_days=0,
        error_after_days=31,
        cadence="the file for month M by day 5 of month M+1",
    ),
)

SOURCES: dict[str, Source] = {s.name: s for s in (CUSTOMERS, EARNINGS, USAGE)}
