"""Deterministic, calibrated generator of the landing files.

Customer-level spend is not public beyond a few reported figures, so the usage files are
synthetic: each customer gets a monthly spend target per product line (the real customers'
targets are calibrated to the reported claims, see seeds/README.md), and the target is spread
over days (weekday/weekend, in-month growth, noise) and models. Every number comes from a
random generator seeded by a fixed seed and the row's own coordinates, so the same seed
always writes the same bytes, and rows are written as they are made (flat memory at any size).
"""

from __future__ import annotations

import calendar
import csv
import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from warehouse.ingest.sources import CUSTOMERS, EARNINGS, USAGE
from warehouse.reference import ACCEPTED
from warehouse.synthetic.reported import earnings_rows, real_customers

DEFAULT_SEED = 20240731  # the day the reference report was published
FIRST_MONTH = date(2023, 1, 1)
MONTH_COUNT = 24  # 2023-01 to 2024-12
DEFAULT_TAIL = 30
SYNTHETIC_SOURCE = "synthetic (warehouse.generate, fixed seed)"
REAL_SPEND_NOTE = "customer is real; its spend in the usage files is synthetic, calibrated"

Month = tuple[int, int]


def months() -> list[date]:
    return [_add_months(FIRST_MONTH, i) for i in range(MONTH_COUNT)]


def _add_months(day: date, count: int) -> date:
    index = day.year * 12 + day.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


def _interpolate(anchors: dict[Month, float], month: date) -> float:
    """Log-linear between anchor months; zero before the first anchor, flat after the last."""
    points = sorted(anchors.items())
    index = month.year * 12 + month.month
    keyed = [(y * 12 + m, value) for (y, m), value in points]
    if index < keyed[0][0]:
        return 0.0
    for (i0, v0), (i1, v1) in itertools.pairwise(keyed):
        if i0 <= index <= i1:
            return v0 * (v1 / v0) ** ((index - i0) / (i1 - i0))
    return keyed[-1][1]


# Monthly revenue targets in USD. azure_openai is the business the reported claims are about:
# about $80M in 2024-03 and about $1B annualised by mid-2024, growing throughout.
PRODUCT_TOTALS: dict[str, dict[Month, float]] = {
    "azure_openai": {
        (2023, 1): 9.0e6,
        (2023, 6): 26e6,
        (2023, 12): 58e6,
        (2024, 3): 79.5e6,
        (2024, 6): 90e6,
        (2024, 12): 112e6,
    },
    # Microsoft 365 Copilot reached general availability in November 2023.
    "copilot": {(2023, 11): 6e6, (2024, 6): 21e6, (2024, 12): 38e6},
}

# Targets of the named customers; the synthetic tail shares what is left of each total.
NAMED_TARGETS: dict[tuple[str, str], dict[Month, float]] = {
    # TikTok: just under $20M in 2024-03, about a quarter of that month's azure_openai total.
    ("cus_tiktok", "azure_openai"): {
        (2023, 3): 0.6e6,
        (2023, 9): 6e6,
        (2023, 12): 13e6,
        (2024, 3): 19.6e6,
        (2024, 6): 20.4e6,
        (2024, 12): 21.5e6,
    },
    ("cus_walmart", "azure_openai"): {
        (2023, 5): 0.5e6,
        (2024, 1): 4.1e6,
        (2024, 3): 4.7e6,
        (2024, 12): 6.5e6,
    },
    ("cus_intuit", "azure_openai"): {
        (2023, 9): 0.8e6,
        (2024, 1): 3.0e6,
        (2024, 3): 3.6e6,
        (2024, 12): 5.0e6,
    },
    # G42: Microsoft invested in it on 2024-04-16; millions a month from 2024-04 on.
    ("cus_g42", "azure_openai"): {(2024, 4): 1.5e6, (2024, 12): 6.0e6},
    ("cus_walmart", "copilot"): {(2023, 11): 0.4e6, (2024, 12): 2.5e6},
    ("cus_intuit", "copilot"): {(2023, 11): 0.2e6, (2024, 12): 1.2e6},
}

