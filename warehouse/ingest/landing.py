"""What is in the landing folder, file by file: which source each file belongs to, which files
are refused before they are read (a misplaced CSV, a monthly file with no valid month), and
which are ignored and why. Every file under the folder is one of the three: none is skipped
without a word.

Names match case-insensitively (`Usage_2026_05.CSV` is a usage file), and gzip-compressed
files (`.csv.gz`) are read as they are.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import BinaryIO

import numpy as np

from warehouse.ingest.sources import CSV_SUFFIXES, FILE_MONTH, SOURCES, USAGE, Source

_CHUNK = 1 << 20
# The longest line the CSV reader reads (its `max_line_size`): a longer line is rejected with
# its length, never read. The scan finds such lines by the chunks they span, so a chunk must be
# shorter than the limit.
MAX_LINE_BYTES = 2_000_000
assert _CHUNK < MAX_LINE_BYTES
# A line that starts with something other than a line break is a record (blank lines are not).
_RECORD_START = re.compile(rb"\n[^\r\n]")
_LF = ord("\n")


@dataclass
class Inventory:
    """The landing folder, classified."""

    files: dict[str, list[Path]] = field(default_factory=dict)  # source -> its files
    refused: dict[str, list[tuple[Path, str]]] = field(default_factory=dict)  # source -> why
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (file, why)


def display_path(path: Path, landing: Path) -> str:
    """How a landing file is named everywhere (ledger, rejects, messages): its path in the
    landing folder."""
    return path.relative_to(landing).as_posix()


def _csv_stem(name: str) -> str | None:
    """`customers` for `Customers.CSV` or `customers.csv.gz`; None for a name that is not CSV."""
    lowered = name.lower()
    for suffix in sorted(CSV_SUFFIXES, key=len, reverse=True):
        if lowered.endswith(suffix):
            return lowered[: -len(suffix)]
    return None


def file_month(path: Path) -> date | None:
    """The month a monthly file is for, from its name; None when the name has no valid month."""
    match = FILE_MONTH.search(path.name)
    if not match:
        return None
    year, month = int(match[1]), int(match[2])
    return date(year, month, 1) if 1 <= month <= 12 and year >= 1900 else None


def take_inventory(landing: Path) -> Inventory:
    """Classify every file under the landing folder."""
    inventory = Inventory(files={name: [] for name in SOURCES})
    top_level = {s.file_name: s for s in SOURCES.values() if s.file_name}
    folders = {s.folder: s for s in SOURCES.values() if s.folder}

    def refuse(source: Source, path: Path, why: str) -> None:
        inventory.refused.setdefault(source.name, []).append((path, why))

    # Every entry but a folder: a link (to anything) or a pipe is a file the examination refuses.
    for path in sorted(p for p in landing.rglob("*") if p.is_symlink() or not p.is_dir()):
        relative = path.relative_to(landing)
        shown = relative.as_posix()
        if any(part.startswith(".") for part in relative.parts):
            # Producers write under a hidden name and rename the file when it is complete.
            inventory.ignored.append((shown, "hidden: a file still being written, or not data"))
            continue
        stem = _csv_stem(path.name)
        if stem is None:
            inventory.ignored.append((shown, "not a CSV file (.csv or .csv.gz)"))
            continue
        if len(relative.parts) == 1 and stem in top_level:
            inventory.files[top_level[stem].name].append(path)
        elif len(relative.parts) == 2 and relative.parts[0].lower() in folders:
            source = folders[relative.parts[0].lower()]
            if file_month(path) is None:
                refuse(source, path, "no valid month in the name (expected e.g. usage_2024_03.csv)")
            else:
                inventory.files[source.name].append(path)
        else:
            # A CSV that belongs to no source is most likely usage in the wrong place.
            where = ", ".join(
                [f"{s.file_name}.csv" for s in top_level.values()]
                + [f"{s.folder}/<name with YYYY_MM>.csv" for s in folders.values()]
            )
            refuse(USAGE, path, f"not a landing file's place (landing files are {where})")
    return inventory


@dataclass(frozen=True)
class FileFacts:
    sha256: str
    size_bytes: int
    rows_in_file: int  # non-blank lines after the header
    crlf: int = 0  # line breaks of each kind
    lf: int = 0
    cr: int = 0
    ends_with_break: bool = True
    # (line number, bytes without the line break) of each line longer than MAX_LINE_BYTES
    long_lines: tuple[tuple[int, int], ...] = ()

    def line_break_problem(self) -> str | None:
        """Why the file's line breaks cannot be read as one CSV dialect, or None."""
        if self.cr:
            return (
                f"line breaks are a lone CR (\\r) on {self.cr:,} lines; "
                "save the file with LF or CRLF line breaks"
            )
        if self.crlf and self.lf:
            return (
                f"mixed line breaks ({self.crlf:,} CRLF and {self.lf:,} LF); "
                "save the file with one kind"
            )
        return None


