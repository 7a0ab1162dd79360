"""The bad-input catalogue (RELIABILITY.md): each kind of bad landing file has a defined outcome.
Rows are loaded or rejected with a reason (rows in = loaded + rejected), or the whole file is
refused with a message naming it; a refused file changes nothing in the build database."""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from tests.conftest import SEEDS, settings_for
from warehouse.ingest import SourceRefusedError, ingest_source

HEADER = b"usage_date,customer_id,product_line,model,tokens,amount_usd\n"
GOOD = [
    b"2024-03-01,cus_tiktok,azure_openai,gpt-4o,1000000,10.00\n",
    b"2024-03-01,cus_walmart,azure_openai,gpt-4o,2000000,20.00\n",
    b"2024-03-02,cus_intuit,azure_openai,gpt-4o,3000000,30.00\n",
]


@dataclass
class Outcome:
    refused: dict[str, str] = field(default_factory=dict)  # file -> problem
    loaded: dict[str, int] = field(default_factory=dict)  # file -> rows loaded
    rejects: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # file -> lines

    def rejected_lines(self, name: str) -> dict[int, str]:
        return dict(self.rejects.get(name, []))


def run_ingest(landing: Path, db: Path) -> Outcome:
    """Customers, then usage, as the DAG orders them; what became of every usage file."""
    ingest_source("customers", "run", settings_for(landing, db.parent))
    with contextlib.suppress(SourceRefusedError):
        ingest_source("usage", "run", settings_for(landing, db.parent))
    with duckdb.connect(str(db), read_only=True) as con:
        refused = dict(
            con.execute("select file_path, problem from ingest.refused_files").fetchall()
        )
        # Each file's current version: its latest ledger entry.
        ledger = con.execute(
            "select file_path, arg_max(rows_in_file, loaded_at), arg_max(rows_loaded, loaded_at), "
            "arg_max(rows_rejected, loaded_at) from ingest.ledger where source = 'usage' "
            "group by file_path"
        ).fetchall()
        loaded_rows = dict(
            con.execute("select _source_file, count(*) from raw.usage group by all").fetchall()
        )
        rejects: dict[str, list[tuple[int, str]]] = {}
        # Rejected for good, or quarantined until what it depends on arrives: rejected now.
        for file, line, reason in con.execute(
            "select file_path, line_number, reason from ingest.rejects union all "
            "select _source_file, _line_number, _reason from ingest.usage_quarantine order by all"
        ).fetchall():
            rejects.setdefault(file, []).append((line, reason))
    for file, rows_in, rows_loaded, rows_rejected in ledger:
        # Nothing lost: every row is loaded or rejected, and raw.usage holds what was loaded.
        assert rows_in == rows_loaded + rows_rejected, file
        assert loaded_rows.get(file, 0) == rows_loaded, file
        assert len(rejects.get(file, [])) == rows_rejected, file
    assert not set(refused) & set(loaded_rows)  # a refused file loads nothing
    return Outcome(refused, {f: r for f, _, r, _ in ledger}, rejects)


@pytest.fixture
def landing(tmp_path) -> Path:
    folder = tmp_path / "landing"
    (folder / "spend").mkdir(parents=True)
    shutil.copy(SEEDS / "customers.csv", folder / "customers.csv")
    return folder


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "build.duckdb"


def spend(landing: Path, name: str, content: bytes) -> str:
    (landing / "spend" / name).write_bytes(content)
    return f"spend/{name}"


# -- whole files refused ---------------------------------------------------------------------

REFUSED = {
    "empty file": (b"", "the file is empty"),
    "wrong delimiter": (
        HEADER.replace(b",", b";") + b"".join(GOOD).replace(b",", b";"),
        "wrong delimiter",
    ),
    "reordered header": (
        b"customer_id,usage_date,product_line,model,tokens,amount_usd\n",
        "columns in a different order",
    ),
    "wrong column name": (
        HEADER.replace(b"amount_usd", b"amount"),
        "missing column 'amount_usd'; unexpected column 'amount'",
    ),
    "extra column (schema drift: new column)": (
        HEADER.rstrip() + b",discount_usd\n" + b"".join(g.rstrip() + b",0\n" for g in GOOD),
        "unexpected column 'discount_usd'",
    ),
    "missing column (schema drift: column gone)": (
        b"usage_date,customer_id,product_line,tokens,amount_usd\n",
        "missing column 'model'",
    ),
    "non-UTF-8 header": (b"usage_date,customer\xff_id\n", "not UTF-8"),
}