# A synthetic parent whose subsidiaries are each below 10% of azure_openai but together above
# it, so that concentration by parent company (ASC 280) differs from concentration by customer.
GROUP_PARENT = "Synthetic Holdings Group"
GROUP_TOTAL = {(2023, 1): 1.0e6, (2024, 3): 9.0e6, (2024, 12): 12.5e6}
GROUP_MEMBERS = [
    ("cus_synth_holdings_retail", "Synthetic Holdings Retail", "retail", 0.30),
    ("cus_synth_holdings_media", "Synthetic Holdings Media", "media", 0.25),
    ("cus_synth_holdings_bank", "Synthetic Holdings Bank", "banking", 0.20),
    ("cus_synth_holdings_health", "Synthetic Holdings Health", "healthcare", 0.15),
    ("cus_synth_holdings_travel", "Synthetic Holdings Travel", "travel", 0.10),
]
for _id, _name, _industry, _weight in GROUP_MEMBERS:
    NAMED_TARGETS[(_id, "azure_openai")] = {k: v * _weight for k, v in GROUP_TOTAL.items()}

# USD per 1,000 tokens (list-price scale), the month each model became available, and its
# base weight in a customer's mix; newer models take share as they arrive.
MODELS = {
    "azure_openai": [
        ("gpt-35-turbo", 0.002, (2023, 1), 1.0),
        ("gpt-4", 0.045, (2023, 3), 2.0),
        ("gpt-4-turbo", 0.02, (2023, 11), 2.5),
        ("gpt-4o", 0.0075, (2024, 5), 3.0),
        ("text-embedding-ada-002", 0.0001, (2023, 1), 0.3),
    ],
    "copilot": [("m365-copilot", 0.01, (2023, 11), 1.0)],
}

_TAIL_INDUSTRIES = ["retail", "software", "banking", "media", "healthcare", "education"]
# The tail draws from every accepted segment but `strategic`, which marks named partners.
_TAIL_SEGMENTS = [segment for segment in ACCEPTED["segments"] if segment != "strategic"]
if unknown := set(MODELS) - set(ACCEPTED["product_lines"]):
    raise ValueError(f"product lines {sorted(unknown)} are not in the accepted set")


@dataclass(frozen=True)
class Customer:
    customer_id: str
    customer_name: str
    parent_company: str
    industry: str
    segment: str
    hq_country: str
    is_synthetic: bool
    source: str


@dataclass(frozen=True)
class TailTraits:
    weight: float
    trend: float  # monthly log growth relative to the tail
    start: int  # first active month index
    churn: int  # first inactive month index (MONTH_COUNT: never churns)
    copilot: bool


