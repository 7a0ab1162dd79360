"""The bad-input catalogue (RELIABILITY.md): each kind of bad landing file has a defined outcome.
Rows are loaded or rejected with a reason (rows in = loaded + rejected), or the whole file is
refused with a message naming it; a refused file changes nothing in the build database."""

from __future__ import annotations

import os
from datetime import date, timedelta

import pytest

from tests.conftest import settings_for
from tests.ingesting import (
    accounted,
    ingest_sources,
    landing_folder,
    query,
    snapshot,
)
from warehouse.ingest import SourceRefusedError, ingest_source
from warehouse.ingest.ledger import FileResult
from warehouse.settings import Settings

HEADER = b"usage_date,customer_id,product_line,model,tokens,amount_usd\n"
GOOD = [
    b"2024-03-01,cus_tiktok,azure_openai,gpt-4o,1000000,10.00\n",
    b"2024-03-01,cus_walmart,azure_openai,gpt-4o,2000000,20.00\n",
    b"2024-03-02,cus_intuit,azure_openai,gpt-4o,3000000,30.00\n",
]


@pytest.fixture
def bare(tmp_path) -> Settings:
    """Settings over a landing folder with the seed customers and an empty `spend/`."""
    return settings_for(landing_folder(tmp_path / "landing", "customers.csv"), tmp_path / "data")


def spend(settings: Settings, name: str, content: bytes) -> str:
    (settings.landing_dir / "spend" / name).write_bytes(content)
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
def test_file_of_the_wrong_shape_is_refused_naming_file_and_problem(bare, content, problem):
    """Refused whole, in one line naming the file and the problem, and the build database is
    unchanged: the file's previous version stays loaded."""
    name = spend(bare, "usage_2024_03.csv", HEADER + b"".join(GOOD))
    ingest_sources(bare, "run-1")
    before = snapshot(bare)
    spend(bare, "usage_2024_03.csv", content)

    with pytest.raises(SourceRefusedError) as refused:
        ingest_source("usage", "run-2", bare)

    assert f"{name}: refused, " in str(refused.value) and problem in str(refused.value)
    assert snapshot(bare) == before
    assert query(bare, "select file_path from ingest.refused_files where run_id = 'run-2'") == [
        (name,)
    ]
    assert problem in accounted(bare).refused[name]


def test_same_month_delivered_twice_under_two_names_is_refused(bare):
    spend(bare, "usage_2024_03.csv", HEADER + b"".join(GOOD))
    twin = spend(bare, "usage_2024_03_resent.csv", HEADER + b"".join(GOOD))

    ingest_sources(bare)
    outcome = accounted(bare)

    assert outcome.loaded == {"spend/usage_2024_03.csv": 3}
    assert outcome.refused[twin] == (
        "the same content as spend/usage_2024_03.csv, already loaded (delivered twice?)"
    )


def test_symlink_to_a_file_outside_the_landing_folder_is_refused(bare, tmp_path):
    outside = tmp_path / "secret.csv"
    outside.write_bytes(HEADER + b"".join(GOOD))
    (bare.landing_dir / "spend" / "usage_2024_03.csv").symlink_to(outside)

    ingest_sources(bare)
    outcome = accounted(bare)

    assert "outside the landing folder" in outcome.refused["spend/usage_2024_03.csv"]
    assert outcome.loaded == {}


def _loop(spend_dir):
    (spend_dir / "usage_2024_04.csv").symlink_to("usage_2024_04.csv")


def _dangling(spend_dir):
    (spend_dir / "usage_2024_04.csv").symlink_to("usage_2024_09.csv")


def _folder(spend_dir):
    (spend_dir / "april").mkdir()
    (spend_dir / "usage_2024_04.csv").symlink_to("april")


def _pipe(spend_dir):
    os.mkfifo(spend_dir / "usage_2024_04.csv")


NOT_A_FILE = {
    "a symlink loop": (_loop, "a symbolic link that leads back to itself"),
    "a dangling symlink": (_dangling, "a link to usage_2024_09.csv, which does not exist"),
    "a symlink to a folder": (_folder, "a link to a folder ("),
    "a named pipe": (_pipe, "not a regular file (a pipe, socket or device)"),
}


@pytest.mark.parametrize("make, problem", NOT_A_FILE.values(), ids=NOT_A_FILE.keys())
def test_a_landing_entry_that_is_not_a_readable_file_is_refused_by_name(bare, make, problem):
    """Refused in one line naming the file, never raised as a Python error (which the task
    would retry as a transient fault) and never opened (a pipe would block the run); the other
    files load."""
    good = spend(bare, "usage_2024_03.csv", HEADER + b"".join(GOOD))
    make(bare.landing_dir / "spend")
    ingest_source("customers", "run", bare)

    with pytest.raises(SourceRefusedError) as refused:
        ingest_source("usage", "run", bare)

    (refusal,) = refused.value.refusals
    assert refusal.file_path == "spend/usage_2024_04.csv"
    assert problem in refusal.problem and "\n" not in str(refusal)
    assert accounted(bare).loaded == {good: 3}