@pytest.mark.parametrize("content, problem", REFUSED.values(), ids=REFUSED.keys())
def test_file_of_the_wrong_shape_is_refused_naming_file_and_problem(landing, db, content, problem):
    name = spend(landing, "usage_2024_03.csv", content)

    outcome = run_ingest(landing, db)

    assert name in outcome.refused
    assert problem in outcome.refused[name]
    assert outcome.loaded == {}


def test_same_month_delivered_twice_under_two_names_is_refused(landing, db):
    spend(landing, "usage_2024_03.csv", HEADER + b"".join(GOOD))
    twin = spend(landing, "usage_2024_03_resent.csv", HEADER + b"".join(GOOD))

    outcome = run_ingest(landing, db)

    assert outcome.loaded == {"spend/usage_2024_03.csv": 3}
    assert outcome.refused[twin] == (
        "the same content as spend/usage_2024_03.csv, already loaded (delivered twice?)"
    )


def test_symlink_to_a_file_outside_the_landing_folder_is_refused(landing, db, tmp_path):
    outside = tmp_path / "secret.csv"
    outside.write_bytes(HEADER + b"".join(GOOD))
    (landing / "spend" / "usage_2024_03.csv").symlink_to(outside)

    outcome = run_ingest(landing, db)

    assert "outside the landing folder" in outcome.refused["spend/usage_2024_03.csv"]
    assert outcome.loaded == {}


# -- rows rejected with a reason -------------------------------------------------------------

REJECTED = {
    "non-numeric amount": (b"2024-03-03,cus_g42,azure_openai,gpt-4o,5,ten\n", "amount_usd"),
    "negative amount": (b"2024-03-03,cus_g42,azure_openai,gpt-4o,5,-1.00\n", "negative"),
    "absurdly large amount": (
        b"2024-03-03,cus_g42,azure_openai,gpt-4o,5,900000000.00\n",
        "implausible",
    ),
    "amount beyond the column's precision": (
        b"2024-03-03,cus_g42,azure_openai,gpt-4o,5,1e30\n",
        "amount_usd",
    ),
    "unparseable date": (b"03/03/2024,cus_g42,azure_openai,gpt-4o,5,1.00\n", "usage_date"),
    "date outside the file's month": (
        b"2024-04-01,cus_g42,azure_openai,gpt-4o,5,1.00\n",
        "outside the month",
    ),
    "unknown customer id": (
        b"2024-03-03,cus_nobody,azure_openai,gpt-4o,5,1.00\n",
        "customer_id is not in customers.csv",
    ),
    "duplicate line item within the file": (GOOD[0], "duplicate of an earlier row"),
    "missing field (extra comma missing)": (b"2024-03-03,cus_g42,azure_openai,5,1.00\n", ""),
    "non-UTF-8 bytes in a row": (b"2024-03-03,cus_g42,azure_openai,gpt\xff4o,5,1.00\n", ""),
    "very long line": (
        b"2024-03-03,cus_g42,azure_openai," + b"x" * 3_000_000 + b",5,1.00\n",
        "",
    ),
}


@pytest.mark.parametrize("line, reason", REJECTED.values(), ids=REJECTED.keys())
def test_bad_row_is_rejected_with_its_line_and_reason_and_the_rest_load(landing, db, line, reason):
    name = spend(landing, "usage_2024_03.csv", HEADER + b"".join(GOOD) + line)

    outcome = run_ingest(landing, db)

    assert outcome.loaded == {name: 3}
    (only,) = outcome.rejects[name]
    assert only[0] == 5  # the header is line 1, the good rows lines 2-4
    assert reason in only[1]


def test_out_of_range_dates_are_rejected(landing, db):
    name = spend(landing, "usage_2024_03.csv", HEADER + GOOD[0] + b"1999-03-01" + GOOD[1][10:])

    outcome = run_ingest(landing, db)

    assert outcome.rejected_lines(name) == {
        3: "usage_date is out of range 2020-01-01 to 2099-12-31"
    }


