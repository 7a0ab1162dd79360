"""`make bench`: what the pipeline costs at scale, against the floor and the usual alternatives.

Every measurement is a whole process, timed from outside (wall clock) with its peak memory:
the largest total resident memory of the process and all its children, sampled every 20 ms.
On generated landing folders (`warehouse generate --rows N`), per scale:

- pipeline stages, each its own process on a fresh data folder: ingest (`warehouse ingest`),
  dbt build, validation (GX) and publish; then the PostgreSQL publish of that folder's marts
  (into a throwaway server, when PostgreSQL 15 is installed), with the rows it loads;
- the whole pipeline DAG run (`warehouse run --no-report`: Airflow's dag.test(), Cosmos, dbt,
  GX, publish) on a fresh data folder;
- the floor: `benchmarks/floor.sql`, the contract marts straight from the files in one DuckDB
  process, checked to give the same marts as the pipeline;
- peers loading the same usage files: `dbt seed` and pandas `read_csv` + DuckDB insert;
- history: the DAG rerun with one month added and with nothing new, at 7, 12 and 24 months of
  history (`HISTORY`; 24 is the whole folder, against the whole DAG run on all of it).

Results go to `benchmarks/results/<scale>.json`, a table is printed, and the results section of
`benchmarks/README.md` is rewritten from every results file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import psutil

from benchmarks.floor import CONTRACT_MARTS
from benchmarks.peers import usage_rows
from warehouse.ingest import scan_file
from warehouse.settings import DAG_ID, REPO_ROOT, Settings

BENCH_DIR = REPO_ROOT / "benchmarks"
SCALES = {"seeds": None, "1M": 1_000_000, "10M": 10_000_000, "100M": 100_000_000}
# Where a month added and nothing new are measured (issue 22: flat in the history is the aim):
# (first month, month added) of the generated usage files; a point's history is the months
# between them. Every run must hold 2024-01 to 2024-06, the months the claims suite checks
# (expectations/claims.yml), so the shortest history is 2024-01 to 2024-07: 7 months. Points
# with the same first month grow one landing folder; the last is the whole folder.
HISTORY = (("2024_01", "2024_07"), ("2024_01", "2024_12"), ("2023_01", "2024_12"))
PYTHON = sys.executable
WAREHOUSE = [PYTHON, "-m", "warehouse.cli"]


@dataclass
class Sample:
    seconds: float
    peak_mib: float
    # A DAG run's: each task's seconds (a mapped task's summed), and the run's wall time
    # outside them (Airflow starting the run and its tasks).
    tasks: dict[str, float] | None = None


def dag_run_tasks(airflow_home: Path, wall_seconds: float) -> dict[str, float]:
    """Where the newest pipeline DAG run's time went, from Airflow's metadata database (the
    SQLite file `warehouse run` uses): each task's seconds, largest first."""
    with contextlib.closing(sqlite3.connect(airflow_home / "airflow.db")) as db:
        rows = db.execute(
            "select task_id, start_date, end_date from task_instance where dag_id = ? and "
            "run_id = (select run_id from dag_run where dag_id = ? order by id desc limit 1) "
            "and start_date is not null and end_date is not null",
            [DAG_ID, DAG_ID],
        ).fetchall()
    tasks: dict[str, float] = {}
    for task, start, end in rows:
        seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
        tasks[task] = tasks.get(task, 0.0) + seconds
    tasks = dict(sorted(((t, round(s, 2)) for t, s in tasks.items()), key=lambda i: -i[1]))
    return {**tasks, "(outside the tasks)": round(wall_seconds - sum(tasks.values()), 2)}


def measure(command: list[str], env: dict[str, str], log: Path) -> Sample:
    """Run `command`; its wall time and the peak total RSS of its process tree."""
    started = time.perf_counter()
    with log.open("ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        parent = psutil.Process(process.pid)
        while not done.is_set():
            try:
                tree = [parent, *parent.children(recursive=True)]
                total = 0
                for member in tree:
                    with contextlib.suppress(psutil.Error):  # a child that just ended
                        total += member.memory_info().rss
                peak = max(peak, total)
            except psutil.Error:
                return
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    returncode = process.wait()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(command[:4])} … failed ({returncode}); {log}:\n{tail}")
    return Sample(round(seconds, 3), round(peak / 2**20, 1))