def open_bytes(path: Path) -> BinaryIO:
    """The file's content, decompressed when it is gzip."""
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")
    return path.open("rb")


def _chunks(path: Path) -> Iterator[bytes]:
    with open_bytes(path) as handle:
        while chunk := handle.read(_CHUNK):
            yield chunk


def scan_file(path: Path) -> FileFacts:
    """Hash the file (as stored), count its records and its line breaks of each kind and find
    its over-long lines, in one streaming pass (flat memory at any size)."""
    digest = hashlib.sha256()
    size = records = crlf = lf = cr = 0
    since_break = 0  # bytes of the line the previous chunk ended in
    long_lines: list[tuple[int, int]] = []
    previous = b"\n"  # the first line starts a record like any line after a break
    carry = b""  # a CR at a chunk's end, until the next chunk says whether LF follows
    if path.name.lower().endswith(".gz"):
        with path.open("rb") as raw:
            while block := raw.read(_CHUNK):
                digest.update(block)
                size += len(block)
    for chunk in _chunks(path):
        if not path.name.lower().endswith(".gz"):
            digest.update(chunk)
            size += len(chunk)
        data = carry + chunk
        carry = b""
        if data.endswith(b"\r"):
            data, carry = data[:-1], b"\r"
        after_break = previous == b"\n"
        # A line longer than a chunk spans a chunk boundary: it ends at this chunk's first LF.
        first = data.find(b"\n")
        if first < 0:
            since_break += len(data)
        else:
            length = since_break + first - (data[first - 1 : first] == b"\r")
            if length > MAX_LINE_BYTES:
                long_lines.append((crlf + lf + cr + 1, length))
            since_break = len(data) - data.rfind(b"\n") - 1
        is_break = np.frombuffer(data, np.uint8) == _LF
        if b"\r" not in data and not (
            (after_break and data.startswith(b"\n")) or (is_break[1:] & is_break[:-1]).any()
        ):
            # The common case, LF only and no blank line, needs no pattern search: every line
            # break but a trailing one starts a record.
            breaks = int(np.count_nonzero(is_break))
            lf += breaks
            ends_with_break = data.endswith(b"\n") if data else after_break
            records += breaks + after_break - ends_with_break
        else:
            pairs = data.count(b"\r\n")
            crlf += pairs
            lf += data.count(b"\n") - pairs
            cr += data.count(b"\r") - pairs
            records += len(_RECORD_START.findall(previous + data))
        previous = data[-1:] or previous
    if since_break > MAX_LINE_BYTES:  # the last line, with no break after it
        long_lines.append((crlf + lf + cr + 1, since_break))
    cr += len(carry)
    last = carry or previous
    return FileFacts(
        digest.hexdigest(),
        size,
        max(records - 1, 0),
        crlf,
        lf,
        cr,
        ends_with_break=last in (b"\n", b"\r") or size == 0,
        long_lines=tuple(long_lines),
    )