def test_future_dates_are_rejected(landing, db):
    tomorrow = date.today() + timedelta(days=1)
    row = tomorrow.isoformat().encode() + b",cus_g42,azure_openai,gpt-4o,5,1.00\n"
    name = spend(landing, f"usage_{tomorrow:%Y_%m}.csv", HEADER + row)

    outcome = run_ingest(landing, db)

    assert outcome.rejected_lines(name) == {2: "usage_date is in the future"}


def test_header_only_file_loads_nothing_and_is_recorded(landing, db):
    name = spend(landing, "usage_2024_03.csv", HEADER)

    outcome = run_ingest(landing, db)

    assert outcome.loaded == {name: 0}
    assert outcome.rejects == {}


def test_truncated_last_line_is_rejected_and_the_rest_load(landing, db):
    name = spend(landing, "usage_2024_03.csv", HEADER + b"".join(GOOD) + b"2024-03-04,cus_g4")

    outcome = run_ingest(landing, db)

    assert outcome.loaded == {name: 3}
    assert [line for line, _ in outcome.rejects[name]] == [5]


def test_duplicate_line_items_across_files_load_once(landing, db):
    spend(landing, "usage_2024_03.csv", HEADER + b"".join(GOOD))
    # One row that the first file holds already, one new.
    new_row = GOOD[2].replace(b"03-02", b"03-05")
    late = spend(landing, "usage_2024_03_late.csv", HEADER + GOOD[1] + new_row)

    outcome = run_ingest(landing, db)

    assert outcome.loaded == {"spend/usage_2024_03.csv": 3, late: 1}
    assert outcome.rejected_lines(late) == {
        2: "duplicate of a row already loaded from spend/usage_2024_03.csv"
    }


def test_restated_file_replaces_its_rows(landing, db):
    name = spend(landing, "usage_2024_03.csv", HEADER + b"".join(GOOD))
    run_ingest(landing, db)
    spend(landing, "usage_2024_03.csv", HEADER + GOOD[0])

    outcome = run_ingest(landing, db)

    assert outcome.loaded == {name: 1}
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("select count(*) from raw.usage").fetchone() == (1,)


def test_file_still_being_written_waits_then_loads_whole(landing, db):
    """Producers write under a hidden name and rename when done: the hidden file waits."""
    partial = landing / "spend" / ".usage_2024_03.csv.part"
    partial.write_bytes(HEADER + GOOD[0] + b"2024-03-0")

    assert run_ingest(landing, db).loaded == {}

    partial.write_bytes(HEADER + b"".join(GOOD))
    os.replace(partial, landing / "spend" / "usage_2024_03.csv")
    assert run_ingest(landing, db).loaded == {"spend/usage_2024_03.csv": 3}


@pytest.mark.parametrize(
    "name",
    [
        "usage 2024_03 (copy).csv",
        "usage_2024_03 it's.csv",
        "usage_2024_03'; drop table raw.usage; --.csv",
        'usage_2024_03 "quoted".csv',
    ],
)
def test_hostile_file_names_are_data_never_sql(landing, db, name):
    display = spend(landing, name, HEADER + b"".join(GOOD))

    outcome = run_ingest(landing, db)

    assert outcome.loaded == {display: 3}
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("select distinct _source_file from raw.usage").fetchall() == [(display,)]


def test_a_column_whose_type_changed_rejects_its_rows_naming_the_column(landing, db):
    """Schema drift in a type (usage_date sent as a timestamp): each row is rejected with the
    column named; with every row rejected, the audit's row-count bounds stop the publish."""
    drifted = b"".join(line[:10] + b"T00:00:00" + line[10:] for line in GOOD)
    name = spend(landing, "usage_2024_03.csv", HEADER + drifted)

    outcome = run_ingest(landing, db)

    assert outcome.loaded == {name: 0}
    reasons = outcome.rejected_lines(name)
    assert sorted(reasons) == [2, 3, 4]
    assert all("usage_date" in reason for reason in reasons.values())
