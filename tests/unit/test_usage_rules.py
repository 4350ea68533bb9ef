"""Usage counting rules (creditml.reports.usage): which counters a debit adds to, how
counters sum, how a period is read from a request, and how a report groups counters."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from creditml.errors import InvalidParameter
from creditml.reports.schemas import UsageReport
from creditml.reports.usage import (
    CounterKey,
    Debit,
    GroupBy,
    Period,
    Scope,
    Tally,
    View,
    counters_for,
    increments,
    summarize,
)

TODAY = date(2026, 11, 29)


def debit(
    account: str = "u1",
    model: str = "m1",
    when: str = "2026-11-28T23:59:59.999+00:00",
    rows: int = 3,
    credits: int = 6,
    entry: str | None = None,
) -> Debit:
    return Debit(
        account_id=account,
        entry_id=entry or f"{account}-{model}-{when}-{rows}",
        model_id=model,
        created_at=datetime.fromisoformat(when),
        rows=rows,
        credits=credits,
    )


def test_a_debit_counts_for_its_payer_its_publisher_and_everyone() -> None:
    keys = counters_for(debit(), owner_id="pub")
    day = date(2026, 11, 28)
    assert keys == [
        CounterKey(View.OWN, "u1", day, "m1"),
        CounterKey(View.PUBLISHED, "pub", day, "m1"),
        CounterKey(View.ALL, "", day, "m1"),
    ]


def test_the_day_is_the_utc_day_of_the_entry() -> None:
    late = debit(when="2026-11-28T23:30:00-02:00")  # 01:30 UTC on the 29th
    assert late.day == date(2026, 11, 29)
    assert {key.day for key in counters_for(late, "pub")} == {date(2026, 11, 29)}


def test_increments_sum_debits_on_the_same_counter() -> None:
    summed = increments(
        [
            debit(rows=1, credits=2),
            debit(rows=4, credits=8),
            debit(account="u2", rows=2, credits=4),
        ],
        {"m1": "pub"},
    )
    day = date(2026, 11, 28)
    assert summed[CounterKey(View.ALL, "", day, "m1")] == Tally(3, 7, 14)
    assert summed[CounterKey(View.OWN, "u1", day, "m1")] == Tally(2, 5, 10)
    assert summed[CounterKey(View.OWN, "u2", day, "m1")] == Tally(1, 2, 4)
    assert summed[CounterKey(View.PUBLISHED, "pub", day, "m1")] == Tally(3, 7, 14)
    assert len(summed) == 1 + 2 + 1  # all, own x2, published


def test_increments_need_every_models_owner() -> None:
    with pytest.raises(KeyError):
        increments([debit(model="unknown")], {"m1": "pub"})


def test_the_default_period_is_the_last_thirty_days_to_today() -> None:
    assert Period.parse(None, None, TODAY) == Period(date(2026, 10, 31), TODAY)
    assert Period.parse(None, "2026-01-30", TODAY) == Period(date(2026, 1, 1), date(2026, 1, 30))
    assert Period.parse("2026-11-01", None, TODAY) == Period(date(2026, 11, 1), TODAY)


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        ("2026-1-01", None, "query.from"),
        ("20261101", None, "query.from"),
        ("2026-11-01T00:00:00", None, "query.from"),
        (None, "2026-02-30", "query.to"),
        (None, "yesterday", "query.to"),
        ("2026-11-29", "2026-11-28", "query.from"),
        ("2025-11-28", "2026-11-29", "query.to"),  # 367 days
    ],
)
def test_bad_periods_are_refused_naming_the_parameter(
    start: str | None, end: str | None, field: str
) -> None:
    with pytest.raises(InvalidParameter) as raised:
        Period.parse(start, end, TODAY)
    assert raised.value.status == 422
    assert raised.value.code == "validation_error"
    assert raised.value.extra["errors"][0]["field"] == field


def test_a_period_of_366_days_is_allowed() -> None:
    period = Period.parse("2025-11-29", "2026-11-29", TODAY)
    assert (period.last - period.first).days + 1 == 366


COUNTERS = [
    (date(2026, 11, 2), "m2", Tally(1, 10, 50)),
    (date(2026, 11, 1), "m1", Tally(2, 2, 4)),
    (date(2026, 11, 2), "m1", Tally(1, 1, 2)),
    (date(2026, 10, 31), "m1", Tally(7, 7, 14)),  # before the period
    (date(2026, 11, 3), "m3", Tally(0, 0, 0)),  # nothing charged
]
PERIOD = Period(date(2026, 11, 1), date(2026, 11, 30))


def test_by_day_lists_days_with_something_in_order() -> None:
    usage = summarize(PERIOD, GroupBy.DAY, Scope.OWN, COUNTERS, {})
    assert [(line.key, line.tally) for line in usage.lines] == [
        ("2026-11-01", Tally(2, 2, 4)),
        ("2026-11-02", Tally(2, 11, 52)),
    ]
    assert usage.totals == Tally(4, 13, 56)


def test_by_model_lists_models_by_credits_with_names() -> None:
    usage = summarize(PERIOD, GroupBy.MODEL, Scope.ALL, COUNTERS, {"m1": "iris", "m2": "wine"})
    assert [(line.key, line.model_name, line.tally) for line in usage.lines] == [
        ("m2", "wine", Tally(1, 10, 50)),
        ("m1", "iris", Tally(3, 3, 6)),
    ]
    assert usage.totals == Tally(4, 13, 56)


def test_the_report_body_follows_the_contract() -> None:
    usage = summarize(PERIOD, GroupBy.MODEL, Scope.PUBLISHED, COUNTERS, {"m2": "wine"})
    body = UsageReport.of(usage).model_dump(mode="json", by_alias=True, exclude_none=True)
    assert body == {
        "from": "2026-11-01",
        "to": "2026-11-30",
        "group_by": "model",
        "scope": "published",
        "items": [
            {"key": "m2", "model_name": "wine", "predictions": 1, "rows": 10, "credits": 50},
            {"key": "m1", "model_name": "m1", "predictions": 3, "rows": 3, "credits": 6},
        ],
        "totals": {"predictions": 4, "rows": 13, "credits": 56},
    }


def test_by_day_items_carry_no_model_name() -> None:
    usage = summarize(PERIOD, GroupBy.DAY, Scope.OWN, COUNTERS, {})
    body = UsageReport.of(usage).model_dump(mode="json", by_alias=True, exclude_none=True)
    assert [sorted(item) for item in body["items"]] == [
        ["credits", "key", "predictions", "rows"]
    ] * 2
