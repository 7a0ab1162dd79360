"""Reconciliation with the landing folder, on every run: the inputs the reconciliation suites
(expectations/reconciliation.yml) read, and the figures the manifest and the summary quote.

"Rows lost" is counted, never assumed: the rows in the landing folder's files now must equal
the rows loaded plus those quarantined plus those rejected, and every dollar the files hold
(in rows that break no rule of their own) must be loaded or quarantined.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import duckdb

from warehouse.ingest.landing import display_path, take_inventory
from warehouse.settings import Settings

if TYPE_CHECKING:  # pandas is imported when used: the run's summary imports this module
    import pandas as pd

FIGURES_SQL = """
select
    (select count(*) from landing_now where file_path like 'spend/%') as usage_files,
    (select coalesce(sum(rows_in_file), 0) from ingest.current_files where source = 'usage'
        and file_path in (select file_path from landing_now)) as rows_in_landing,
    (select count(*) from raw.usage) as rows_loaded,
    (select count(*) from ingest.usage_quarantine) as rows_quarantined,
    (select count(*) from ingest.rejects where source = 'usage') as rows_rejected,
    (select coalesce(sum(amount_usd), 0) from ingest.file_totals where source = 'usage'
        and file_path in (select file_path from landing_now)) as landing_usd,
    (select coalesce(sum(amount_usd), 0) from ingest.loaded_totals) as loaded_usd,
    (select coalesce(sum(amount_usd), 0) from ingest.usage_quarantine) as quarantined_usd,
    (select coalesce(sum(total_spend_usd), 0) from marts.fct_revenue_concentration
        where level = 'customer') as marts_usd
"""


def landing_now(settings: Settings) -> pd.DataFrame:
    """Every file of a source in the landing folder now, with its size in bytes."""
    import pandas as pd

    inventory = take_inventory(settings.landing_dir)
    paths = [path for files in inventory.files.values() for path in files]
    return pd.DataFrame(
        {
            "file_path": [display_path(p, settings.landing_dir) for p in paths],
            "size_bytes": [p.stat().st_size for p in paths],
        },
        columns=["file_path", "size_bytes"],
    ).astype({"file_path": "object", "size_bytes": "int64"})


def figures(con: duckdb.DuckDBPyConnection) -> dict[str, int | str]:
    """The run's reconciliation in numbers (money as exact decimal text); `landing_now` must be
    registered on the connection."""
    cursor = con.execute(FIGURES_SQL)
    names = [column[0] for column in cursor.description]
    values = dict(zip(names, cursor.fetchone(), strict=True))
    return {name: value if isinstance(value, int) else str(value) for name, value in values.items()}
