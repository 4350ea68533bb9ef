"""The daily usage report: one UTC day's charged predictions per model and per publisher,
with totals and a cross-check against the ledger.

The numbers come from the usage counters (what /reports/usage shows); the cross-check sums
the day's debits in the ledger itself, which also gives each model's distinct paying users.
The two must be equal for a finished day; a difference means the counting lost or doubled
something, and is reported loudly (metric `LedgerCrossCheckMismatch`, an alarm, an error).
The current day is still being written, so its report is marked incomplete and its check
only informs.

The rendered JSON and CSV depend on nothing but the numbers: re-running a day rewrites the
same bytes (when it was generated travels beside them, as object metadata).
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from creditml.errors import InvalidParameter
from creditml.reports.usage import Tally, parse_day

CSV_COLUMNS = (
    "section",
    "key",
    "name",
    "owner_id",
    "predictions",
    "rows",
    "credits",
    "distinct_users",
)


@dataclass(frozen=True)
class StoredReport:
    """A made report: when, its totals, and links to its files."""

    day: date
    generated_at: datetime
    totals: Tally
    json_url: str
    csv_url: str


class CrossCheckFailed(Exception):
    """The day's report and the ledger disagree (raised after the report is stored)."""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    owner_id: str


@dataclass(frozen=True)
class LedgerDay:
    """A day's prediction debits as the ledger holds them, per model: what they add up to
    and which accounts paid."""

    tallies: dict[str, Tally]
    users: dict[str, frozenset[str]]


@dataclass(frozen=True)
class ModelLine:
    model_id: str
    name: str
    owner_id: str
    tally: Tally
    users: int


@dataclass(frozen=True)
class PublisherLine:
    owner_id: str
    tally: Tally  # credits: the publisher's revenue
    models: int


@dataclass(frozen=True)
class CrossCheck:
    ledger: Tally
    report: Tally
    models_differing: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.ledger == self.report and not self.models_differing


@dataclass(frozen=True)
class DailyReport:
    day: date
    complete: bool
    models: list[ModelLine]
    publishers: list[PublisherLine]
    totals: Tally
    cross_check: CrossCheck

    def document(self) -> dict[str, Any]:
        """The JSON document (no generation time: the content depends on the numbers)."""
        return {
            "date": self.day.isoformat(),
            "complete": self.complete,
            "totals": _tally(self.totals),
            "models": [
                {
                    "model_id": line.model_id,
                    "model_name": line.name,
                    "owner_id": line.owner_id,
                    **_tally(line.tally),
                    "distinct_users": line.users,
                }
                for line in self.models
            ],
            "publishers": [
                {
                    "owner_id": line.owner_id,
                    "models": line.models,
                    "predictions": line.tally.predictions,
                    "rows": line.tally.rows,
                    "revenue": line.tally.credits,
                }
                for line in self.publishers
            ],
            "ledger_cross_check": {
                "ok": self.cross_check.ok,
                "ledger": _tally(self.cross_check.ledger),
                "report": _tally(self.cross_check.report),
                "models_differing": list(self.cross_check.models_differing),
            },
        }

    def to_json(self) -> bytes:
        return (json.dumps(self.document(), indent=2, sort_keys=True) + "\n").encode()

    def to_csv(self) -> bytes:
        """One table: a row per model, per publisher (credits = revenue) and the total.
        A text cell that a spreadsheet would run as a formula starts with `'`."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for m in self.models:
            names = (_cell(m.model_id), _cell(m.name), _cell(m.owner_id))
            writer.writerow(("model", *names, *_row(m.tally), m.users))
        for p in self.publishers:
            owner = _cell(p.owner_id)
            writer.writerow(("publisher", owner, "", owner, *_row(p.tally), ""))
        writer.writerow(("total", self.day.isoformat(), "", "", *_row(self.totals), ""))
        return out.getvalue().encode()


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection);
# model names are publishers' text.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(text: str) -> str:
    """Text as a CSV cell a spreadsheet shows as text, never runs."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _tally(tally: Tally) -> dict[str, int]:
    return {"predictions": tally.predictions, "rows": tally.rows, "credits": tally.credits}


def _row(tally: Tally) -> tuple[int, int, int]:
    return tally.predictions, tally.rows, tally.credits


def report_day(text: str, today: date) -> date:
    """The day a report route names: YYYY-MM-DD, not after today (UTC)."""
    day = parse_day(text, "path.date")
    if day > today:
        raise InvalidParameter("path.date", "must not be in the future (UTC)")
    return day


def build(
    day: date,
    today: date,
    counters: Iterable[tuple[str, Tally]],
    models: Mapping[str, ModelInfo],
    ledger: LedgerDay,
) -> DailyReport:
    """The report of `day` from its per-model usage counters (model id, tally) and its
    ledger debits (`models`: what each counted model is called and who owns it)."""
    per_model: dict[str, Tally] = defaultdict(Tally)
    for model_id, tally in counters:
        if tally.predictions:
            per_model[model_id] += tally
    lines = [
        ModelLine(
            model_id,
            models[model_id].name if model_id in models else model_id,
            models[model_id].owner_id if model_id in models else "",
            per_model[model_id],
            len(ledger.users.get(model_id, ())),
        )
        for model_id in sorted(per_model, key=lambda m: (-per_model[m].credits, m))
    ]
    revenue: dict[str, Tally] = defaultdict(Tally)
    owned: dict[str, int] = defaultdict(int)
    for line in lines:
        revenue[line.owner_id] += line.tally
        owned[line.owner_id] += 1
    publishers = [
        PublisherLine(owner, revenue[owner], owned[owner])
        for owner in sorted(revenue, key=lambda o: (-revenue[o].credits, o))
    ]
    totals = sum(per_model.values(), Tally())
    ledger_total = sum(ledger.tallies.values(), Tally())
    differing = tuple(
        sorted(
            model
            for model in set(per_model) | set(ledger.tallies)
            if per_model.get(model) != ledger.tallies.get(model)
        )
    )
    check = CrossCheck(ledger_total, totals, differing)
    return DailyReport(day, day < today, lines, publishers, totals, check)
