"""Whether a run has anything to rebuild since the last publish, which neither Airflow nor dbt
can tell: Airflow skips tasks when one says so (`@task.short_circuit`) but knows nothing of the
data, and dbt's incremental models still run every model and test, the audit every suite, and
publish would rewrite the same marts.

The answer compares what the last publish was built from, recorded in its manifest under
`inputs`, with what the build would read now:

- `ledger`: the ingestion ledger's current state (`ingest.current_files`: each landing file the
  build database holds, with its content hash and the time its latest version was loaded), so a
  new, restated, re-evaluated or retracted file changes it;
- `dbt_project`: every file of the dbt project (models, macros, tests, `dbt_project.yml`, ...),
  so a changed model, test or description (which publish carries as comments) changes it;
- `expectations`: the audit's suites and claims (`expectations/*.yml`);
- `build`: the engine and dbt target the marts were built with;
- `serve`: the PostgreSQL target the marts were also served from (none when unset), so a newly
  configured or moved target gets this build's marts.

A run asked for a full refresh, a data folder with no publish (or a publish whose files are
gone), or a manifest without `inputs` (written before them) always rebuilds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from warehouse.db import connect
from warehouse.publish.release import read_manifest
from warehouse.settings import DBT_PROJECT_DIR, EXPECTATIONS_DIR, Settings

# What dbt writes inside its project folder; not part of what the marts are built from.
_DBT_OUTPUT = {"target", "logs", "dbt_packages"}

# Each current landing file's version, in a fixed order (the time as microseconds, so the
# session's time zone does not change the text).
_LEDGER_SQL = """
select source, file_path, sha256, epoch_us(loaded_at), rows_loaded, rows_quarantined
from ingest.current_files
order by source, file_path
"""


def _hash_files(root: Path, files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def project_files(root: Path) -> list[Path]:
    """The dbt project's own files: not dbt's output folders, not hidden files."""
    return [
        path
        for path in root.rglob("*")
        if path.is_file()
        and not any(
            part in _DBT_OUTPUT or part.startswith(".") for part in path.relative_to(root).parts
        )
    ]


def ledger_fingerprint(settings: Settings) -> str:
    """A hash of the ledger's current state (every source's current files and versions)."""
    digest = hashlib.sha256()
    with connect(settings.build_db, settings, read_only=True) as con:
        for row in con.execute(_LEDGER_SQL).fetchall():
            digest.update(repr(row).encode() + b"\n")
    return digest.hexdigest()


def current_inputs(settings: Settings) -> dict[str, str]:
    """What a build now would be built from, as the manifest records it (`inputs`)."""
    return {
        "ledger": ledger_fingerprint(settings),
        "dbt_project": _hash_files(DBT_PROJECT_DIR, project_files(DBT_PROJECT_DIR)),
        "expectations": _hash_files(EXPECTATIONS_DIR, list(EXPECTATIONS_DIR.glob("*.yml"))),
        "build": f"{settings.engine}/{settings.dbt_target}",
        "serve": _serve_target(settings),
    }


def _serve_target(settings: Settings) -> str:
    if not settings.serve_postgres_url:
        return "none"
    from warehouse.publish.postgres import describe_target  # psycopg only when it is served

    return describe_target(settings.serve_postgres_url)


# What each input is called when it is the reason to rebuild.
_CHANGED = {
    "ledger": "landing files changed (loaded, restated, re-evaluated or retracted)",
    "dbt_project": "the dbt project changed",
    "expectations": "the expectations changed",
    "build": "the engine or dbt target changed",
    "serve": "the PostgreSQL serving target changed",
}


@dataclass(frozen=True)
class Decision:
    rebuild: bool
    reason: str  # one line, for the log
    inputs: dict[str, str]  # to record in the next publish's manifest


def nothing_changed(manifest: dict) -> str:
    """The one line a run with nothing to rebuild says."""
    return (
        f"nothing changed since run {manifest['run_id']}, published at {manifest['published_at']}"
    )


def decide(settings: Settings, full_refresh: bool = False) -> Decision:
    """Rebuild, or not, and why, against the last publish's manifest."""
    inputs = current_inputs(settings)
    manifest = read_manifest(settings)
    if full_refresh:
        return Decision(True, "full refresh asked: rebuilding every model", inputs)
    if manifest is None:
        return Decision(True, "no publish yet: building", inputs)
    published = [settings.published_db] + [
        settings.data_dir / path for path in manifest.get("exports", {}).values()
    ]
    if missing := [str(path) for path in published if not path.exists()]:
        return Decision(True, f"published files missing ({', '.join(missing)}): rebuilding", inputs)
    recorded = manifest.get("inputs")
    if not recorded:
        return Decision(True, f"run {manifest['run_id']} recorded no inputs: rebuilding", inputs)
    changed = [_CHANGED[key] for key in _CHANGED if recorded.get(key) != inputs[key]]
    if changed:
        since = f"since run {manifest['run_id']}"
        return Decision(True, f"{'; '.join(changed)} {since}: rebuilding", inputs)
    return Decision(False, nothing_changed(manifest), inputs)
