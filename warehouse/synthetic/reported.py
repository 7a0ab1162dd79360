"""The public, reported figures the landing files carry as they were reported (see
seeds/README.md and the sources in each row).

They are data, not code: `reported/customers.csv` (the real customers named in the reports) and
`reported/earnings.csv` (Microsoft's quarterly results), each row with its `source`, in the
landing sources' own columns. Nothing here is generated; an empty cell means not confirmed and
stays NULL, never invented.
"""

from __future__ import annotations

import csv
from pathlib import Path

from warehouse.ingest.sources import CUSTOMERS, EARNINGS, Source

REPORTED_DIR = Path(__file__).with_name("reported")


def _rows(name: str, source: Source) -> list[dict[str, str]]:
    with (REPORTED_DIR / name).open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames != source.header:
            raise ValueError(f"{REPORTED_DIR / name}: columns must be {source.header}")
        return list(reader)


def real_customers() -> list[dict[str, str]]:
    """The real customers the reports name, as `customers.csv` rows (text, as written)."""
    return _rows("customers.csv", CUSTOMERS)


def earnings_rows() -> list[dict[str, str]]:
    """Microsoft's reported quarters, as `earnings.csv` rows (text, as written)."""
    return _rows("earnings.csv", EARNINGS)
