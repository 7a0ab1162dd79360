"""Deterministic, calibrated generator of the landing files.

Customer-level spend is not public beyond a few reported figures, so the usage files are
synthetic: each customer gets a monthly spend target per product line (the real customers'
targets are calibrated to the reported claims, see seeds/README.md), and the target is spread
over days (weekday/weekend, in-month growth, noise) and models. Every number comes from a
random generator seeded by a fixed seed and the row's own coordinates, so the same seed
always writes the same bytes.

Two plans feed one writer. `Plan` (the default, the committed seeds) draws each customer-month
with its own `random.Random`; `ScaledPlan` (`rows=N`) draws the same distributions by hashing
the seed and the coordinates, so the rows a tail size makes are counted without making them and
any month can be made on its own, in parallel. The writer expands customer-months into rows and
CSV bytes with numpy, a bounded chunk at a time (flat memory at any size).
"""

from __future__ import annotations

import calendar
import csv
import ctypes
import functools
import itertools
import math
import multiprocessing
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

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


# --- Rows: customer-months expanded to rows and written as CSV bytes, vectorised ----------------
#
# Both plans below hand the writer the same thing, one month at a time: its customer-months in
# file order (who, which product line, the target, the day weights, the model mix). The writer
# turns them into rows (day-major, then the mix's models) and CSV bytes with numpy, a chunk of
# at most CHUNK_ROWS rows at a time, so memory stays flat at any size.

PRODUCT_LINES = list(MODELS)
# Every model once; its position is its id in the arrays below.
_MODEL_TABLE = [
    (line, name, price, since, base)
    for line, models in MODELS.items()
    for name, price, since, base in models
]
_MODEL_ID = {(line, name): i for i, (line, name, *_) in enumerate(_MODEL_TABLE)}
_PRICES = np.array([price for _, _, price, _, _ in _MODEL_TABLE])
CHUNK_ROWS = 1 << 18


@dataclass
class _Batch:
    """Consecutive customer-months of one month, in file order."""

    customer: np.ndarray  # index into the plan's customers
    product: np.ndarray  # index into PRODUCT_LINES
    target: np.ndarray  # the month's spend target, USD
    day_weights: np.ndarray  # (customer-months, days of the month), each row summing to 1
    models: np.ndarray  # how many models each customer-month's mix has
    model_id: np.ndarray  # the mixes one after another: index into _MODEL_TABLE
    model_weight: np.ndarray  # their weights (each mix sums to 1)


class _BatchBuilder:
    """Collects customer-months drawn one by one (the seeds' generator) into batches."""

    def __init__(self, days: int):
        self.days = days
        self.rows = 0
        self.customer: list[int] = []
        self.product: list[int] = []
        self.target: list[float] = []
        self.day_weights: list[list[float]] = []
        self.models: list[int] = []
        self.model_id: list[int] = []
        self.model_weight: list[float] = []

    def add(self, customer, product, target, day_weights, mix) -> None:
        self.customer.append(customer)
        self.product.append(product)
        self.target.append(target)
        self.day_weights.append(day_weights)
        self.models.append(len(mix))
        line = PRODUCT_LINES[product]
        self.model_id += [_MODEL_ID[(line, name)] for name, _, _ in mix]
        self.model_weight += [weight for _, _, weight in mix]
        self.rows += self.days * len(mix)

    def batch(self) -> _Batch:
        return _Batch(
            np.array(self.customer, dtype=np.int64),
            np.array(self.product, dtype=np.int64),
            np.array(self.target, dtype=np.float64),
            np.array(self.day_weights, dtype=np.float64).reshape(-1, self.days),
            np.array(self.models, dtype=np.int64),
            np.array(self.model_id, dtype=np.int64),
            np.array(self.model_weight, dtype=np.float64),
        )


