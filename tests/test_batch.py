"""The fast path of ingestion (warehouse/ingest/batch.py) gives exactly what the per-file path
gives: the clean files of a run load together, the others are judged row by row, and nothing
in raw, the ledger, the rejects, the quarantine or the file totals tells the two apart.

Also here: what makes the fast path cheap must not change an answer. A file whose stat is
unchanged is not read again, a rewritten one is; the record count's shortcut for plain LF files
agrees with the pattern search; and the row check that skips reasons passes no row the
reasons would reject."""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import duckdb
import pytest

from tests.conftest import settings_for
from tests.ingesting import USAGE_HEADER, ingest_sources, landing_folder, query
from warehouse.ingest import batch, landing, ledger, load, rules, tables
from warehouse.ingest.sources import SOURCES, USAGE
from warehouse.settings import Settings

# What the tables hold, without what differs between any two runs (times).
STATE = {
    "raw.usage": "select * exclude (_run_id) from raw.usage",
    "ledger": "select * exclude (loaded_at, run_id, stat_key) from ingest.ledger",
    "rejects": "select * exclude (run_id) from ingest.rejects",
    "quarantine": "select * exclude (_run_id) from ingest.usage_quarantine",
    "file_totals": "select * from ingest.file_totals",
    "loaded_totals": "select * from ingest.loaded_totals",
    "refused": "select source, file_path, problem from ingest.refused_files",
}


def state(settings: Settings) -> dict[str, list[tuple]]:
    with duckdb.connect(str(settings.build_db), read_only=True) as con:
        return {name: sorted(con.execute(sql).fetchall(), key=repr) for name, sql in STATE.items()}


def mixed_landing(folder: Path) -> Path:
    """The seed customers and earnings; clean usage months; a month with a bad row, a
    repeated key, an unknown customer, a reader reject; two files of one month."""
    landing_folder(folder, "customers.csv", "earnings.csv")
    rows = {
        "usage_2024_01.csv": ["2024-01-0{d},cus_tiktok,azure_openai,gpt-4o,{d}00,{d}.50"],
        "usage_2024_02.csv": ["2024-02-0{d},cus_walmart,copilot,gpt-4o,{d},0.{d}"],
        "usage_2024_03.csv": ["2024-03-0{d},cus_intuit,azure_openai,gpt-4o,1,1e{d}"],  # bad
        "usage_2024_04.csv": ["2024-04-01,cus_g42,azure_openai,gpt-4o,1,1.00"],  # repeats
        "usage_2024_05.csv": ["2024-05-0{d},cus_nobody,azure_openai,gpt-4o,1,1.00"],  # held
        "usage_2024_06.csv": ["2024-06-0{d},cus_tiktok,azure_openai,gpt-4o,1,1.00,extra"],
        "usage_2024_07.csv": ["2024-07-0{d},cus_tiktok,azure_openai,gpt-4o,1,1.00"],
        "usage_2024_07_v2.csv": ["2024-07-0{d},cus_tiktok,azure_openai,gpt-4o,2,2.00"],
        "usage_2024_08.csv": ["2024-08-0{d},cus_tiktok,azure_openai,  ,1,1.00"],  # blank
        "usage_2024_09.csv": ["2024-09-0{d},CUS_TIKTOK,azure_openai,gpt-4o,1,1.00"],  # id
    }
    for name, templates in rows.items():
        lines = [t.format(d=d) for t in templates for d in range(1, 4)]
        (folder / "spend" / name).write_text(USAGE_HEADER + "\n".join(lines) + "\n")
    return folder


