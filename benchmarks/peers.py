"""What a user would otherwise do to load the usage files, for comparison with our ingest:

- `dbt seed`: the files as seeds of a throwaway dbt project on a DuckDB file;
- pandas: the common tutorial pattern, `pandas.read_csv` per file, then an insert into DuckDB.

Each checks that every row arrived.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb

from warehouse.ingest import scan_file
from warehouse.settings import Settings
from warehouse.transform.dbt import dbt_env


def _usage_files(landing: Path) -> list[Path]:
    return sorted((landing / "spend").glob("*.csv"))


def usage_rows(landing: Path) -> int:
    """The usage rows in the landing folder, counted as ingestion counts them."""
    return sum(scan_file(path).rows_in_file for path in _usage_files(landing))


def pandas_insert(settings: Settings) -> int:
    import pandas as pd

    data = settings.data_dir
    with duckdb.connect(str(data / "pandas.duckdb")) as con:
        for path in _usage_files(settings.landing_dir):
            frame = pd.read_csv(path)  # noqa: F841 (read by DuckDB by name)
            con.execute("create table if not exists usage as select * from frame limit 0")
            con.execute("insert into usage select * from frame")
        return con.execute("select count(*) from usage").fetchone()[0]


def dbt_seed(settings: Settings) -> int:
    data = settings.data_dir
    project = data / "seed_project"
    (project / "seeds").mkdir(parents=True)
    for path in _usage_files(settings.landing_dir):
        shutil.copy2(path, project / "seeds" / path.name)
    # The types a user must give dbt: its inference takes tokens for a 32-bit INTEGER.
    (project / "dbt_project.yml").write_text(
        'name: seed_peer\nversion: "1.0"\nprofile: seed_peer\nseed-paths: ["seeds"]\n'
        "seeds:\n  seed_peer:\n    +column_types:\n"
        "      tokens: bigint\n      amount_usd: decimal(18,4)\n"
    )
    (project / "profiles.yml").write_text(
        "seed_peer:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
        f"      path: {data / 'seed.duckdb'}\n      threads: 2\n"
    )
    subprocess.run(
        [
            str(settings.dbt_executable),
            "seed",
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(project),
        ],
        check=True,
        env={**os.environ, **dbt_env(settings)},
        cwd=project,
    )
    with duckdb.connect(str(data / "seed.duckdb"), read_only=True) as con:
        tables = con.execute("select table_name from duckdb_tables()").fetchall()
        return sum(con.execute(f'select count(*) from "{t}"').fetchone()[0] for (t,) in tables)


PEERS = {"pandas": pandas_insert, "dbt-seed": dbt_seed}

if __name__ == "__main__":
    settings = Settings.from_env()
    loaded, expected = PEERS[sys.argv[1]](settings), usage_rows(settings.landing_dir)
    if loaded != expected:
        raise SystemExit(f"{sys.argv[1]} loaded {loaded} rows, expected {expected}")
    print(f"{sys.argv[1]}: {loaded} rows")
