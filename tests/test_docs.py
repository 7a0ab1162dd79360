"""The docs a newcomer reads: the README's contents, every link and path they name, and the
table of settings, generated from `Settings` (`python -m warehouse.settings --write-docs`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO
from warehouse.settings import CONFIGURATION_DOC, documented

README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
LINKED = [*PAGES, REPO / "benchmarks" / "README.md"]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
# A path in the repository, as the docs write one in backticks.
REPO_PATH = re.compile(
    r"`((?:warehouse|dags|dbt_project|tests|bi|docker|benchmarks|expectations|seeds|docs)/"
    r"[\w./-]*)`"
)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


def test_the_configuration_table_is_the_one_settings_generates():
    page = CONFIGURATION_DOC.read_text()
    assert documented(page) == page, (
        "docs/configuration.md differs from Settings: run "
        "`.venv/bin/python -m warehouse.settings --write-docs`"
    )


def test_the_readme_is_short_and_its_contents_list_every_section():
    text = README.read_text()
    sections = re.findall(r"^## (.+)$", FENCE.sub("", text), re.MULTILINE)
    contents = re.findall(r"^\d+\. \[[^\]]+\]\(#([^)]+)\)$", text, re.MULTILINE)

    assert len(text.splitlines()) < 250
    assert contents == [_slug(s) for s in sections if s != "Contents"]


@pytest.mark.parametrize("page", LINKED, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_reaches_a_file_and_heading(page: Path):
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or (anchor and file.suffix == ".md" and anchor not in _anchors(file)):
            broken.append(target)
    assert broken == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_path_the_docs_name_exists(page: Path):
    named = REPO_PATH.findall(page.read_text())
    assert [path for path in named if not (REPO / path).exists()] == []