def test_the_fast_path_gives_what_the_per_file_path_gives(tmp_path, monkeypatch):
    landing_dir = mixed_landing(tmp_path / "landing")
    fast = settings_for(landing_dir, tmp_path / "fast")
    slow = settings_for(landing_dir, tmp_path / "slow")

    loaded_one_by_one: list[str] = []
    real = load.load_candidate

    def spy(con, source, candidate, run_id):
        loaded_one_by_one.append(candidate.display)
        return real(con, source, candidate, run_id)

    monkeypatch.setattr(load, "load_candidate", spy)
    refused_fast = ingest_sources(fast, "run").refused
    usage_one_by_one = sorted(p for p in loaded_one_by_one if p.startswith("spend/"))
    monkeypatch.setattr(batch, "can_batch", lambda source: False)
    monkeypatch.setattr("warehouse.ingest.ingest.can_batch", lambda source: False)
    refused_slow = ingest_sources(slow, "run").refused

    # The clean months loaded together; every other file was judged row by row.
    assert usage_one_by_one == [
        "spend/usage_2024_03.csv",
        "spend/usage_2024_04.csv",
        "spend/usage_2024_05.csv",
        "spend/usage_2024_06.csv",
        "spend/usage_2024_07.csv",
        "spend/usage_2024_07_v2.csv",
        "spend/usage_2024_08.csv",
        "spend/usage_2024_09.csv",
    ]
    assert refused_fast == refused_slow
    fast_state, slow_state = state(fast), state(slow)
    for table in STATE:
        assert fast_state[table] == slow_state[table], table
    assert {r[0] for r in fast_state["rejects"]} == {"usage"}  # the bad rows were found
    assert fast_state["quarantine"]  # and the held ones


def test_a_file_whose_stat_is_unchanged_is_not_read_again_and_a_rewritten_one_is(
    tmp_path, monkeypatch
):
    settings = settings_for(mixed_landing(tmp_path / "landing"), tmp_path / "data")
    ingest_sources(settings, "first")
    scanned: list[str] = []
    real = load.scan_file
    monkeypatch.setattr(load, "scan_file", lambda path: scanned.append(path.name) or real(path))

    ingest_sources(settings, "second")
    assert scanned == []  # not one byte of an unchanged file hashed again

    # The same bytes written again: a new ctime, so it is read, found unchanged by its hash.
    clean = settings.landing_dir / "spend" / "usage_2024_01.csv"
    clean.write_bytes(clean.read_bytes())
    ingest_sources(settings, "third")
    assert scanned == ["usage_2024_01.csv"]
    actions = query(
        settings, "select action from ingest.ledger where file_path = 'spend/usage_2024_01.csv'"
    )
    assert actions == [("added",)]

    # Different bytes of the same size, with the old modification time put back: still read.
    text = clean.read_text()
    stat = os.stat(clean)
    clean.write_text(text.replace("cus_tiktok", "cus_walmart", 1)[: len(text)])
    os.utime(clean, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(clean).st_size == stat.st_size
    ingest_sources(settings, "fourth")
    customers = query(
        settings,
        "select distinct customer_id from raw.usage "
        "where _source_file = 'spend/usage_2024_01.csv' order by 1",
    )
    assert customers == [("cus_tiktok",), ("cus_walmart",)]


def _records_by_pattern(data: bytes) -> tuple[int, int, int, int]:
    """The record count and line breaks as the pattern search counts them, in one piece."""
    crlf = data.count(b"\r\n")
    return (
        max(len(landing._RECORD_START.findall(b"\n" + data)) - 1, 0),
        crlf,
        data.count(b"\n") - crlf,
        data.count(b"\r") - crlf,
    )


def test_the_record_count_shortcut_agrees_with_the_pattern_search(tmp_path, monkeypatch):
    monkeypatch.setattr(landing, "_CHUNK", 7)  # chunk edges fall everywhere
    rng = random.Random(15)
    path = tmp_path / "f.csv"
    for _ in range(400):
        alphabet = rng.choice([b"ab\n", b"ab\n\n", b"ab\r\n", b"a\r", b"abc,\n"])
        data = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 60)))
        path.write_bytes(data)
        facts = landing.scan_file(path)
        assert (facts.rows_in_file, facts.crlf, facts.lf, facts.cr) == _records_by_pattern(data)


