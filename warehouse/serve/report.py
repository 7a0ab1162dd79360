"""The analysts' report: one offline HTML page with charts of the published marts.

Rendered after each publish (by the `ai_revenue_report` DAG, scheduled on the published Asset)
from the published warehouse, opened read-only. Each chart is a PNG written beside the page and
embedded in it as a data URI, so `index.html` opens anywhere, offline: no scripts, no CDN. The
files are written under temporary names and moved into place, the page last, so the page
always shows one publish's charts.
"""

from __future__ import annotations

import base64
import html
import io
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure  # without pyplot: no display, no global state
from matplotlib.ticker import PercentFormatter

from warehouse.serve.query import open_published
from warehouse.settings import Settings

PRODUCT_LINE = "azure_openai"
LEVELS = {"customer": "by customer", "parent_company": "by parent company"}
# Customer and parent lines often coincide (TikTok is ByteDance's only customer): dash one.
LINE_STYLES = {"customer": "-", "parent_company": "--"}
TOP_CUSTOMERS = 5


@dataclass
class Chart:
    file_name: str
    title: str
    caption: str
    figure: Figure


def _frames(warehouse: Path) -> dict[str, pd.DataFrame]:
    """What the charts and tables show, read in one read-only connection (one snapshot)."""
    queries = {
        "publication": "select run_id, published_at, git_revision from meta.publication",
        "concentration": """
            select month, level, total_spend_usd::double as total_spend_usd,
                   top_customer_name, top1_share, top5_share, hhi, concentration_level
            from marts.fct_revenue_concentration
            where product_line = $product order by month, level""",
        "customers": """
            select month, customer_name, spend_usd::double as spend_usd, share, rank_in_month
            from marts.fct_customer_monthly_spend
            where product_line = $product order by month, rank_in_month""",
        "segments": """
            select month, segment, share
            from marts.fct_segment_monthly_spend
            where product_line = $product order by month, segment""",
        "quarters": """
            select format('FY{:02d} Q{}', fiscal_year % 100, fiscal_quarter) as quarter,
                   azure_growth_pct::double as azure_growth_pct,
                   azure_consensus_pct::double as azure_consensus_pct,
                   azure_openai_spend_usd::double as azure_openai_spend_usd, usage_months
            from marts.fct_quarterly_earnings order by quarter_start""",
    }
    with open_published(warehouse) as con:
        return {
            name: con.execute(sql, {"product": PRODUCT_LINE} if "$product" in sql else None).df()
            for name, sql in queries.items()
        }


def _monthly(axis) -> None:
    """Readable month ticks and a light grid on a time axis."""
    locator = AutoDateLocator()
    axis.xaxis.set_major_locator(locator)
    axis.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    axis.grid(alpha=0.3)


def _concentration_chart(concentration: pd.DataFrame) -> Chart:
    figure = Figure(figsize=(11, 4), layout="constrained")
    share_axis, hhi_axis = figure.subplots(1, 2)
    for level, label in LEVELS.items():
        rows = concentration[concentration.level == level]
        style = LINE_STYLES[level]
        share_axis.plot(rows.month, rows.top1_share, style, marker=".", label=label)
        hhi_axis.plot(rows.month, rows.hhi, style, marker=".", label=label)
    share_axis.set_title("Largest customer's share of revenue")
    share_axis.yaxis.set_major_formatter(PercentFormatter(1.0))
    for threshold, grade in ((1000, "moderately concentrated"), (1800, "highly concentrated")):
        hhi_axis.axhline(threshold, color="grey", linestyle="--", linewidth=0.8)
        hhi_axis.annotate(grade, (concentration.month.min(), threshold), fontsize=8, va="bottom")
    hhi_axis.set_title("HHI (0-10,000)")
    for axis in (share_axis, hhi_axis):
        _monthly(axis)
        axis.legend()
    return Chart(
        "concentration.png",
        "Concentration over time",
        f"{PRODUCT_LINE} revenue: the top customer's share and the Herfindahl-Hirschman Index, "
        "per customer and per parent company (entities under common control summed).",
        figure,
    )


def _top_customers_chart(customers: pd.DataFrame) -> Chart:
    latest = customers[customers.month == customers.month.max()]
    names = latest.nsmallest(TOP_CUSTOMERS, "rank_in_month").customer_name.tolist()
    figure = Figure(figsize=(11, 4), layout="constrained")
    axis = figure.subplots()
    for name in names:
        rows = customers[customers.customer_name == name]
        axis.plot(rows.month, rows.spend_usd / 1e6, marker=".", label=name)
    axis.set_ylabel("USD millions a month")
    _monthly(axis)
    axis.legend()
    return Chart(
        "top_customers.png",
        "Top customers' monthly spend",
        f"The {TOP_CUSTOMERS} largest {PRODUCT_LINE} customers of the latest month, "
        "over every month.",
        figure,
    )


