"""The daily report (creditml.reports.daily): per model and publisher from the day's
counters, the cross-check against the ledger, its JSON and CSV, and which days it takes."""

from __future__ import annotations

import csv
import io
import json
from datetime import date

import pytest

from creditml.errors import InvalidParameter
from creditml.reports.daily import LedgerDay, ModelInfo, build, report_day
from creditml.reports.usage import Tally

DAY = date(2026, 11, 28)
TODAY = date(2026, 11, 29)
MODELS = {
    "m1": ModelInfo("iris", "pub-1"),
    "m2": ModelInfo("wine", "pub-2"),
    "m3": ModelInfo("x", "pub-1"),
}
COUNTERS = [
    ("m1", Tally(3, 4, 8)),
    ("m2", Tally(1, 5, 15)),
    ("m3", Tally(1, 1, 1)),
    ("m4", Tally(0, 0, 0)),  # nothing charged: not in the report
]
TALLIES = {"m1": Tally(3, 4, 8), "m2": Tally(1, 5, 15), "m3": Tally(1, 1, 1)}
USERS = {"m1": frozenset({"alice", "bob"}), "m2": frozenset({"alice"}), "m3": frozenset({"carol"})}
LEDGER = LedgerDay(TALLIES, USERS)


def test_models_publishers_and_totals() -> None:
    report = build(DAY, TODAY, COUNTERS, MODELS, LEDGER)
    assert [(m.model_id, m.name, m.owner_id, m.tally, m.users) for m in report.models] == [
        ("m2", "wine", "pub-2", Tally(1, 5, 15), 1),
        ("m1", "iris", "pub-1", Tally(3, 4, 8), 2),
        ("m3", "x", "pub-1", Tally(1, 1, 1), 1),
    ]
    assert [(p.owner_id, p.tally, p.models) for p in report.publishers] == [
        ("pub-2", Tally(1, 5, 15), 1),
        ("pub-1", Tally(4, 5, 9), 2),
    ]
    assert report.totals == Tally(5, 10, 24)
    assert report.complete
    assert report.cross_check.ok


def test_a_difference_with_the_ledger_fails_the_cross_check_naming_the_model() -> None:
    lost = LedgerDay({**TALLIES, "m1": Tally(4, 5, 10)}, USERS)  # never counted
    check = build(DAY, TODAY, COUNTERS, MODELS, lost).cross_check
    assert not check.ok
    assert check.models_differing == ("m1",)
    assert check.ledger == Tally(6, 11, 26)
    assert check.report == Tally(5, 10, 24)
    extra = LedgerDay({"m1": TALLIES["m1"], "m2": TALLIES["m2"]}, USERS)  # never charged
    assert build(DAY, TODAY, COUNTERS, MODELS, extra).cross_check.models_differing == ("m3",)


def test_the_current_day_is_incomplete() -> None:
    assert not build(TODAY, TODAY, COUNTERS, MODELS, LEDGER).complete


def test_the_json_is_the_same_bytes_for_the_same_numbers() -> None:
    first = build(DAY, TODAY, COUNTERS, MODELS, LEDGER)
    shuffled = LedgerDay(dict(reversed(TALLIES.items())), USERS)
    again = build(DAY, TODAY, list(reversed(COUNTERS)), MODELS, shuffled)
    assert first.to_json() == again.to_json()
    assert first.to_csv() == again.to_csv()
    document = json.loads(first.to_json())
    assert document["date"] == "2026-11-28"
    assert document["totals"] == {"predictions": 5, "rows": 10, "credits": 24}
    assert document["models"][0] == {
        "model_id": "m2",
        "model_name": "wine",
        "owner_id": "pub-2",
        "predictions": 1,
        "rows": 5,
        "credits": 15,
        "distinct_users": 1,
    }
    assert document["publishers"][1]["revenue"] == 9
    assert document["ledger_cross_check"]["ok"] is True
    assert "generated_at" not in document


def test_the_csv_has_a_row_per_model_publisher_and_the_total() -> None:
    rows = list(
        csv.DictReader(io.StringIO(build(DAY, TODAY, COUNTERS, MODELS, LEDGER).to_csv().decode()))
    )
    assert [(row["section"], row["key"]) for row in rows] == [
        ("model", "m2"),
        ("model", "m1"),
        ("model", "m3"),
        ("publisher", "pub-2"),
        ("publisher", "pub-1"),
        ("total", "2026-11-28"),
    ]
    assert rows[1]["distinct_users"] == "2"
    assert rows[-1]["credits"] == "24"


def test_a_model_name_with_csv_syntax_stays_one_cell() -> None:
    tricky = {**MODELS, "m1": ModelInfo('a,"b"\nc', "pub-1")}
    text = build(DAY, TODAY, COUNTERS, tricky, LEDGER).to_csv().decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[1]["name"] == 'a,"b"\nc'


@pytest.mark.parametrize("text", ["2026-11-30", "2027-01-01", "2026-13-01", "28-11-2026", "x"])
def test_report_days_are_past_or_current_utc_days(text: str) -> None:
    with pytest.raises(InvalidParameter):
        report_day(text, TODAY)


def test_today_and_earlier_days_are_accepted() -> None:
    assert report_day("2026-11-29", TODAY) == TODAY
    assert report_day("2020-02-29", TODAY) == date(2020, 2, 29)


@pytest.mark.parametrize("name", ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "\tx"])
def test_a_model_name_a_spreadsheet_would_run_is_written_as_text(name: str) -> None:
    hostile = {**MODELS, "m1": ModelInfo(name, "pub-1")}
    rows = list(
        csv.DictReader(io.StringIO(build(DAY, TODAY, COUNTERS, hostile, LEDGER).to_csv().decode()))
    )
    assert rows[1]["name"] == "'" + name
    assert (
        json.loads(build(DAY, TODAY, COUNTERS, hostile, LEDGER).to_json())["models"][1][
            "model_name"
        ]
        == name
    )
