"""The audit: Great Expectations suites over the marts and the reported claims.

Suites are read from `expectations/marts.yml` and `expectations/claims.yml`, re-created in a GX
file context under `data/gx/` on every run (the YAML is the source, GX's JSON is output), and
run through one checkpoint per suite with a Data Docs action. GX validates pandas dataframes
read from the build database: GX's SQL datasource over duckdb-engine closes its connection
before fetching, so it cannot be used here.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from warehouse.audit import reconcile
from warehouse.db import connect
from warehouse.settings import EXPECTATIONS_DIR, Settings

CLAIMS_SUITE = "claims"
SUITE_FILES = ("marts.yml", "reconciliation.yml")
# A mart may shrink a little between publishes (a restated file) but not collapse, and may
# grow (new months) but not explode.
ROW_COUNT_FLOOR = 0.95
ROW_COUNT_CEILING = 2.0
# Modules GX imports at start-up only for expectations the audit does not use (KL divergence
# and KS tests, their charts): about a third of GX's import time and memory. They are imported
# on first use instead (see `import_gx`).
DEFERRED_BY_GX = ("scipy.stats", "altair")


class _DeferredModule(types.ModuleType):
    """Stands in `sys.modules` for a module until one of its attributes is first used, then
    imports it and passes every attribute through."""

    def __getattr__(self, attr: str):
        if attr.startswith("__"):  # the import system's own look-ups (`__path__`, ...)
            raise AttributeError(attr)
        module = sys.modules.get(self.__name__)
        if module is None or module is self:
            sys.modules.pop(self.__name__, None)
            module = importlib.import_module(self.__name__)
        return getattr(module, attr)


def import_gx():
    """Great Expectations, without importing what only unused expectations need. GX imports
    every expectation class at start-up; `scipy.stats` and `altair` serve only ones the audit
    never runs, so they stay deferred until something uses them."""
    if "great_expectations" not in sys.modules:
        for name in DEFERRED_BY_GX:
            spec = None if name in sys.modules else importlib.util.find_spec(name)
            if spec is not None:
                module = _DeferredModule(name)
                module.__spec__ = spec
                sys.modules[name] = module
    import great_expectations

    return great_expectations


@dataclass
class Check:
    suite: str
    expectation: str
    expected: str
    observed: str
    success: bool
    rule: str
    source: str = ""


@dataclass
class ValidationReport:
    success: bool
    run_id: str | None = None
    checks: list[Check] = field(default_factory=list)
    # Rows and dollars: landing folder = loaded + quarantined (+ rejected rows) = marts.
    reconciliation: dict = field(default_factory=dict)
    seconds: float = 0.0
    data_docs: str = ""

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.success]

    def summary(self) -> dict[str, Any]:
        """What the manifest records: counts per suite, the failures, where the docs are."""
        suites: dict[str, dict[str, int]] = {}
        for check in self.checks:
            counts = suites.setdefault(check.suite, {"evaluated": 0, "failed": 0})
            counts["evaluated"] += 1
            counts["failed"] += not check.success
        return {
            "run_id": self.run_id,
            "success": self.success,
            "evaluated_expectations": len(self.checks),
            "failed_expectations": len(self.failures),
            "suites": suites,
            "failures": [asdict(c) for c in self.failures],
            "seconds": round(self.seconds, 2),
            "data_docs": self.data_docs,
            "reconciliation": self.reconciliation,
        }

    def failure_table(self) -> str:
        return format_failures(self.failures)


def format_failures(failures: list[Check]) -> str:
    """Failed checks as an aligned table, each followed by the rule or claim it guards."""
    rows = [("suite", "expectation", "expected", "observed")]
    rows += [(c.suite, c.expectation, c.expected, c.observed) for c in failures]
    limits = (40, 80, 30, 60)
    widths = [min(max(len(r[i]) for r in rows), limits[i]) for i in range(4)]
    lines = []
    for index, row in enumerate(rows):
        cells = (cell[:width].ljust(width) for cell, width in zip(row, widths, strict=True))
        lines.append("  ".join(cells).rstrip())
        if index:
            check = failures[index - 1]
            source = f" (source: {check.source})" if check.source else ""
            lines.append(f"    why: {check.rule}{source}")
    return "\n".join(lines)


def read_report(settings: Settings) -> dict | None:
    """The last validation's summary, or None before the first validation."""
    path = settings.validation_report
    return json.loads(path.read_text()) if path.exists() else None


