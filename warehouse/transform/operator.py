"""The transform task's operator: Cosmos's `dbt build`, owned by the run.

What it adds to Cosmos, and why: the data folder's writer lock for the task (dbt never meets
another writer); a fresh build id, and the last `run_results.json` removed first, so the
per-model tasks read this build's results or none (`warehouse.transform.results`); and dbt run
through the launcher of `warehouse.runtime.children` and stopped when the task's call to it
ends early, so no dbt outlives its task however the task ends.
"""

from __future__ import annotations

import uuid
from typing import Any

from cosmos.operators.local import DbtBuildLocalOperator

from warehouse.lock import hold_data_lock
from warehouse.runtime.children import launcher_command
from warehouse.runtime.processes import terminate, tree
from warehouse.settings import Settings
from warehouse.transform.results import BUILD_ENV, BUILD_XCOM


class OwnedDbtBuildOperator(DbtBuildLocalOperator):
    """`dbt build` whose process ends with the task, under the data folder's lock."""

    def execute(self, context: Any, **kwargs: Any) -> None:
        settings = Settings.from_env()
        with hold_data_lock(settings, f"task {self.task_id}", context.get("run_id")):
            # Under the lock: another run's dbt may be writing the target folder until then.
            settings.dbt_run_results.unlink(missing_ok=True)
            build = uuid.uuid4().hex
            context["ti"].xcom_push(key=BUILD_XCOM, value=build)
            self.env = {**(self.env or {}), BUILD_ENV: build}
            return super().execute(context, **kwargs)

    def run_subprocess(self, command: list[str], env: dict[str, str], cwd: str, **kwargs: Any):
        launcher = launcher_command(command, Settings.from_env().children_lock, cwd)
        try:
            return super().run_subprocess(launcher, env, cwd, **kwargs)
        finally:  # a task timeout or an interrupt: dbt ends before the task ends or retries
            started = self.subprocess_hook.sub_process
            if started is not None and started.poll() is None:
                terminate(tree(started.pid))

    def calculate_openlineage_events_completes(self, *args: Any, **kwargs: Any) -> bool:
        """Not computed: no OpenLineage provider is installed to emit the events, and Cosmos
        would parse dbt's manifest and run results for them after every build (~0.5 s)."""
        return False
