"""Usage counting rules, shared by the aggregator that keeps the counters and the report
that reads them.

A charged prediction is a `debit` entry in the ledger. It counts, on its UTC day and model,
towards three views:

  own        the account that paid            (subject: that user)
  published  the model's owner                (subject: the owner)
  all        everyone                         (no subject)

A counter is a Tally (predictions, rows, credits) under a CounterKey. Tallies only ever add
up, so the order in which debits are counted does not matter; counting each debit once is
the storage's job (creditml.storage.usage).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from creditml.errors import InvalidParameter

DATE_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")
DEFAULT_DAYS = 30
MAX_DAYS = 366


class View(StrEnum):
    OWN = "own"
    PUBLISHED = "published"
    ALL = "all"


class Scope(StrEnum):
    """What a caller of /reports/usage asks to see."""

    OWN = "own"
    PUBLISHED = "published"
    ALL = "all"


class GroupBy(StrEnum):
    DAY = "day"
    MODEL = "model"


@dataclass(frozen=True)
class Tally:
    """Charged predictions, their rows and the credits debited for them."""

    predictions: int = 0
    rows: int = 0
    credits: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.predictions + other.predictions,
            self.rows + other.rows,
            self.credits + other.credits,
        )


def prediction_of(details: Mapping[str, Any] | None) -> tuple[str, int] | None:
    """(model id, rows) of a `debit` entry that charged a prediction; None for a debit that
    did not (no model or rows in its details: e.g. one written by ledger tooling). Usage
    counters, the daily report's ledger scan and the backfill apply this one rule, so they
    agree, and one odd entry never stops a report or a stream batch."""
    if not details or "model_id" not in details or "rows" not in details:
        return None
    try:
        return str(details["model_id"]), int(details["rows"])
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Debit:
    """A charged prediction, as its ledger entry recorded it."""

    account_id: str
    entry_id: str
    model_id: str
    created_at: datetime
    rows: int
    credits: int  # positive: what was debited

    @property
    def day(self) -> date:
        """The UTC day it was charged on."""
        return self.created_at.astimezone(UTC).date()

    @property
    def tally(self) -> Tally:
        return Tally(1, self.rows, self.credits)


@dataclass(frozen=True, order=True)
class CounterKey:
    """One counter: a view, its subject, a UTC day and a model."""

    view: View
    subject: str
    day: date
    model_id: str


def counters_for(debit: Debit, owner_id: str) -> list[CounterKey]:
    """The counters one debit adds to (`owner_id`: the model's owner)."""
    day, model = debit.day, debit.model_id
    return [
        CounterKey(View.OWN, debit.account_id, day, model),
        CounterKey(View.PUBLISHED, owner_id, day, model),
        CounterKey(View.ALL, "", day, model),
    ]


def increments(debits: Iterable[Debit], owners: Mapping[str, str]) -> dict[CounterKey, Tally]:
    """What `debits` add to each counter, summed (`owners`: model id -> owner id)."""
    summed: dict[CounterKey, Tally] = defaultdict(Tally)
    for debit in debits:
        for key in counters_for(debit, owners[debit.model_id]):
            summed[key] += debit.tally
    return dict(summed)


def parse_day(text: str, field: str) -> date:
    """A `YYYY-MM-DD` day; InvalidParameter otherwise (no other ISO 8601 spelling)."""
    if not DATE_PATTERN.fullmatch(text):
        raise InvalidParameter(field, "must be a date as YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidParameter(field, "is not a calendar date") from None


@dataclass(frozen=True)
class Period:
    """Whole UTC days from `first` to `last`, both included."""

    first: date
    last: date

    @classmethod
    def parse(cls, start: str | None, end: str | None, today: date) -> Period:
        """The period a request names: `to` defaults to today, `from` to 29 days before
        `to`; InvalidParameter for a malformed day, `from` after `to` or over MAX_DAYS."""
        last = parse_day(end, "query.to") if end is not None else today
        first = (
            parse_day(start, "query.from")
            if start is not None
            else last - timedelta(DEFAULT_DAYS - 1)
        )
        if first > last:
            raise InvalidParameter("query.from", "must not be after to")
        if (last - first).days + 1 > MAX_DAYS:
            raise InvalidParameter("query.to", f"must be at most {MAX_DAYS} days after from")
        return cls(first, last)


@dataclass(frozen=True)
class UsageLine:
    key: str
    tally: Tally
    model_name: str | None = None


@dataclass(frozen=True)
class Usage:
    period: Period
    group_by: GroupBy
    scope: Scope
    lines: list[UsageLine]
    totals: Tally


def summarize(
    period: Period,
    group_by: GroupBy,
    scope: Scope,
    counters: Iterable[tuple[date, str, Tally]],
    names: Mapping[str, str],
) -> Usage:
    """Counters (day, model id, tally) of one subject grouped by day or model; only days and
    models with something charged appear. Days ascend; models come by credits, then id, named
    from `names` (an unknown model by its id)."""
    grouped: dict[str, Tally] = defaultdict(Tally)
    totals = Tally()
    for day, model_id, tally in counters:
        if not period.first <= day <= period.last or tally.predictions == 0:
            continue
        grouped[day.isoformat() if group_by is GroupBy.DAY else model_id] += tally
        totals += tally
    if group_by is GroupBy.DAY:
        lines = [UsageLine(key, grouped[key]) for key in sorted(grouped)]
    else:
        ranked = sorted(grouped, key=lambda model: (-grouped[model].credits, model))
        lines = [UsageLine(key, grouped[key], names.get(key, key)) for key in ranked]
    return Usage(period, group_by, scope, lines, totals)