def _segment_mix_chart(segments: pd.DataFrame) -> Chart:
    mix = segments.pivot_table(index="month", columns="segment", values="share", fill_value=0)
    figure = Figure(figsize=(11, 4), layout="constrained")
    axis = figure.subplots()
    axis.stackplot(mix.index, mix.T.to_numpy(), labels=mix.columns)
    axis.yaxis.set_major_formatter(PercentFormatter(1.0))
    axis.set_ylim(0, 1)
    _monthly(axis)
    axis.legend(loc="upper left", fontsize=8)
    return Chart(
        "segment_mix.png",
        "Segment mix",
        f"Each customer segment's share of {PRODUCT_LINE} revenue by month.",
        figure,
    )


def _azure_growth_chart(quarters: pd.DataFrame) -> Chart:
    figure = Figure(figsize=(11, 4), layout="constrained")
    growth_axis, revenue_axis = figure.subplots(1, 2)
    growth = quarters.dropna(subset=["azure_growth_pct"])
    growth_axis.plot(growth.quarter, growth.azure_growth_pct, marker="o", label="reported")
    consensus = quarters.dropna(subset=["azure_consensus_pct"])
    growth_axis.plot(
        consensus.quarter, consensus.azure_consensus_pct, "s--", label="consensus (approx.)"
    )
    growth_axis.set_title("Azure growth, year on year (%)")
    revenue = quarters.dropna(subset=["azure_openai_spend_usd"])
    colours = ["tab:blue" if months == 3 else "lightsteelblue" for months in revenue.usage_months]
    revenue_axis.bar(revenue.quarter, revenue.azure_openai_spend_usd / 1e6, color=colours)
    revenue_axis.set_title(f"{PRODUCT_LINE} revenue per quarter (USD millions)")
    for axis in (growth_axis, revenue_axis):
        axis.tick_params(axis="x", labelrotation=60, labelsize=8)
        axis.grid(alpha=0.3)
    growth_axis.legend()
    return Chart(
        "azure_growth.png",
        "Azure growth against expectations",
        "Reported Azure growth against the market's expectation per fiscal quarter, next to "
        f"{PRODUCT_LINE} revenue from usage (pale bars: quarters with partial usage data).",
        figure,
    )


def _headline_rows(concentration: pd.DataFrame) -> list[list[str]]:
    latest = concentration[concentration.month == concentration.month.max()]
    return [
        [
            LEVELS[row.level],
            f"${row.total_spend_usd / 1e6:,.1f}M",
            row.top_customer_name,
            f"{row.top1_share:.1%}",
            f"{row.top5_share:.1%}",
            f"{row.hhi:,.0f} ({row.concentration_level})",
        ]
        for row in latest.itertuples()
    ]


def _top_customer_rows(customers: pd.DataFrame) -> list[list[str]]:
    latest = customers[customers.month == customers.month.max()].nsmallest(10, "rank_in_month")
    return [
        [str(row.rank_in_month), row.customer_name, f"${row.spend_usd:,.0f}", f"{row.share:.1%}"]
        for row in latest.itertuples()
    ]


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3rem 0.8rem; text-align: left; }
img { max-width: 100%; }
.meta { color: #666; font-size: 0.9rem; }
"""


def _page(frames: dict[str, pd.DataFrame], charts: list[Chart], images: dict[str, bytes]) -> str:
    publication = frames["publication"].iloc[0]
    month = frames["concentration"].month.max()
    sections = "".join(
        f"<section><h2>{html.escape(chart.title)}</h2><p>{html.escape(chart.caption)}</p>"
        f'<img alt="{html.escape(chart.title)}" src="data:image/png;base64,'
        f'{base64.b64encode(images[chart.file_name]).decode()}"></section>'
        for chart in charts
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>AI revenue concentration</title><style>{STYLE}</style></head><body>"
        "<h1>AI revenue concentration</h1>"
        f'<p class="meta">Published run {html.escape(str(publication.run_id))} at '
        f"{html.escape(str(publication.published_at))}. Customers other than TikTok/ByteDance, "
        "Walmart, Intuit and G42 are synthetic; the real ones are calibrated to public "
        "reporting.</p>"
        f"<h2>{PRODUCT_LINE} in {month:%B %Y}</h2>"
        + _table(
            ["level", "revenue", "largest", "top-1 share", "top-5 share", "HHI"],
            _headline_rows(frames["concentration"]),
        )
        + _table(["rank", "customer", "spend", "share"], _top_customer_rows(frames["customers"]))
        + sections
        + "</body></html>\n"
    )


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def render_report(settings: Settings) -> Path:
    """Render the report of the published warehouse; returns the path of `index.html`."""
    frames = _frames(settings.published_db)
    out_dir = settings.report_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    charts = [
        _concentration_chart(frames["concentration"]),
        _top_customers_chart(frames["customers"]),
        _segment_mix_chart(frames["segments"]),
        _azure_growth_chart(frames["quarters"]),
    ]
    images = {chart.file_name: _png(chart.figure) for chart in charts}
    files = {**images, "index.html": _page(frames, charts, images).encode()}
    suffix = f".tmp-{os.getpid()}"
    for name, content in files.items():  # index.html last
        temporary = out_dir / f".{name}{suffix}"
        temporary.write_bytes(content)
        os.replace(temporary, out_dir / name)
    return out_dir / "index.html"