class Plan:
    """Who spends how much per month and product line, for a tail of `tail_size` customers."""

    def __init__(self, tail_size: int = DEFAULT_TAIL, seed: int = DEFAULT_SEED):
        self.seed = seed
        self.customers: list[Customer] = [
            Customer(**{**row, "is_synthetic": False}) for row in real_customers()
        ]
        self.customers += [
            Customer(
                cid,
                name,
                GROUP_PARENT,
                industry,
                "enterprise",
                "US",
                True,
                SYNTHETIC_SOURCE,
            )
            for cid, name, industry, _ in GROUP_MEMBERS
        ]
        self.tail: dict[str, TailTraits] = {}
        rng = random.Random(f"{seed}/tail")
        for i in range(tail_size):
            industry = _TAIL_INDUSTRIES[i % len(_TAIL_INDUSTRIES)]
            customer_id = f"cus_synth_{i + 1:06d}"
            self.customers.append(
                Customer(
                    customer_id,
                    f"Synthetic {industry.title()} Co {i + 1:06d}",
                    f"Synthetic {industry.title()} Co {i + 1:06d}",
                    industry,
                    _TAIL_SEGMENTS[rng.randrange(len(_TAIL_SEGMENTS))],
                    rng.choice(["US", "US", "US", "GB", "DE", "JP", "IN", "FR"]),
                    True,
                    SYNTHETIC_SOURCE,
                )
            )
            churns = rng.random() < 0.15
            self.tail[customer_id] = TailTraits(
                weight=1.0 / (i + 1) ** 0.75,
                trend=rng.uniform(-0.04, 0.06),
                start=0 if i < max(3, tail_size // 5) else rng.randrange(0, 18),
                churn=rng.randrange(13, MONTH_COUNT) if churns else MONTH_COUNT,
                copilot=rng.random() < 0.5,
            )
        self._tail_norm: dict[tuple[str, int], float] = {}
        self._tail_total: dict[tuple[str, date], float] = {}

    def _tail_score(self, customer_id: str, product_line: str, index: int) -> float:
        traits = self.tail[customer_id]
        if not traits.start <= index < traits.churn:
            return 0.0
        if product_line == "copilot" and not traits.copilot:
            return 0.0
        return traits.weight * math.exp(traits.trend * index)

    def target(self, customer_id: str, product_line: str, month: date) -> float:
        """The customer's spend target for the month (0 when it does not spend)."""
        named = NAMED_TARGETS.get((customer_id, product_line))
        if named is not None:
            return _interpolate(named, month)
        if customer_id not in self.tail:
            return 0.0
        index = (month.year - FIRST_MONTH.year) * 12 + month.month - 1
        score = self._tail_score(customer_id, product_line, index)
        if score == 0.0:
            return 0.0
        key = (product_line, index)
        if key not in self._tail_norm:
            self._tail_norm[key] = sum(
                self._tail_score(cid, product_line, index) for cid in self.tail
            )
        return self.tail_total(product_line, month) * score / self._tail_norm[key]

    def tail_total(self, product_line: str, month: date) -> float:
        key = (product_line, month)
        if key not in self._tail_total:
            self._tail_total[key] = self._left_for_tail(product_line, month)
        return self._tail_total[key]

    def _left_for_tail(self, product_line: str, month: date) -> float:
        named = sum(
            _interpolate(anchors, month)
            for (_, line), anchors in NAMED_TARGETS.items()
            if line == product_line
        )
        return max(_interpolate(PRODUCT_TOTALS[product_line], month) - named, 0.0)


def _day_weights(rng: random.Random, month: date) -> list[float]:
    days = calendar.monthrange(month.year, month.month)[1]
    weights = []
    for day in range(1, days + 1):
        weekday = date(month.year, month.month, day).weekday()
        weekend = 0.72 if weekday >= 5 else 1.0
        weights.append(weekend * (1 + 0.01 * day) * rng.uniform(0.88, 1.12))
    total = sum(weights)
    return [w / total for w in weights]


def _model_mix(
    rng: random.Random, product_line: str, month: date
) -> list[tuple[str, float, float]]:
    available = [m for m in MODELS[product_line] if (month.year, month.month) >= m[2]]
    chosen = [m for m in available if rng.random() < 0.75] or available[:1]
    weights = [base * rng.uniform(0.5, 1.5) for _, _, _, base in chosen]
    total = sum(weights)
    return [
        (name, price, w / total) for (name, price, _, _), w in zip(chosen, weights, strict=True)
    ]


def _customer_month(
    plan: Plan, customer_id: str, product_line: str, month: date
) -> tuple[float, random.Random, list[tuple[str, float, float]]] | None:
    """The target, the seeded generator and the model mix of one customer's month."""
    target = plan.target(customer_id, product_line, month)
    if target <= 0:
        return None
    rng = random.Random(f"{plan.seed}/{customer_id}/{product_line}/{month}")
    return target, rng, _model_mix(rng, product_line, month)


def usage_lines(plan: Plan, month: date) -> Iterator[str]:
    """The month's daily CSV lines: usage_date, customer_id, product_line, model, tokens, amount."""
    for customer in plan.customers:
        for product_line in MODELS:
            drawn = _customer_month(plan, customer.customer_id, product_line, month)
            if drawn is None:
                continue
            target, rng, mix = drawn
            prefix = f"{customer.customer_id},{product_line},"
            for day, day_weight in enumerate(_day_weights(rng, month), start=1):
                usage_date = date(month.year, month.month, day).isoformat()
                for model, price, model_weight in mix:
                    amount = round(target * day_weight * model_weight, 2)
                    tokens = round(amount / price * 1000)
                    yield f"{usage_date},{prefix}{model},{tokens},{amount:.2f}\n"


def count_usage_rows(plan: Plan) -> int:
    """How many usage rows the plan makes, without making them."""
    total = 0
    for month in months():
        days = calendar.monthrange(month.year, month.month)[1]
        for customer in plan.customers:
            for product_line in MODELS:
                drawn = _customer_month(plan, customer.customer_id, product_line, month)
                total += days * len(drawn[2]) if drawn else 0
    return total


def _tail_for_rows(rows: int, seed: int) -> tuple[int, int]:
    """The smallest tail that makes at least `rows` usage rows (rows grow with the tail), and
    the number of rows it makes. Being the smallest, thinning it to `rows` drops less than one
    tail customer's rows, so every customer's spend stays as calibrated."""
    base = count_usage_rows(Plan(0, seed))
    if base >= rows:
        return 0, base
    per_customer = (count_usage_rows(Plan(DEFAULT_TAIL, seed)) - base) / DEFAULT_TAIL
    low, high = 0, max(1, math.ceil((rows - base) / per_customer))
    while (available := count_usage_rows(Plan(high, seed))) < rows:
        low, high = high, math.ceil(high * 1.1) + 1
    # Bisect: low always makes too few rows, high enough.
    while high - low > 1:
        middle = (low + high) // 2
        if (made := count_usage_rows(Plan(middle, seed))) >= rows:
            high, available = middle, made
        else:
            low = middle
    return high, available


def write_landing(
    out: Path,
    *,
    rows: int | None = None,
    seed: int = DEFAULT_SEED,
    tail: int = DEFAULT_TAIL,
) -> dict[str, int]:
    """Write customers.csv, earnings.csv and spend/usage_YYYY_MM.csv into `out`.

    With `rows`, the synthetic tail grows until the files hold at least that many rows, then
    rows are thinned evenly so that exactly `rows` are written; the named customers' calibration
    holds at any size. Returns the number of rows written per file.
    """
    available = 0
    if rows is not None:
        tail, available = _tail_for_rows(rows, seed)
    plan = Plan(tail, seed)
    (out / "spend").mkdir(parents=True, exist_ok=True)
    counts = {
        "customers.csv": _write_csv(
            out / "customers.csv",
            CUSTOMERS.header,
            ([*vars(c).values()] for c in plan.customers),
        ),
        "earnings.csv": _write_csv(
            out / "earnings.csv", EARNINGS.header, (row.values() for row in earnings_rows())
        ),
    }
    seen = kept = 0
    for month in months():
        name = f"spend/usage_{month:%Y_%m}.csv"
        written = 0
        with (out / name).open("w", encoding="utf-8", newline="") as handle:
            handle.write(",".join(USAGE.header) + "\n")
            for line in usage_lines(plan, month):
                seen += 1
                # Thin evenly: keep a row when it carries the running quota past a whole number.
                if rows is None or (seen * rows) // available > kept:
                    kept += 1
                    written += 1
                    handle.write(line)
        counts[name] = written
    return counts


def _write_csv(path: Path, header: list[str], rows) -> int:
    count = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow("" if value is None else _format(value) for value in row)
            count += 1
    return count


def _format(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.0f}" if value >= 1e6 else f"{value:g}"
    return str(value)