def load_specs() -> tuple[dict, list[dict]]:
    """The dataframe suites (the marts', then the reconciliation's) and the claims."""
    suites = {}
    for name in SUITE_FILES:
        suites |= yaml.safe_load((EXPECTATIONS_DIR / name).read_text())["suites"]
    claims = yaml.safe_load((EXPECTATIONS_DIR / "claims.yml").read_text())["claims"]
    return suites, claims


def _claims_suite(claims: list[dict]) -> dict:
    """The claims as a suite over a one-row frame with a column per claim."""
    expectations = []
    for claim in claims:
        meta = {"rule": claim["claim"], "source": claim["source"]}
        expectations.append(
            {
                "type": "expect_column_values_to_not_be_null",
                "kwargs": {"column": claim["name"]},
                **meta,
            }
        )
        bounds = {
            "column": claim["name"],
            "min_value": claim.get("min"),
            "max_value": claim.get("max"),
            "strict_max": claim.get("strict_max", False),
        }
        expectations.append(
            {"type": "expect_column_values_to_be_between", "kwargs": bounds, **meta}
        )
    return {"expectations": expectations}


def _frames(settings: Settings, marts: dict, claims: list[dict]) -> tuple[dict[str, Any], dict]:
    """The dataframe each suite validates, read from the build database, and the
    reconciliation's figures."""
    frames = {}
    with connect(settings.build_db, settings, read_only=True) as con:
        con.register("landing_now", reconcile.landing_now(settings))
        reconciliation = reconcile.figures(con)
        for name, suite in marts.items():
            frames[name] = con.execute(_frame_sql(suite)).df()
        values = {}
        for claim in claims:
            row = con.execute(claim["sql"]).fetchone()
            values[claim["name"]] = [None if row is None or row[0] is None else float(row[0])]
    import pandas as pd

    frames[CLAIMS_SUITE] = pd.DataFrame(values)
    return frames, reconciliation


def _frame_sql(suite: dict) -> str:
    """A suite's query: its own, or its mart's rows. A mart suite with no expectation of its
    own checks only the mart's row count, which needs no column: it reads one constant a row,
    not the mart (1.3M rows of ten columns into pandas for the customer mart at 100M rows)."""
    if suite.get("sql"):
        return suite["sql"]
    columns = "*" if suite["expectations"] else "true as present"
    return f"select {columns} from {suite['table']}"


def _row_count_bounds(previous: dict | None, table: str | None) -> dict[str, float | None]:
    count = ((previous or {}).get("row_counts") or {}).get((table or "").split(".")[-1])
    if count is None:
        return {"min_rows": 1, "max_rows": None}
    return {"min_rows": int(count * ROW_COUNT_FLOOR), "max_rows": int(count * ROW_COUNT_CEILING)}


def _describe_expected(kind: str, kwargs: dict, parameters: dict) -> str:
    if "min_value" in kwargs or "max_value" in kwargs:
        low, high = (
            parameters.get(v["$PARAMETER"]) if isinstance(v, dict) else v
            for v in (kwargs.get("min_value"), kwargs.get("max_value"))
        )
        lower = "" if low is None else f"{low:g} <= "
        upper = "" if high is None else f" {'<' if kwargs.get('strict_max') else '<='} {high:g}"
        return f"{lower}x{upper}"
    if "value_set" in kwargs:
        return f"in {kwargs['value_set']}"
    if "column_A" in kwargs:
        relation = "=" if "equal" in kind else ">"
        return f"{kwargs['column_A']} {relation} {kwargs['column_B']}"
    return kind.removeprefix("expect_").replace("_", " ")


def _describe_observed(result: dict) -> str:
    def show(value: object) -> str:
        return f"{value:.6g}" if isinstance(value, float) else str(value)

    if result.get("observed_value") is not None:
        return show(result["observed_value"])
    sample = result.get("partial_unexpected_list") or []
    if result.get("unexpected_count") == 1 and len(sample) == 1:
        return show(sample[0])  # a single value, as every claim is
    if result.get("unexpected_count"):
        return f"{result['unexpected_count']} rows, e.g. {sample[:3]}"
    if result.get("missing_count"):
        return f"{result['missing_count']} missing (NULL) values"
    return "as expected"


