"""New work for a run over an already published landing folder, shared by the fault tests
(tests/test_faults.py), the runtime, publish and alert tests."""

from __future__ import annotations

from pathlib import Path


def restate_and_add_a_month(landing: Path) -> None:
    """November restated (amounts +1%) and January 2025 added: work for dbt's incremental fact."""
    november = landing / "spend" / "usage_2024_11.csv"
    lines = november.read_text().splitlines()
    restated = [lines[0]] + [
        ",".join([*line.split(",")[:-1], f"{float(line.split(',')[-1]) * 1.01:.2f}"])
        for line in lines[1:]
    ]
    november.write_text("\n".join(restated) + "\n")
    december = (landing / "spend" / "usage_2024_12.csv").read_text().splitlines()
    (landing / "spend" / "usage_2025_01.csv").write_text(
        "\n".join([december[0]] + [r.replace("2024-12-", "2025-01-") for r in december[1:]]) + "\n"
    )


def add_tiktok_double(landing: Path) -> str:
    """March 2024 restated with TikTok's spend doubled; returns the original text."""
    march = landing / "spend" / "usage_2024_03.csv"
    original = march.read_text()
    lines = original.splitlines()
    doubled = [lines[0]]
    for line in lines[1:]:
        *fields, tokens, amount = line.split(",")
        if fields[1] == "cus_tiktok":
            tokens, amount = str(int(tokens) * 2), f"{float(amount) * 2:.2f}"
        doubled.append(",".join([*fields, tokens, amount]))
    march.write_text("\n".join(doubled) + "\n")
    return original