# Text that is, or nearly is, each type: the clean check may pass only what the reasons pass.
TRICKY = {
    "DATE": ["2024-03-05", "2024-3-05", " 2024-03-05", "2024/03/05", "2024-02-30", "20240305"],
    "BIGINT": ["12", "-12", "007", "1e3", "0x10", "1.0", " 1", "1000000000000000000", "+1"],
    "INTEGER": ["2", "02", "2147483648", "1e1", " 2", "2.0", "-3"],
    "BOOLEAN": ["true", "TRUE", "False", "t", "1", "yes", " true"],
    "DECIMAL(18,4)": ["1.5", "1.23456", "1e6", "-0.0001", ".5", "1.", "99999999999999.9999"],
    "VARCHAR": ["gpt-4o", "  ", "", "a\tb", "a\x01b", "gpt 4o", "ünïcode", "a\nb", " x"],
}


@pytest.mark.parametrize("source", SOURCES.values(), ids=lambda s: s.name)
def test_the_clean_check_passes_no_row_the_reasons_reject(source):
    columns = list(source.columns)
    good = {name: _a_good_value(source, name) for name in columns}
    rows = [
        {**good, name: text}
        for name, type_ in source.columns.items()
        for text in TRICKY["DECIMAL(18,4)" if "DECIMAL" in type_ else type_]
    ]
    # Reasons about other rows or other data are not the clean check's to find.
    not_type_reasons = [rule.reason for rule in source.rules]
    with duckdb.connect() as con:
        tables.ensure_schema(con)
        con.execute(f"create table _parsed ({', '.join(f'{c} varchar' for c in columns)})")
        con.executemany(
            f"insert into _parsed values ({', '.join('?' for _ in columns)})",
            [[row[c] for c in columns] for row in rows],
        )
        for ref in source.references:
            con.execute(
                f"insert into raw.{ref.table} ({ref.column}, _source_file, _run_id) "
                "values ('cus_x', 'f', 'r')"
            )
        checked = rules.checked_sql(source)
        params = {k: v for k, v in {"file": "x", "file_month": None}.items() if f"${k}" in checked}
        reasons = dict(con.execute(f"select _ordinal, _reason from ({checked})", params).fetchall())
        clean = [
            ordinal
            for (ordinal,) in con.execute(
                "select rowid from _parsed where " + rules.clean_sql(source, columns)
            ).fetchall()
        ]
    assert len(clean) > len(columns)  # the check is not vacuous: every good variant passes
    wrongly_passed = {
        ordinal: reasons[ordinal]
        for ordinal in clean
        if reasons[ordinal]
        and reasons[ordinal] not in not_type_reasons
        and not reasons[ordinal].startswith("duplicate")
    }
    assert wrongly_passed == {}


def _a_good_value(source, name: str) -> str:
    if name in source.identifiers:
        return "cus_x"
    if name in source.accepted:
        return source.accepted[name][0]
    return {
        "DATE": "2024-03-05",
        "BIGINT": "1",
        "INTEGER": "2",
        "BOOLEAN": "true",
    }.get(source.columns[name], "1.5" if "DECIMAL" in source.columns[name] else "text")


