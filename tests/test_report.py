"""The report DAG renders one offline page with its charts, which a real browser displays."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess

import pytest
from matplotlib.image import imread

from warehouse.runtime.run import run_once
from warehouse.settings import REPORT_DAG_ID

pytestmark = pytest.mark.slow

CHARTS = {"concentration.png", "top_customers.png", "segment_mix.png", "azure_growth.png"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def report(published):
    """The report DAG run once (dag.test()) over a copy of a published warehouse."""
    report_run = run_once(published, published.logs_dir / "report.log", dag_id=REPORT_DAG_ID)
    assert report_run.succeeded, report_run.log_file.read_text()[-3000:]
    return published.report_dir, json.loads(published.manifest.read_text())


def test_report_is_one_offline_page_with_its_charts(report):
    folder, manifest = report
    page = (folder / "index.html").read_text()

    assert {p.name for p in folder.iterdir()} == CHARTS | {"index.html"}
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(embedded) == len(CHARTS)
    # Each chart in the page is the PNG beside it.
    assert sorted(base64.b64decode(data) for data in embedded) == sorted(
        (folder / name).read_bytes() for name in CHARTS
    )
    for name in CHARTS:
        assert (folder / name).read_bytes().startswith(PNG_MAGIC)
    # Offline: nothing fetched from anywhere, no scripts.
    assert "<script" not in page
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert manifest["run_id"] in page
    assert "TikTok" in page and "HHI" in page


def test_report_renders_in_headless_chromium(report, tmp_path):
    folder, _ = report
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: `make test` installs Debian's chromium package"
    screenshot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--window-size=1200,2400",
            f"--screenshot={screenshot}",
            (folder / "index.html").as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pixels = imread(screenshot)[..., :3]
    # Not blank: a real page of text and charts, many colours, much of it not background.
    not_white = (pixels < 0.95).any(axis=-1).mean()
    colours = len({tuple(p) for p in (pixels[::7, ::7] * 255).astype(int).reshape(-1, 3)})
    assert not_white > 0.05
    assert colours > 50
