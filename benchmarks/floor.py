"""The floor: the contract marts computed straight from the landing files by one DuckDB script
(floor.sql), in one process, with none of the pipeline's guarantees.

Two users: the benchmarks time it as the least the same answer can cost, and the tests use it
as an independent oracle: a pipeline run with no fault must publish exactly its marts.
"""

from __future__ import annotations

from pathlib import Path

from warehouse.db import connect
from warehouse.settings import Settings

FLOOR_SQL = Path(__file__).with_name("floor.sql")
# The contract marts (README.md, The dbt project), which floor.sql computes under the same names.
CONTRACT_MARTS = (
    "dim_customers",
    "fct_customer_monthly_spend",
    "fct_segment_monthly_spend",
    "fct_revenue_concentration",
    "fct_quarterly_earnings",
)


def run_floor(settings: Settings) -> Path:
    """Compute the floor over the settings' landing folder into `<data folder>/floor.duckdb`."""
    database = settings.data_dir / "floor.duckdb"
    with connect(database, settings) as con:
        con.execute("set variable landing = ?", [str(settings.landing_dir)])
        con.execute(FLOOR_SQL.read_text())
    return database


if __name__ == "__main__":
    print(run_floor(Settings.from_env()))
