"""Run the floor (floor.sql) on the landing folder into `<data folder>/floor.duckdb` in one
process, with the same DuckDB settings as the pipeline (memory limit, spill folder); both
folders come from the environment, as the pipeline's do."""

from __future__ import annotations

from pathlib import Path

from warehouse import config
from warehouse.db import connect

FLOOR_SQL = Path(__file__).with_name("floor.sql")


def run_floor(data: Path, landing: Path) -> Path:
    database = data / "floor.duckdb"
    with connect(database) as con:
        con.execute("set variable landing = ?", [str(landing)])
        con.execute(FLOOR_SQL.read_text())
    return database


if __name__ == "__main__":
    print(run_floor(config.data_dir(), config.landing_dir()))