def test_only_added_plain_files_of_their_own_month_go_together(tmp_path):
    spend = tmp_path / "spend"
    spend.mkdir()
    names = [
        "usage_2024_01.csv",
        "usage_2024_02.csv",
        "usage_2024_02_v2.csv",
        "usage_2024_03.csv.gz",
    ]
    for name in names:
        (spend / name).write_text(USAGE_HEADER)
    facts = landing.FileFacts("sha", 0, 0)
    stat = os.stat(spend / names[0])
    candidates = [
        load.Candidate(spend / n, f"spend/{n}", stat, landing.FileFacts(n, 0, 0), "added")
        for n in names
    ] + [
        load.Candidate(
            spend / "usage_2024_04.csv", "spend/usage_2024_04.csv", stat, facts, "replaced"
        )
    ]
    # Another file holds January: no file goes together (February has two files, the gzip
    # file and the restated one are never read together).
    current = {"spend/usage_2024_01_old.csv": ledger.Known("other", None, 0)}
    together, alone = batch.split_batch(candidates, current)
    assert together == [] and len(alone) == len(candidates)
    together, alone = batch.split_batch(candidates, {})
    assert [c.display for c in together] == ["spend/usage_2024_01.csv"]
    assert batch.can_batch(USAGE) and not batch.can_batch(SOURCES["customers"])
    # The usage file's customer ids are checked by finding them among the loaded customers.
    assert batch.checked_by_reference(USAGE) == {"customer_id"}


def test_a_read_that_fails_for_the_whole_part_loads_each_file_alone(tmp_path, monkeypatch):
    """A file the reader cannot read at all stops a read of many files: each then loads alone,
    where its problem refuses only that file, and the result is the per-file path's."""
    landing_dir = mixed_landing(tmp_path / "landing")
    failing = settings_for(landing_dir, tmp_path / "failing")
    alone = settings_for(landing_dir, tmp_path / "alone")

    def unreadable(*args):
        raise duckdb.InvalidInputException("Invalid Input Error: CSV Error on Line: 2")

    monkeypatch.setattr(batch, "_write_rows", unreadable)
    refused_failing = ingest_sources(failing, "run").refused
    monkeypatch.setattr("warehouse.ingest.ingest.can_batch", lambda source: False)
    refused_alone = ingest_sources(alone, "run").refused

    assert refused_failing == refused_alone
    assert state(failing) == state(alone)


def test_the_readers_typed_parse_passes_no_value_the_reasons_reject(tmp_path):
    """The fast path reads dates and accepted values typed (`rules.reader_types`): a value the
    reader parses must be one the reasons pass, and one it rejects one they reject."""
    typed = {n: t for n, t in rules.reader_types(USAGE).items() if t != "VARCHAR"}
    good = {name: _a_good_value(USAGE, name) for name in USAGE.columns}
    texts = {
        "usage_date": TRICKY["DATE"] + ["2024-03-5", "2024-03-05 00:00", "+2024-03-05", "0x10"],
        "product_line": [*USAGE.accepted["product_line"], "Copilot", " copilot", "copilot ", "x"],
    }
    assert set(texts) == set(typed)
    rows = [{**good, name: text} for name in typed for text in texts[name]]
    path = tmp_path / "typed.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([list(USAGE.columns)] + [list(r.values()) for r in rows])
    with duckdb.connect() as con:
        tables.ensure_schema(con)
        con.execute(
            "insert into raw.customers (customer_id, _source_file, _run_id) "
            "values ('cus_x', 'f', 'r')"
        )
        con.execute(
            f"create table _parsed as select * from read_csv($path, "
            f"{load.csv_options(dict.fromkeys(USAGE.columns, 'VARCHAR'))})",
            {"path": str(path)},
        )
        checked = rules.checked_sql(USAGE)
        params = {"file": "x", "file_month": None}
        reasons = dict(con.execute(f"select _ordinal, _reason from ({checked})", params).fetchall())
        con.execute(
            f"select * from read_csv($path, {load.csv_options(rules.reader_types(USAGE))})",
            {"path": str(path)},
        ).fetchall()
        rejected_lines = {
            line for (line,) in con.execute("select line from _reject_errors").fetchall()
        }
    type_reasons = {o for o, why in reasons.items() if why and "is not" in why}
    read = {o for o in reasons if o + 2 not in rejected_lines}  # line 1 is the header
    assert read & type_reasons == set()  # the reader passes nothing the reasons reject
    assert set(reasons) - read == type_reasons  # and rejects nothing they pass
    assert len(read) > 4 and type_reasons  # neither side is vacuous