@dataclass
class Result:
    name: str
    samples: list[Sample]
    rows: int | None = None

    @property
    def seconds(self) -> float:
        return statistics.median(s.seconds for s in self.samples)

    @property
    def peak_mib(self) -> float:
        return max(s.peak_mib for s in self.samples)

    def to_dict(self) -> dict:
        return {
            "median_seconds": round(self.seconds, 3),
            "peak_mib": self.peak_mib,
            "rows": self.rows,
            "runs": [{k: v for k, v in asdict(s).items() if v is not None} for s in self.samples],
        }


class Bench:
    """One scale's measurements, in a work folder of its own."""

    def __init__(self, scale: str, work: Path, repeats: int):
        self.scale, self.rows, self.repeats = scale, SCALES[scale], repeats
        self.work = work / scale
        self.landing = self.work / "landing"
        self.log = self.work / "bench.log"
        self.results: dict[str, Result] = {}
        self.history_points: dict[str, dict] = {}
        self.settings = replace(
            Settings.from_env(),
            landing_dir=self.landing,
            airflow_home=work / "airflow",
            retry_delay_seconds=1,
        )

    def environment(self, data: Path, landing: Path | None = None) -> dict[str, str]:
        """The environment of a measured command: the settings over these folders."""
        settings = self.settings.with_folders(landing_dir=landing, data_dir=data)
        return {**os.environ, **settings.environment()}

    # -- helpers ---------------------------------------------------------------------------

    def data_dir(self, name: str) -> Path:
        """A fresh, empty data folder."""
        folder = self.work / "data" / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        return folder

    def run(self, command: list[str], data: Path, landing: Path | None = None) -> Sample:
        sample = measure(command, self.environment(data, landing), self.log)
        if command[: len(WAREHOUSE) + 1] == [*WAREHOUSE, "run"]:
            sample.tasks = dag_run_tasks(self.settings.airflow_home, sample.seconds)
        return sample

    def record(self, name: str, samples: list[Sample], rows: int | None = None) -> Result:
        result = Result(name, samples, rows)
        self.results[name] = result
        print(f"  {name:<24} {result.seconds:9.2f} s  {result.peak_mib:8.0f} MiB", flush=True)
        return result

    def repeated(self, name: str, folder: str, command: list[str]) -> Path:
        """`command` run `repeats` times, each on a fresh data folder; the last folder."""
        samples = []
        for _ in range(self.repeats):
            data = self.data_dir(folder)
            samples.append(self.run(command, data))
        self.record(name, samples, self.rows)
        return data

    # -- the landing folder ----------------------------------------------------------------

    def prepare(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        marker = self.landing / ".complete"
        if not marker.exists():
            shutil.rmtree(self.landing, ignore_errors=True)
            if self.rows is None:
                shutil.copytree(
                    REPO_ROOT / "seeds", self.landing, ignore=shutil.ignore_patterns("*.md")
                )
            else:
                subprocess.run(
                    [*WAREHOUSE, "generate", "--rows", str(self.rows), "--out", str(self.landing)],
                    check=True,
                    env=self.environment(self.work / "data"),
                )
            marker.touch()
        self.rows = usage_rows(self.landing)
        size = sum(f.stat().st_size for f in (self.landing / "spend").iterdir())
        print(f"{self.scale}: {self.rows:,} usage rows, {size / 2**20:,.0f} MiB of CSV", flush=True)

    # -- what is measured ------------------------------------------------------------------

    def stages(self) -> Path:
        """Ingest, dbt build, validate and publish, each a process, on a fresh data folder."""
        runs: dict[str, list[Sample]] = {}
        for _ in range(self.repeats):
            data = self.data_dir("stages")
            for name, command in STAGES.items():
                runs.setdefault(name, []).append(self.run(command, data))
        for name, samples in runs.items():
            self.record(f"stage: {name}", samples, self.rows)
        return data

    def serve_postgres(self, data: Path) -> None:
        """The PostgreSQL publish of the stages' published file, into a throwaway server (when
        Debian's PostgreSQL 15 is installed): its time, and the mart rows it loads."""
        from benchmarks.postgres_server import available, postgres_server

        if not available():
            print("  (no PostgreSQL 15: the PostgreSQL publish is not measured)", flush=True)
            return
        settings = self.settings.with_folders(data_dir=data)
        rows = sum(json.loads(settings.manifest.read_text())["row_counts"].values())
        command = [PYTHON, "-m", "benchmarks.stages", "serve_postgres"]
        with postgres_server() as server:
            env = {**os.environ, **replace(settings, serve_postgres_url=server.url()).environment()}
            samples = [measure(command, env, self.log) for _ in range(self.repeats)]
        self.record("publish to PostgreSQL", samples, rows)

    def dag(self) -> Path:
        return self.repeated("pipeline DAG run", "dag", [*WAREHOUSE, "run", "--no-report"])

    def floor(self) -> Path:
        command = [PYTHON, "-m", "benchmarks.floor"]
        return self.repeated("floor (one DuckDB script)", "floor", command)

    def peers(self) -> None:
        command = [PYTHON, "-m", "benchmarks.peers", "pandas"]
        self.repeated("peer: pandas + insert", "pandas", command)
        # dbt seed once: at 1M rows it takes minutes.
        data = self.data_dir("dbt_seed")
        sample = self.run([PYTHON, "-m", "benchmarks.peers", "dbt-seed"], data)
        self.record("peer: dbt seed", [sample], self.rows)

    def history(self) -> None:
        """At each point of `HISTORY`, the DAG rerun with its month added, then with nothing new
        (the steady state of a daily schedule), the months before it built by untimed runs on
        the same data folder. The last point is also the table's "DAG rerun, one month added"
        and "DAG rerun, nothing new"."""
        spend = {
            path.stem.removeprefix("usage_"): path for path in self.landing.glob("spend/*.csv")
        }
        months = sorted(spend)
        rows = {m: scan_file(path).rows_in_file for m, path in spend.items()}
        command = [*WAREHOUSE, "run", "--no-report"]
        folder, first = self.work / "landing_history", None
        for start, month in HISTORY:
            if start != first:  # a new history: a fresh landing and data folder
                shutil.rmtree(folder, ignore_errors=True)
                shutil.copytree(self.landing, folder, ignore=shutil.ignore_patterns("usage_*"))
                data, first = self.data_dir("history"), start
            held = months[months.index(start) : months.index(month) + 1]
            new = [m for m in held[:-1] if not (folder / "spend" / spend[m].name).exists()]
            for m in new:
                shutil.copy2(spend[m], folder / "spend" / spend[m].name)
            if new:
                self.run(command, data, folder)
            shutil.copy2(spend[month], folder / "spend" / spend[month].name)
            added = self.run(command, data, folder)
            nothing = self.run(command, data, folder)
            self.history_points[str(len(held))] = {
                "months": f"{start} to {month}",
                "month rows": rows[month],
                "history rows": sum(rows[m] for m in held),
                "one month added": asdict(added),
                "nothing new": asdict(nothing),
            }
            print(
                f"  {len(held)} months of history: a month added {added.seconds:.2f} s, "
                f"nothing new {nothing.seconds:.2f} s",
                flush=True,
            )
        self.record("DAG rerun, one month added", [added])
        self.record("DAG rerun, nothing new", [nothing])

    def parse_time(self) -> None:
        samples = []
        for _ in range(max(self.repeats, 3)):
            result = subprocess.run(
                [PYTHON, "-m", "benchmarks.parse_time"],
                env=self.environment(self.work / "data"),
                capture_output=True,
                text=True,
                check=True,
            )
            samples.append(Sample(json.loads(result.stdout.splitlines()[-1])["seconds"], 0.0))
        self.record("DAG parse", samples)

    # -- checks and results ----------------------------------------------------------------

    def check_same_marts(self, floor_db: Path, published: Path) -> dict:
        """The floor and the pipeline agree: row counts and the latest month's headline."""
        headline = """
            select level, top_customer_name, round(top1_share, 9), round(hhi, 6)
            from {}fct_revenue_concentration
            where product_line = 'azure_openai'
              and month = (select max(month) from {}fct_revenue_concentration)
            order by level"""
        with duckdb.connect(str(floor_db), read_only=True) as floor:
            floor_counts = {
                m: floor.execute(f"select count(*) from {m}").fetchone()[0] for m in CONTRACT_MARTS
            }
            floor_headline = floor.execute(headline.format("", "")).fetchall()
        with duckdb.connect(str(published), read_only=True) as pipeline:
            counts = {
                m: pipeline.execute(f"select count(*) from marts.{m}").fetchone()[0]
                for m in CONTRACT_MARTS
            }
            pipeline_headline = pipeline.execute(headline.format("marts.", "marts.")).fetchall()
        if counts != floor_counts or pipeline_headline != floor_headline:
            raise AssertionError(
                f"floor and pipeline differ: {floor_counts} {floor_headline} vs "
                f"{counts} {pipeline_headline}"
            )
        return {"row_counts": counts, "headline": [list(row) for row in pipeline_headline]}

    def ratios(self, seeds_nothing_new: float | None = None) -> dict[str, float]:
        """The ratios measured at this scale; `seeds_nothing_new` is the seeds' rerun with
        nothing new, measured in the same invocation, which a daily run's cost is held to."""
        r = {name: result.seconds for name, result in self.results.items()}
        ratios = {}
        if "pipeline DAG run" in r:
            ratios["pipeline DAG run / floor"] = (
                r["pipeline DAG run"] / r["floor (one DuckDB script)"]
            )
            stages = sum(v for k, v in r.items() if k.startswith("stage: "))
            ratios["pipeline stages / floor"] = stages / r["floor (one DuckDB script)"]
        for peer in ("peer: dbt seed", "peer: pandas + insert"):
            if peer in r:
                ratios[f"{peer} / our ingest"] = r[peer] / r["stage: ingest"]
        if "DAG rerun, one month added" in r:
            ratios["one month added / full DAG run"] = (
                r["DAG rerun, one month added"] / r["pipeline DAG run"]
            )
        if len(self.history_points) > 1:
            (first, *_, last) = self.history_points.items()
            for name, label in (("one month added", "month added"), ("nothing new", "nothing new")):
                ratios[f"{label}, {last[0]} / {first[0]} months of history"] = (
                    last[1][name]["seconds"] / first[1][name]["seconds"]
                )
        if seeds_nothing_new and "DAG rerun, nothing new" in r:
            ratios["nothing new / nothing new on the seeds"] = (
                r["DAG rerun, nothing new"] / seeds_nothing_new
            )
        return {k: round(v, 3) for k, v in ratios.items()}

    def nothing_new(self) -> float:
        """Only the rerun with nothing new (on a folder the DAG has just built): its seconds."""
        data = self.data_dir("nothing_new")
        self.run([*WAREHOUSE, "run", "--no-report"], data)
        command = [*WAREHOUSE, "run", "--no-report"]
        samples = [self.run(command, data) for _ in range(self.repeats)]
        return self.record("DAG rerun, nothing new", samples).seconds


def _stage_commands() -> dict[str, list[str]]:
    stage = [PYTHON, "-m", "benchmarks.stages"]
    return {
        "ingest": [*WAREHOUSE, "ingest"],
        "dbt build": [*stage, "dbt_build"],
        "validate": [*stage, "validate"],
        "publish": [*stage, "publish"],
    }


STAGES = _stage_commands()


def machine() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
    }