def _gx_expectation(spec: dict, gx):
    kind = spec["type"]
    cls = getattr(gx.expectations, "".join(p.title() for p in kind.split("_")))
    meta = {"rule": spec["rule"], **({"source": spec["source"]} if spec.get("source") else {})}
    return cls(**spec["kwargs"], meta=meta)


def validate(
    settings: Settings, run_id: str | None = None, previous_manifest: dict | None = None
) -> ValidationReport:
    """Run every suite against the build database's marts; the report says what failed."""
    started = time.perf_counter()
    gx = import_gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
    )

    marts, claims = load_specs()
    suites = {**marts, CLAIMS_SUITE: _claims_suite(claims)}
    frames, reconciliation = _frames(settings, marts, claims)

    context = gx.get_context(mode="file", project_root_dir=str(settings.data_dir))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_or_update_pandas("warehouse_marts")
    report = ValidationReport(success=True, run_id=run_id, reconciliation=reconciliation)
    rendered: list = []
    for name, spec in suites.items():
        parameters = _row_count_bounds(previous_manifest, spec.get("table"))
        checkpoint = _checkpoint(gx, context, source, name, spec)
        result = checkpoint.run(
            batch_parameters={"dataframe": frames[name]}, expectation_parameters=parameters
        )
        report.success &= result.success
        report.checks += _checks(name, result, parameters)
        rendered += [ExpectationSuiteIdentifier(name=name), *result.run_results]
    # Once for all suites (per checkpoint it cost ~2 s of a ~3 s validation), and only this
    # run's pages: without them GX renders every validation ever stored again, a cost that
    # grows with every run (the index still lists them all).
    context.build_data_docs(resource_identifiers=rendered)
    report.seconds = time.perf_counter() - started
    report.data_docs = str(settings.data_docs)
    _write_report(report, settings.validation_report)
    return report


def _checkpoint(gx, context, source, name: str, spec: dict):
    """(Re-)create the suite, its dataframe asset and validation definition, and a checkpoint
    that validates them (the Data Docs are built once, after every checkpoint has run)."""
    from great_expectations.checkpoint import Checkpoint

    expectations = [_gx_expectation(e, gx) for e in spec["expectations"]]
    if spec.get("row_count_vs_previous"):
        expectations.append(
            gx.expectations.ExpectTableRowCountToBeBetween(
                min_value={"$PARAMETER": "min_rows"},
                max_value={"$PARAMETER": "max_rows"},
                meta={"rule": "row count within bounds of the previous publish"},
            )
        )
    asset = next((a for a in source.assets if a.name == name), None)
    asset = asset or source.add_dataframe_asset(name)
    batch = next((b for b in asset.batch_definitions if b.name == "whole"), None)
    batch = batch or asset.add_batch_definition_whole_dataframe("whole")
    suite = context.suites.add_or_update(gx.ExpectationSuite(name=name, expectations=expectations))
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=name, data=batch, suite=suite)
    )
    return context.checkpoints.add_or_update(
        Checkpoint(
            name=name,
            validation_definitions=[definition],
            actions=[],
            result_format="SUMMARY",
        )
    )


def _checks(suite: str, result, parameters: dict) -> list[Check]:
    """One Check per expectation outcome of a checkpoint result, in words."""
    checks = []
    for validation in result.run_results.values():
        for outcome in validation.results:
            expectation = outcome.expectation_config
            kwargs = expectation.kwargs
            column = kwargs.get("column") or kwargs.get("column_list") or ""
            checks.append(
                Check(
                    suite=suite,
                    expectation=f"{expectation.type} {column}".strip(),
                    expected=_describe_expected(expectation.type, kwargs, parameters),
                    observed=_describe_observed(outcome.result),
                    success=outcome.success,
                    rule=expectation.meta.get("rule", ""),
                    source=expectation.meta.get("source", ""),
                )
            )
    return checks


def _write_report(report: ValidationReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.summary(), indent=2, default=str))