def test_a_landing_file_the_run_may_not_read_is_refused_by_name(bare, monkeypatch):
    """Permission denied on a landing file is that file's problem, not a storage fault that
    stops the run (simulated: the tests may run as root, who reads everything)."""
    from warehouse.ingest import load

    good = spend(bare, "usage_2024_03.csv", HEADER + b"".join(GOOD))
    locked = spend(bare, "usage_2024_04.csv", HEADER)
    scan = load.scan_file

    def denied(path):
        if path.name == "usage_2024_04.csv":
            raise PermissionError(13, "Permission denied", str(path))
        return scan(path)

    monkeypatch.setattr(load, "scan_file", denied)
    ingest_sources(bare)
    outcome = accounted(bare)

    assert outcome.refused == {locked: "cannot be read (Permission denied)"}
    assert outcome.loaded == {good: 3}


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
        "the line is 3,000,039 bytes, longer than the 2,000,000 the reader reads",
    ),
    # A hostile feed's lines: the reader drops a line this long without a reject of its own.
    "50 MB of commas": (b"," * 50_000_000 + b"\n", "the line is 50,000,000 bytes"),
    "50 MB without a comma or quote": (b"x" * 50_000_000 + b"\n", "50,000,000 bytes"),
    "a credit note": (b"2024-03-03,cus_g42,azure_openai,gpt-4o,5,-250.00\n", "a credit note"),
}


@pytest.mark.parametrize("line, reason", REJECTED.values(), ids=REJECTED.keys())
def test_bad_row_is_rejected_with_its_line_and_reason_and_the_rest_load(bare, line, reason):
    name = spend(bare, "usage_2024_03.csv", HEADER + b"".join(GOOD) + line)

    ingest_sources(bare)
    outcome = accounted(bare)

    assert outcome.loaded == {name: 3}
    (only,) = outcome.rejects[name]
    assert only[0] == 5  # the header is line 1, the good rows lines 2-4
    assert reason in only[1] and len(only[1]) < 200


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"], ids=["LF", "CRLF"])
def test_a_line_too_long_to_read_is_rejected_by_its_number_wherever_it_sits(bare, newline):
    """Before other rows (which keep their own line numbers), and last with no line break; its
    length is the line's, without the line break."""
    long = b"x" * 5_000_000
    lines = [HEADER, long + b"\n", *GOOD, long]
    name = spend(bare, "usage_2024_03.csv", b"".join(lines).replace(b"\n", newline))

    ingest_sources(bare)
    outcome = accounted(bare)

    assert outcome.loaded == {name: 3}
    assert [line for line, _ in outcome.rejects[name]] == [2, 6]
    assert all(why.startswith("the line is 5,000,000 bytes") for _, why in outcome.rejects[name])
    # The reject keeps the start of the line, not 5 MB of it.
    assert query(bare, "select raw_line from ingest.rejects") == [("x" * 200 + "…",)] * 2


def test_a_header_of_many_columns_is_refused_in_a_short_line(bare):
    name = spend(bare, "usage_2024_03.csv", b",".join(b"c%d" % i for i in range(100_000)) + b"\n")

    with pytest.raises(SourceRefusedError) as refused:
        ingest_source("usage", "run", bare)

    assert f"{name}: refused, wrong header: missing column 'usage_date'" in str(refused.value)
    assert "99,995 more unexpected columns" in str(refused.value)
    assert len(str(refused.value)) < 1_000


def test_out_of_range_dates_are_rejected(bare):
    name = spend(bare, "usage_2024_03.csv", HEADER + GOOD[0] + b"1999-03-01" + GOOD[1][10:])

    ingest_sources(bare)
    outcome = accounted(bare)

    assert outcome.rejected_lines(name) == {
        3: "usage_date is out of range 2020-01-01 to 2099-12-31"
    }


def test_future_dates_are_rejected(bare):
    tomorrow = date.today() + timedelta(days=1)
    row = tomorrow.isoformat().encode() + b",cus_g42,azure_openai,gpt-4o,5,1.00\n"
    name = spend(bare, f"usage_{tomorrow:%Y_%m}.csv", HEADER + row)

    ingest_sources(bare)
    outcome = accounted(bare)

    assert outcome.rejected_lines(name) == {2: "usage_date is in the future"}