def _plan_batches(plan: Plan, month: date) -> Iterator[_Batch]:
    """The month's customer-months as the seeds were always drawn: one `random.Random` each."""
    days = calendar.monthrange(month.year, month.month)[1]
    builder = _BatchBuilder(days)
    for index, customer in enumerate(plan.customers):
        for product, product_line in enumerate(PRODUCT_LINES):
            drawn = _customer_month(plan, customer.customer_id, product_line, month)
            if drawn is None:
                continue
            target, rng, mix = drawn
            builder.add(index, product, target, _day_weights(rng, month), mix)
            if builder.rows >= CHUNK_ROWS:
                yield builder.batch()
                builder = _BatchBuilder(days)
    if builder.customer:
        yield builder.batch()


def _expand(batch: _Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row, in file order: its customer-month, day (0-based), mix entry and unrounded USD."""
    days = batch.day_weights.shape[1]
    per_month = days * batch.models
    month_of = np.repeat(np.arange(len(per_month)), per_month)
    local = np.arange(len(month_of)) - (np.cumsum(per_month) - per_month)[month_of]
    models = batch.models[month_of]
    day = local // models
    entry = (np.cumsum(batch.models) - batch.models)[month_of] + (local - day * models)
    # The same operations in the same order as `target * day_weight * model_weight`.
    amount = batch.target[month_of] * batch.day_weights[month_of, day] * batch.model_weight[entry]
    return month_of, day, entry, amount


def _cents(amount: np.ndarray) -> np.ndarray:
    """`round(amount, 2)` in whole cents, exactly as Python rounds (correctly, ties to even)."""
    scaled = amount * 100.0
    cents = np.rint(scaled)
    # `scaled` is within half an ulp of the exact amount x 100, so rounding it can differ from
    # Python's only next to a half cent: those few are rounded by Python itself.
    near = np.abs(scaled - np.floor(scaled) - 0.5) <= scaled * 1e-15
    for i in np.flatnonzero(near):
        cents[i] = int(f"{float(amount[i]):.2f}".replace(".", ""))
    return cents.astype(np.int64)


# Two ASCII digits per 16-bit unit (as bytes: the tens, then the units), for 0-99 in three forms:
# both digits, the tens blanked (a leading zero) and both blanked (left of the first digit).
_PAIRS = np.array(
    [[48 + i // 10, 48 + i % 10] for i in range(100)]
    + [[0, 48 + i % 10] for i in range(100)]
    + [[0, 0]] * 100,
    dtype=np.uint8,
).view(np.uint16)[:, 0]


def _digit_pairs(values: np.ndarray, pairs: int) -> np.ndarray:
    """`values` (whole, >= 0) as right-aligned ASCII, `pairs` 16-bit units of two digits per
    value (pairs x values, column-major), with 0 left of each number's first digit (0 shows)."""
    out = np.empty((pairs, len(values)), dtype=np.uint16)
    rest = values
    for place in range(pairs - 1, -1, -1):
        right = 10 ** (2 * (pairs - 1 - place))  # the place value of this pair's units digit
        below = np.floor_divide(rest, 100)
        form = (values < right * 10).view(np.uint8) * np.uint8(100)
        if right > 1:
            form += (values < right).view(np.uint8) * np.uint8(100)
        out[place] = _PAIRS[(rest - below * 100) + form]
        rest = below
    return out


def _pairs_for(values: np.ndarray) -> int:
    return (len(str(int(values.max()))) + 1) // 2 if len(values) else 1


class _Tables:
    """Fixed-width ASCII of the repeated fields (0 pads are dropped when the rows are joined),
    of even widths, so that rows are laid out and joined in 16-bit units."""

    def __init__(self, customer_ids: Sequence[str]):
        self.customers = _padded([f"{cid}," for cid in customer_ids])
        # "product_line,model," per model id (a model belongs to one product line).
        self.models = _padded([f"{line},{name}," for line, name, *_ in _MODEL_TABLE])

    def csv(self, month: date, batch: _Batch, rows: tuple[np.ndarray, ...]) -> np.ndarray:
        """The rows as CSV bytes: usage_date, customer_id, product_line, model, tokens, amount."""
        month_of, day, entry, amount = rows
        cents = _cents(amount)
        model = batch.model_id[entry]
        # `round(amount / price * 1000)` on the rounded amount, as Python computes it.
        tokens = np.rint(cents / 100.0 / _PRICES[model] * 1000).astype(np.int64)
        dollars = np.floor_divide(cents, 100)
        days = batch.day_weights.shape[1]
        dates = _padded(
            [f"{date(month.year, month.month, d + 1).isoformat()}," for d in range(days)]
        )
        # "customer_id,product_line,model," per (customer-month of the batch, model id).
        count = len(_MODEL_TABLE)
        prefixes = np.concatenate(
            [
                np.repeat(self.customers[batch.customer], count, axis=0),
                np.tile(self.models, (len(batch.customer), 1)),
            ],
            axis=1,
        )
        dates, prefixes = dates.view(np.uint16), prefixes.view(np.uint16)
        token_pairs, dollar_pairs = _pairs_for(tokens), _pairs_for(dollars)
        widths = [dates.shape[1], prefixes.shape[1], token_pairs, 1, dollar_pairs, 3]
        edges = np.cumsum([0, *widths])
        text = np.empty((len(amount), int(edges[-1])), dtype=np.uint16)
        np.take(dates, day, axis=0, out=text[:, : edges[1]], mode="clip")
        np.take(
            prefixes,
            month_of * count + model,
            axis=0,
            out=text[:, edges[1] : edges[2]],
            mode="clip",
        )
        text[:, edges[2] : edges[3]] = _digit_pairs(tokens, token_pairs).T
        text[:, edges[3]] = ord(",")
        text[:, edges[4] : edges[5]] = _digit_pairs(dollars, dollar_pairs).T
        text[:, edges[5]] = ord(".")
        text[:, edges[5] + 1] = _PAIRS[cents - dollars * 100]
        text[:, edges[5] + 2] = ord("\n")
        flat = text.view(np.uint8).reshape(-1)
        return flat[flat != 0]


def _padded(texts: Sequence[str]) -> np.ndarray:
    """ASCII texts as rows of bytes, 0-padded to one even width."""
    width = max(len(t) for t in texts)
    width += width % 2
    return (
        np.array([t.encode() for t in texts], dtype=f"S{width}").view(np.uint8).reshape(-1, width)
    )


# --- The plan at any size: the named customers as in Plan, a tail drawn by hashing ---------------
#
# `Plan` draws with one `random.Random` per customer-month and the tail's traits in sequence:
# the committed seeds are made that way and stay so. At millions of rows that costs seconds per
# million, and the row count of a tail size is known only by drawing all of it. `ScaledPlan`
# draws every number as a hash of (seed, stream, coordinates) instead (splitmix64), so any part
# is computed on its own, vectorised, in any process, and the rows a tail makes are counted from
# the few draws that choose the models, without making the rows.

_MASK64 = (1 << 64) - 1
_STREAMS = dict(
    segment=1, country=2, churns=3, trend=4, start=5, churn=6, copilot=7, choose=8, weight=9, day=10
)
_COUNTRIES = ["US", "US", "US", "GB", "DE", "JP", "IN", "FR"]


def _mix64(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _uniform(seed: int, stream: str, *keys) -> np.ndarray:
    """Uniform draws in [0, 1), one per element of the broadcast `keys` (whole numbers >= 0):
    the keys folded into one 64-bit number (a polynomial in an odd constant), then mixed."""
    arrays = [np.asarray(k, dtype=np.uint64) for k in keys]
    z = np.full(np.broadcast_shapes(*(a.shape for a in arrays)), 0, dtype=np.uint64)
    z += np.uint64((seed * 0x9E3779B97F4A7C15 + _STREAMS[stream]) & _MASK64)
    for key in arrays:
        z *= np.uint64(0x9E3779B97F4A7C15)
        z += key
    return (_mix64(z) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _month_days() -> np.ndarray:
    return np.array([calendar.monthrange(m.year, m.month)[1] for m in months()], dtype=np.int64)


def _available(product: int, month: date) -> np.ndarray:
    line = PRODUCT_LINES[product]
    return np.array(
        [_MODEL_ID[(line, m[0])] for m in MODELS[line] if (month.year, month.month) >= m[2]],
        dtype=np.int64,
    )


class ScaledPlan:
    """The named customers' targets as in `Plan`; a tail of `tail` customers drawn by hashing."""

    def __init__(self, tail: int, seed: int = DEFAULT_SEED):
        self.seed, self.tail = seed, tail
        self.named = Plan(0, seed)
        self.first_tail = len(self.named.customers)
        index = np.arange(tail, dtype=np.int64)
        traits = _tail_traits(seed, index)
        self.weight, self.trend, self.churn, self.copilot = (
            traits["weight"],
            traits["trend"],
            traits["churn"],
            traits["copilot"],
        )
        # As in Plan: the first fifth of the tail (at least 3) spends from the first month.
        self.start = np.where(index < max(3, tail // 5), 0, traits["start"])
        self.segment, self.country = traits["segment"], traits["country"]

    @property
    def customer_ids(self) -> list[str]:
        named = [c.customer_id for c in self.named.customers]
        return named + [f"cus_synth_{i + 1:06d}" for i in range(self.tail)]

    @property
    def customers(self) -> list[Customer]:
        tail = [
            Customer(
                cid,
                name,
                name,
                industry,
                _TAIL_SEGMENTS[segment],
                _COUNTRIES[country],
                True,
                SYNTHETIC_SOURCE,
            )
            for (cid, name, industry), segment, country in zip(
                map(_tail_names, range(self.tail)),
                self.segment.tolist(),
                self.country.tolist(),
                strict=True,
            )
        ]
        return self.named.customers + tail

    def active(self, m: int, product: int) -> np.ndarray:
        """Which tail customers spend on the product line in month index `m`."""
        if self.named.tail_total(PRODUCT_LINES[product], months()[m]) <= 0:
            return np.zeros(self.tail, dtype=bool)
        active = (self.start <= m) & (m < self.churn)
        return active & self.copilot if PRODUCT_LINES[product] == "copilot" else active

    def named_months(self, month: date) -> list[tuple[int, int, float]]:
        """(customer index, product, target) of the named customers' spending customer-months."""
        found = []
        for index, customer in enumerate(self.named.customers):
            for product, line in enumerate(PRODUCT_LINES):
                target = self.named.target(customer.customer_id, line, month)
                if target > 0:
                    found.append((index, product, target))
        return found

    def batches(self, m: int) -> Iterator[_Batch]:
        month = months()[m]
        days = calendar.monthrange(month.year, month.month)[1]
        named = self.named_months(month)
        customer = [np.array([c for c, _, _ in named], dtype=np.int64)]
        product = [np.array([p for _, p, _ in named], dtype=np.int64)]
        target = [np.array([t for _, _, t in named], dtype=np.float64)]
        for p, line in enumerate(PRODUCT_LINES):
            spending = np.flatnonzero(self.active(m, p))
            score = self.weight[spending] * np.exp(self.trend[spending] * m)
            total = self.named.tail_total(line, month)
            customer.append(spending + self.first_tail)
            product.append(np.full(len(spending), p, dtype=np.int64))
            target.append(total * score / score.sum() if len(spending) else score)
        customer, product, target = map(np.concatenate, (customer, product, target))
        # File order: customers in order, each one's product lines in order.
        order = np.argsort(customer * len(PRODUCT_LINES) + product, kind="stable")
        customer, product, target = customer[order], product[order], target[order]
        key = customer * len(PRODUCT_LINES) + product
        models = np.zeros(len(key), dtype=np.int64)
        mixes: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for p in range(len(PRODUCT_LINES)):
            rows = np.flatnonzero(product == p)
            chosen, model_id, weight = _mixes(self.seed, key[rows], p, m, month)
            models[rows] = chosen.sum(axis=1)
            mixes[p] = (rows, model_id, weight)
        # The mixes in file order: entries of customer-month i are after those of i - 1.
        entries = np.cumsum(models) - models
        model_id = np.empty(int(models.sum()), dtype=np.int64)
        model_weight = np.empty(len(model_id), dtype=np.float64)
        for rows, ids, weights in mixes.values():
            slots = _ranges(entries[rows], models[rows])
            model_id[slots], model_weight[slots] = ids, weights
        base = _day_base(month)
        ends = np.cumsum(models * days)  # rows up to and including each customer-month
        first = 0
        while first < len(key):
            # As many customer-months as fit in CHUNK_ROWS rows (at least one).
            before = int(ends[first]) - int(models[first]) * days
            last = max(first + 1, int(np.searchsorted(ends, before + CHUNK_ROWS, "right")))
            part = slice(first, last)
            draws = _uniform(self.seed, "day", key[part, None], m, np.arange(days))
            weights = base * (0.88 + 0.24 * draws)
            weights /= weights.sum(axis=1, keepdims=True)
            mix = slice(int(entries[first]), int(entries[last - 1] + models[last - 1]))
            yield _Batch(
                customer[part],
                product[part],
                target[part],
                weights,
                models[part],
                model_id[mix],
                model_weight[mix],
            )
            first = last


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Indices start, start + 1, ..., start + length - 1 of each (start, length), concatenated."""
    total = int(lengths.sum())
    offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return np.arange(total, dtype=np.int64) + offsets


def _day_base(month: date) -> np.ndarray:
    """Weekends at 72% of weekdays, growing 1% a day through the month (noise comes on top)."""
    days = calendar.monthrange(month.year, month.month)[1]
    return np.array(
        [
            (0.72 if date(month.year, month.month, d).weekday() >= 5 else 1.0) * (1 + 0.01 * d)
            for d in range(1, days + 1)
        ]
    )


def _chosen(seed: int, key: np.ndarray, product: int, m: int, month: date) -> np.ndarray:
    """Which available models each customer-month uses (customer-months x available models):
    each with probability 0.75, the oldest when none is."""
    available = _available(product, month)
    if len(key) == 0 or len(available) == 0:
        return np.zeros((len(key), len(available)), dtype=bool)
    chosen = _uniform(seed, "choose", key[:, None], m, available) < 0.75
    chosen[~chosen.any(axis=1), 0] = True
    return chosen


def _mixes(
    seed: int, key: np.ndarray, product: int, m: int, month: date
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each customer-month's models (`_chosen`), weighted by base weight x U(0.5, 1.5): the
    chosen mask, and the chosen models' ids and normalised weights, in row order."""
    chosen = _chosen(seed, key, product, m, month)
    available = _available(product, month)
    if chosen.size == 0:
        return chosen, np.zeros(0, dtype=np.int64), np.zeros(0)
    base = np.array([_MODEL_TABLE[i][4] for i in available])
    weight = base * (0.5 + _uniform(seed, "weight", key[:, None], m, available)) * chosen
    weight /= weight.sum(axis=1, keepdims=True)
    ids = np.broadcast_to(available, chosen.shape)[chosen]
    return chosen, ids, weight[chosen]


def _tail_traits(seed: int, index: np.ndarray) -> dict[str, np.ndarray]:
    def draw(stream: str) -> np.ndarray:
        return _uniform(seed, stream, index)

    churns = draw("churns") < 0.15
    return {
        "segment": (draw("segment") * len(_TAIL_SEGMENTS)).astype(np.int64),
        "country": (draw("country") * len(_COUNTRIES)).astype(np.int64),
        "weight": 1.0 / (index + 1.0) ** 0.75,
        "trend": -0.04 + 0.1 * draw("trend"),
        "start": (draw("start") * 18).astype(np.int64),
        "churn": np.where(
            churns, 13 + (draw("churn") * (MONTH_COUNT - 13)).astype(np.int64), MONTH_COUNT
        ),
        "copilot": draw("copilot") < 0.5,
    }


def _tail_names(i: int) -> tuple[str, str, str]:
    industry = _TAIL_INDUSTRIES[i % len(_TAIL_INDUSTRIES)]
    return f"cus_synth_{i + 1:06d}", f"Synthetic {industry.title()} Co {i + 1:06d}", industry


def _rows_by_month(
    plan_named: Plan, seed: int, first: int, tail: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of tail customers first ... tail - 1 per month index, (a) starting on their drawn month
    and (b) starting in the first month: arrays (customers, months)."""
    index = np.arange(first, tail, dtype=np.int64)
    traits = _tail_traits(seed, index)
    days = _month_days()
    drawn = np.zeros((len(index), MONTH_COUNT), dtype=np.int64)
    from_start = np.zeros_like(drawn)
    named = len(plan_named.customers)
    for m, month in enumerate(months()):
        for p, line in enumerate(PRODUCT_LINES):
            if plan_named.tail_total(line, month) <= 0:
                continue
            key = (index + named) * len(PRODUCT_LINES) + p
            chosen = _chosen(seed, key, p, m, month)
            rows = days[m] * chosen.sum(axis=1) * (m < traits["churn"])
            if line == "copilot":
                rows = rows * traits["copilot"]
            from_start[:, m] += rows
            drawn[:, m] += rows * (traits["start"] <= m)
    return drawn, from_start


def size_tail(rows: int, seed: int = DEFAULT_SEED) -> tuple[int, np.ndarray]:
    """The smallest tail whose plan makes at least `rows` usage rows, and its rows per month.

    Counted from the model draws alone (rows of a customer-month = days x models), for every
    tail size at once: customer i adds its rows to every tail larger than i, counted from its
    drawn first month, or from the first month while it is in the first fifth of the tail.
    """
    named_plan = Plan(0, seed)
    named = ScaledPlan(0, seed)
    days = _month_days()
    base = np.zeros(MONTH_COUNT, dtype=np.int64)
    for m, month in enumerate(months()):
        for customer, product, _ in named.named_months(month):
            key = np.array([customer * len(PRODUCT_LINES) + product])
            chosen = _chosen(seed, key, product, m, month)
            base[m] += days[m] * int(chosen.sum())
    if base.sum() >= rows:
        return 0, base
    drawn = np.zeros((0, MONTH_COUNT), dtype=np.int64)
    from_start = drawn
    capacity = max(16, math.ceil((rows - base.sum()) / 1500))
    while True:
        more = _rows_by_month(named_plan, seed, len(drawn), capacity)
        drawn, from_start = np.vstack([drawn, more[0]]), np.vstack([from_start, more[1]])
        sizes = np.arange(capacity + 1)
        zero = np.concatenate([[0], np.cumsum(from_start.sum(axis=1))])
        later = np.concatenate([[0], np.cumsum(drawn.sum(axis=1))])
        early = np.minimum(sizes, np.maximum(3, sizes // 5))
        made = base.sum() + zero[early] + later[sizes] - later[early]
        enough = np.flatnonzero(made >= rows)
        if len(enough):
            tail = int(enough[0])
            early = min(tail, max(3, tail // 5))
            return tail, base + from_start[:early].sum(axis=0) + drawn[early:tail].sum(axis=0)
        capacity = (
            math.ceil(capacity * 1.1 * (rows - base.sum()) / max(made[-1] - base.sum(), 1)) + 16
        )


# --- Writing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    """One month file to write: which plan (kind, seed, tail) and how to thin it."""

    out: Path
    kind: str  # "plan": the seeds' generator; "scaled": ScaledPlan
    seed: int
    tail: int
    m: int
    first_row: int = 0  # rows of the plan in earlier months
    rows: int | None = None  # rows to keep in all, of
    available: int = 0  # rows the plan makes in all


@functools.lru_cache(maxsize=1)
def _prepared(kind: str, seed: int, tail: int) -> tuple[Plan | ScaledPlan, _Tables]:
    if kind == "plan":
        plan: Plan | ScaledPlan = Plan(tail, seed)
        return plan, _Tables([c.customer_id for c in plan.customers])
    plan = ScaledPlan(tail, seed)
    return plan, _Tables(plan.customer_ids)


def _write_month(job: _Job) -> tuple[str, int]:
    plan, tables = _prepared(job.kind, job.seed, job.tail)
    month = months()[job.m]
    name = f"spend/usage_{month:%Y_%m}.csv"
    batches = plan.batches(job.m) if isinstance(plan, ScaledPlan) else _plan_batches(plan, month)
    seen, written = job.first_row, 0
    with (job.out / name).open("wb") as handle:
        handle.write((",".join(USAGE.header) + "\n").encode())
        for batch in batches:
            rows = _expand(batch)
            if job.rows is not None:
                # Thin evenly: keep the n-th row of the plan when n x rows / available passes a
                # whole number, so exactly `rows` are kept, spread over every month and customer.
                n = np.arange(seen + 1, seen + 1 + len(rows[0]), dtype=np.int64)
                seen += len(n)
                keep = (n * job.rows) // job.available > ((n - 1) * job.rows) // job.available
                rows = tuple(r[keep] for r in rows)
            written += len(rows[0])
            handle.write(tables.csv(month, batch, rows))
    return name, written


def _workers(rows: int | None) -> int:
    if rows is None or rows < PARALLEL_ROWS:
        return 1
    return min(len(os.sched_getaffinity(0)), MONTH_COUNT)


PARALLEL_ROWS = 2_000_000  # below this, one process is faster than starting more


def write_landing(
    out: Path,
    *,
    rows: int | None = None,
    seed: int = DEFAULT_SEED,
    tail: int = DEFAULT_TAIL,
    workers: int | None = None,
) -> dict[str, int]:
    """Write customers.csv, earnings.csv and spend/usage_YYYY_MM.csv into `out`.

    Without `rows`: the seeds' plan (`Plan`) with a tail of `tail` customers, every row kept.
    With `rows`: `ScaledPlan` with the smallest tail that makes at least `rows` rows (counted,
    not made), thinned evenly to exactly `rows`; the named customers' calibration holds at any
    size. Month files are written by `workers` processes (default: one per CPU from 2M rows),
    the same bytes whatever their number. Returns the number of rows written per file.
    """
    jobs: list[_Job]
    if rows is None:
        plan: Plan | ScaledPlan = _prepared("plan", seed, tail)[0]
        jobs = [_Job(out, "plan", seed, tail, m) for m in range(MONTH_COUNT)]
    else:
        tail, per_month = size_tail(rows, seed)
        available = int(per_month.sum())
        first = np.cumsum(per_month) - per_month
        plan = _prepared("scaled", seed, tail)[0]
        jobs = [
            _Job(out, "scaled", seed, tail, m, int(first[m]), rows, available)
            for m in range(MONTH_COUNT)
        ]
    (out / "spend").mkdir(parents=True, exist_ok=True)
    workers = workers or _workers(rows)
    if workers == 1:
        counts = _write_reference(out, plan)
        counts.update(map(_write_month, jobs))
        return counts
    # The workers (forked: they inherit the plan) start on the first months while this process
    # writes the customers; months are handed out in order, so files appear from the first.
    with multiprocessing.get_context("fork").Pool(workers, _keep_freed_memory) as pool:
        written = pool.imap(_write_month, jobs)
        counts = _write_reference(out, plan)
        counts.update(written)
    return counts


def _keep_freed_memory() -> None:
    """Let a worker's allocator keep the memory of one chunk for the next (glibc): otherwise the
    chunks' arrays are returned to the kernel when freed and faulted in again, which costs
    about a fifth of the work in system time. Memory stays at one chunk's peak."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: do not trim the heap's free top
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD: arrays come from the heap, not mmap
    except (OSError, AttributeError):
        pass


def _write_reference(out: Path, plan: Plan | ScaledPlan) -> dict[str, int]:
    return {
        "customers.csv": _write_csv(
            out / "customers.csv",
            CUSTOMERS.header,
            ([*vars(c).values()] for c in plan.customers),
        ),
        "earnings.csv": _write_csv(
            out / "earnings.csv", EARNINGS.header, (row.values() for row in earnings_rows())
        ),
    }


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
