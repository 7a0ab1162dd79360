"""Seconds Airflow takes to parse the DAG files, by its own timer: the DagBag's per-file load
statistics, as the dag-processor records them, with Airflow itself loaded first (as it is in
the dag-processor). Prints JSON: the total and each file's time."""

from __future__ import annotations

import json
from pathlib import Path

from airflow.dag_processing.dagbag import DagBag

from warehouse.settings import DAGS_FOLDER

bag = DagBag(dag_folder=str(DAGS_FOLDER))
if bag.import_errors:
    raise SystemExit(f"DAG import errors: {bag.import_errors}")
files = {Path(s.file).name: round(s.duration.total_seconds(), 4) for s in bag.dagbag_stats}
print(json.dumps({"seconds": round(sum(files.values()), 4), "files": files}))