def test_header_only_file_loads_nothing_and_is_recorded(bare):
    name = spend(bare, "usage_2024_03.csv", HEADER)

    ingested = ingest_sources(bare)

    assert ingested.files[name] == FileResult(name, "added", 0, 0, 0, 0)
    outcome = accounted(bare)
    assert outcome.loaded == {name: 0}
    assert outcome.rejects == {}


def test_truncated_last_line_is_rejected_and_the_rest_load(bare):
    name = spend(bare, "usage_2024_03.csv", HEADER + b"".join(GOOD) + b"2024-03-04,cus_g4")

    ingest_sources(bare)
    outcome = accounted(bare)

    assert outcome.loaded == {name: 3}
    assert [line for line, _ in outcome.rejects[name]] == [5]


def test_duplicate_line_items_across_files_load_once(bare):
    spend(bare, "usage_2024_03.csv", HEADER + b"".join(GOOD))
    # One row that the first file holds already, one new.
    new_row = GOOD[2].replace(b"03-02", b"03-05")
    late = spend(bare, "usage_2024_03_late.csv", HEADER + GOOD[1] + new_row)

    ingest_sources(bare)
    outcome = accounted(bare)

    assert outcome.loaded == {"spend/usage_2024_03.csv": 3, late: 1}
    assert outcome.rejected_lines(late) == {
        2: "duplicate of a row already loaded from spend/usage_2024_03.csv"
    }


def test_file_still_being_written_waits_then_loads_whole(bare):
    """Producers write under a hidden name and rename when done: the hidden file waits."""
    partial = bare.landing_dir / "spend" / ".usage_2024_03.csv.part"
    partial.write_bytes(HEADER + GOOD[0] + b"2024-03-0")

    ingest_sources(bare, "while-written")
    assert accounted(bare).loaded == {}

    partial.write_bytes(HEADER + b"".join(GOOD))
    os.replace(partial, bare.landing_dir / "spend" / "usage_2024_03.csv")
    ingest_sources(bare, "renamed")
    assert accounted(bare).loaded == {"spend/usage_2024_03.csv": 3}


@pytest.mark.parametrize(
    "name",
    [
        "usage 2024_03 (copy).csv",
        "usage_2024_03 it's.csv",
        "usage_2024_03'; drop table raw.usage; --.csv",
        'usage_2024_03 "quoted".csv',
    ],
)
def test_hostile_file_names_are_data_never_sql(bare, name):
    display = spend(bare, name, HEADER + b"".join(GOOD))

    ingest_sources(bare)
    outcome = accounted(bare)

    assert outcome.loaded == {display: 3}
    assert query(bare, "select distinct _source_file from raw.usage") == [(display,)]


def test_a_column_whose_type_changed_rejects_its_rows_naming_the_column(bare):
    """Schema drift in a type (usage_date sent as a timestamp): each row is rejected with the
    column named; with every row rejected, the audit's row-count bounds stop the publish."""
    drifted = b"".join(line[:10] + b"T00:00:00" + line[10:] for line in GOOD)
    name = spend(bare, "usage_2024_03.csv", HEADER + drifted)

    ingest_sources(bare)
    outcome = accounted(bare)

    assert outcome.loaded == {name: 0}
    reasons = outcome.rejected_lines(name)
    assert sorted(reasons) == [2, 3, 4]
    assert all("usage_date" in reason for reason in reasons.values())


def test_the_runs_summary_names_each_rejected_rows_file_line_and_reason(bare):
    """What `warehouse run` prints: a rejected row (a credit note) by file, line and reason,
    the first few of a run's rejects, and the query for the rest."""
    from warehouse.serve.summary import REJECTS_SHOWN, build_summary, format_summary

    credit = b"2024-03-03,cus_g42,azure_openai,gpt-4o,5,-250.00\n"
    name = spend(bare, "usage_2024_03.csv", HEADER + b"".join(GOOD) + credit)
    ingest_sources(bare, "run-1")

    printed = format_summary(build_summary(bare, "run-1")).splitlines()

    assert f"rejected: {name} line 5: amount_usd is negative (a credit note?): " in "\n".join(
        printed
    )
    assert not any("more rejected rows" in line for line in printed)

    many = [b"2024-03-%02d,cus_g42,azure_openai,gpt-4o,5,-1.00\n" % day for day in range(4, 14)]
    spend(bare, "usage_2024_03.csv", HEADER + b"".join(GOOD) + b"".join(many))
    ingest_sources(bare, "run-2")

    printed = format_summary(build_summary(bare, "run-2")).splitlines()
    shown = [line for line in printed if line.startswith("rejected: ")]
    assert [line.split(" line ")[1].split(":")[0] for line in shown] == [
        str(n) for n in range(5, 5 + REJECTS_SHOWN)
    ]
    assert f"  and {10 - REJECTS_SHOWN} more rejected rows this run: warehouse query " in (
        "\n".join(printed)
    )
