"""The transform task's operator: Cosmos's `dbt build`, owned by the run.

Cosmos runs dbt in a new session from a temporary copy of the project. This subclass:

- holds the data folder's writer lock for the task (`warehouse.runtime.lock`), so dbt never
  meets another writer's DuckDB lock;
- marks the build for the per-model tasks (`warehouse.transform.results`): removes the last
  build's `run_results.json` first, so a build that dies before writing leaves none, and gives
  dbt a new build id, which it writes into its artifacts and this task into its XCom;
- runs dbt through the launcher of `warehouse.runtime.children`, so dbt dies with the process
  running the task, however it dies, and the temporary copy goes with it;
- stops dbt's process group whenever the task's call to dbt ends without dbt having ended (a
  task timeout, an interrupt), before the task ends or retries;
- starts the run's work for later tasks while it waits for dbt (`warehouse.runtime.warmup`:
  under `warehouse run`, the audit's imports);
- has dbt started by the run's fork server when there is one (`warehouse.runtime.forkserver`:
  under `warehouse run`, dbt imported while the first tasks ran).
"""

from __future__ import annotations

import uuid
from typing import Any

from cosmos.operators.local import DbtBuildLocalOperator

from warehouse.runtime import forkserver, warmup
from warehouse.runtime.children import launcher_command, stop_group
from warehouse.runtime.lock import hold_data_lock
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
        hold = Settings.from_env().children_lock
        warmup.start()  # this thread now waits for dbt; the other core is free
        try:
            launcher = launcher_command(command, hold, cwd, forkserver.address(command))
            return super().run_subprocess(launcher, env, cwd, **kwargs)
        finally:
            stop_group(self.subprocess_hook.sub_process)

    def calculate_openlineage_events_completes(self, *args: Any, **kwargs: Any) -> bool:
        """Not computed: no OpenLineage provider is installed to emit the events, and Cosmos
        would parse dbt's manifest and run results for them after every build (~0.5 s)."""
        return False
