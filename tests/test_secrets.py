"""No secret is committed: every file git tracks is scanned for keys, tokens and literal
passwords. Secrets belong in `.env` (git-ignored) or are generated at run time."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import REPO

SECRET_PATTERNS = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "JSON web token": re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\."),
    "Fernet key": re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9_-]{43}=(?![A-Za-z0-9])"),
    # name = "literal" (or name: "literal") for a password, secret, token or key: a value,
    # not a reference to one (${VAR}, a call) nor a setting naming a file (*_FILE).
    "literal credential": re.compile(
        r"(?i)\b[\w.]*(password|passwd|secret|token|api_key|fernet_key)\w*(?<!file)\b[\"']?"
        r"(\s*=\s*|:\s*)[\"']([^\"'${}()\s<>…]{8,})[\"']"
    ),
}


def tracked_text_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    return [name for name in listed if name and not name.endswith((".png", ".lock"))]


def scan(text: str) -> list[str]:
    return [kind for kind, pattern in SECRET_PATTERNS.items() if pattern.search(text)]


# Planted secrets, assembled at run time so that this file itself holds none.
PLANTED = [
    "AIRFLOW__CORE__FERNET_KEY = " + '"hCxUaQFFSLhlAhcPBuA1' + 'oDvWhaqc1lJhlmIU9Sme1j4="',
    "SUPERSET_SECRET_KEY: " + "'Tr0ub4dor&3xkcd'",
    '{"password": ' + '"correct-horse-battery"}',
    "-----BEGIN OPENSSH " + "PRIVATE KEY-----",
]


@pytest.mark.parametrize("leak", PLANTED)
def test_the_scan_finds_planted_secrets(leak):
    assert scan(leak)


def test_no_tracked_file_holds_a_secret():
    findings = {}
    for name in tracked_text_files():
        path = REPO / name
        if not path.is_file():
            continue
        if kinds := scan(path.read_text(errors="replace")):
            findings[name] = kinds
    assert findings == {}