def run_scale(
    scale: str, work: Path, results_dir: Path, repeats: int, peers: bool, seeds_nothing_new: float
) -> dict:
    bench = Bench(scale, work, repeats)
    bench.prepare()
    stage_data = bench.stages()
    bench.serve_postgres(stage_data)
    dag_data = bench.dag()
    floor_data = bench.floor()
    agreement = bench.check_same_marts(floor_data / "floor.duckdb", dag_data / "warehouse.duckdb")
    bench.check_same_marts(floor_data / "floor.duckdb", stage_data / "warehouse.duckdb")
    if peers:
        bench.peers()
    bench.history()
    bench.parse_time()
    report = {
        "scale": scale,
        "usage_rows": bench.rows,
        "repeats": repeats,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "results": {name: r.to_dict() for name, r in bench.results.items()},
        "ratios": bench.ratios(seeds_nothing_new),
        "seeds_nothing_new_seconds": round(seeds_nothing_new, 3),
        "floor_equals_pipeline": agreement,
        "history": bench.history_points,
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{scale}.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def table(reports: list[dict]) -> str:
    """Markdown: one column per scale, one row per measurement, then the ratios."""
    names = list(dict.fromkeys(n for r in reports for n in r["results"]))
    head = "| measurement | " + " | ".join(
        f"{r['scale']} ({r['usage_rows']:,} rows)" for r in reports
    )
    lines = [head + " |", "| --- |" + " ---: |" * len(reports)]
    for name in names:
        cells = []
        for report in reports:
            result = report["results"].get(name)
            if result is None:
                cells.append("")
            elif result["peak_mib"]:
                cells.append(f"{result['median_seconds']:.2f} s, {result['peak_mib']:,.0f} MiB")
            else:
                cells.append(f"{result['median_seconds']:.3f} s")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    ratio_names = list(dict.fromkeys(n for r in reports for n in r["ratios"]))
    for name in ratio_names:
        cells = [f"{r['ratios'][name]:.2f}x" if name in r["ratios"] else "" for r in reports]
        lines.append(f"| **{name}** | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def history_table(reports: list[dict]) -> str:
    """Markdown: the DAG rerun with one month added and with nothing new at each point of
    history, one column per scale (a scale measured before the history was, left blank)."""
    reports = [r for r in reports if r.get("history")]
    if not reports:
        return "(no results file has the history yet)"
    points = list(dict.fromkeys(n for r in reports for n in r["history"]))
    head = "| months of history | | " + " | ".join(r["scale"] for r in reports)
    lines = [head + " |", "| --- | --- |" + " ---: |" * len(reports)]

    def cells(point: str, cell) -> str:
        return " | ".join(
            cell(r["history"][point]) if point in r["history"] else "" for r in reports
        )

    def sample(name: str):
        return lambda p: f"{p[name]['seconds']:.2f} s, {p[name]['peak_mib']:,.0f} MiB"

    for point in points:
        months = next(r["history"][point]["months"] for r in reports if point in r["history"])
        rows = cells(point, lambda p: f"{p['month rows']:,} / {p['history rows']:,}")
        lines.append(f"| {point} ({months}) | usage rows: the month added / all | {rows} |")
        lines.append(
            f"| | DAG rerun, one month added | {cells(point, sample('one month added'))} |"
        )
        lines.append(f"| | DAG rerun, nothing new | {cells(point, sample('nothing new'))} |")
    return "\n".join(lines)


def _replace_block(text: str, name: str, block: str) -> str:
    """`text` with what lies between the markers `<!-- name:start -->` and `:end` replaced."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    before, rest = text.split(start, 1)
    after = rest.split(end, 1)[1]
    return f"{before}{start}\n{block}\n{end}{after}"


def update_readme(results_dir: Path) -> None:
    """Rewrite the results and history tables of benchmarks/README.md from every results file."""
    readme = BENCH_DIR / "README.md"
    order = list(SCALES)
    reports = sorted(
        (json.loads(p.read_text()) for p in results_dir.glob("*.json")),
        key=lambda r: order.index(r["scale"]),
    )
    if not reports or not readme.exists():
        return
    m = reports[-1]["machine"]
    dates = ", ".join(f"{r['scale']} on {r['measured_at'][:10]}" for r in reports)
    repeats = ", ".join(f"{r['scale']}: {r['repeats']}" for r in reports)
    block = (
        f"Measured ({dates}) on {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, "
        f"{m['os']}, Python {m['python']}, DuckDB {m['duckdb']}. Medians of each measurement's "
        f"runs ({repeats}); memory is the peak total RSS of the process tree.\n\n" + table(reports)
    )
    text = _replace_block(readme.read_text(), "results", block)
    readme.write_text(_replace_block(text, "history", history_table(reports)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.harness", description=__doc__)
    parser.add_argument("--scales", default="1M,10M", help="comma-separated: seeds, 1M, 10M, 100M")
    parser.add_argument("--repeats", type=int, help="runs per measurement (default 3 at 1M)")
    parser.add_argument("--work", type=Path, default=BENCH_DIR / "work")
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--no-readme", action="store_true", help="leave benchmarks/README.md")
    args = parser.parse_args(argv)
    scales = [s.strip() for s in args.scales.split(",") if s.strip()]
    if unknown := set(scales) - set(SCALES):
        parser.error(f"unknown scales {sorted(unknown)}; choose from {list(SCALES)}")
    # The Airflow home every measured DAG run shares, migrated before anything is timed.
    prepare = subprocess.run(
        [
            PYTHON,
            "-c",
            "from warehouse.runtime.run import prepare_airflow_home; "
            "from warehouse.settings import Settings; "
            "prepare_airflow_home(Settings.from_env())",
        ],
        env={**os.environ, "AIRFLOW_HOME": str(args.work / "airflow")},
        capture_output=True,
        text=True,
    )
    if prepare.returncode != 0:
        print(prepare.stdout + prepare.stderr, file=sys.stderr)
        return 1
    # Every scale's steady-state run is held to the seeds' one, measured here on the same machine.
    seeds = Bench("seeds", args.work, args.repeats or 3)
    seeds.prepare()
    seeds_nothing_new = seeds.nothing_new()
    reports = []
    for scale in scales:
        repeats = args.repeats or (3 if scale in ("seeds", "1M") else 1)
        # dbt seed is too slow beyond 1M rows to be worth running.
        peers = SCALES[scale] is None or SCALES[scale] <= 1_000_000
        reports.append(run_scale(scale, args.work, args.results, repeats, peers, seeds_nothing_new))
    print()
    print(table(reports))
    if not args.no_readme:
        update_readme(args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
