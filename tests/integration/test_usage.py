"""Usage reports under moto: real predictions through the predict handler, the ledger's
stream records (moto's) through the usage_aggregator handler, and GET /reports/usage
through the reports handler. Exact against the ledger in every scope, and exact again when
the stream redelivers, reorders, splits batches, or a write's reply is lost."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from creditml.api.dependencies import get_daily_reports
from creditml.auth.roles import Role
from creditml.cli import main
from creditml.composition.core import ledger_repository
from creditml.composition.models import model_repository
from creditml.composition.reports import usage_counters
from creditml.devstack import runtime
from creditml.devstack.aws import REGION
from creditml.errors import ServiceUnavailable
from creditml.reports.daily import CrossCheckFailed
from creditml.reports.service import DailyReports
from creditml.reports.usage import Debit, Tally, View
from creditml.settings import get_settings
from creditml.storage.reports import ReportFiles
from creditml.storage.usage import UsageCounters
from tests.conftest import load_event
from tests.faults import injector
from tests.faults.injector import CONFLICT, TIMEOUT_AFTER_WRITE, FaultPlan, faults
from tests.integration.conftest import Api, register_and_login
from tests.integration.publishing import ROWS, grant, predict, publish

# Sessions made from now on carry the fault hooks (inert unless a plan is armed).
injector.install()

AGGREGATOR = "UsageAggregatorFunction"
REPORTS = "ReportsFunction"


def stream_records() -> list[dict[str, Any]]:
    """Every record on the ledger table's stream so far, as Lambda's event records."""
    table = get_settings().ledger_table
    arn = boto3.client("dynamodb", region_name=REGION).describe_table(TableName=table)["Table"][
        "LatestStreamArn"
    ]
    # The regional endpoint: botocore's ARN endpoint rules reach an account endpoint that
    # moto's in-process mock routes to DynamoDB instead of its streams backend.
    streams = boto3.client(
        "dynamodbstreams",
        region_name=REGION,
        endpoint_url=f"https://streams.dynamodb.{REGION}.amazonaws.com",
    )
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records: list[dict[str, Any]] = []
    while iterator:
        page = streams.get_records(ShardIterator=iterator, Limit=1000)
        records += [{**record, "eventSourceARN": arn} for record in page["Records"]]
        iterator = page.get("NextShardIterator") if page["Records"] else None
    return records


def aggregate(api: Api, records: list[dict[str, Any]]) -> Any:
    """Deliver `records` to the usage_aggregator handler as one batch."""
    return runtime.invoke(api._template.functions[AGGREGATOR], {"Records": records})


def usage(api: Api, token: str, query: str = "") -> tuple[int, dict[str, Any]]:
    event = load_event("reports_usage", access_token=token)
    event["rawQueryString"] = query
    event["queryStringParameters"] = (
        dict(part.split("=", 1) for part in query.split("&") if part) or None
    )
    return api.call(REPORTS, event)


def ledger_debits() -> list[dict[str, Any]]:
    """Every prediction debit in the ledger (a scan: the test's own source of truth)."""
    table = boto3.resource("dynamodb", region_name=REGION).Table(get_settings().ledger_table)
    items = table.scan(ConsistentRead=True)["Items"]
    return [item for item in items if item.get("kind") == "debit"]


def sums(debits: list[dict[str, Any]]) -> dict[str, int]:
    return {
        "predictions": len(debits),
        "rows": sum(int(json.loads(d["details"])["rows"]) for d in debits),
        "credits": sum(-int(d["amount"]) for d in debits),
    }


@pytest.fixture
def people(api: Api) -> dict[str, Any]:
    """Two publishers, two users and an admin."""
    return {
        "pub_a": register_and_login(api, "pub-a@example.com", role=Role.PUBLISHER),
        "pub_b": register_and_login(api, "pub-b@example.com", role=Role.PUBLISHER),
        "alice": register_and_login(api, "alice@example.com"),
        "bob": register_and_login(api, "bob@example.com"),
        "admin": register_and_login(api, "admin@example.com", role=Role.ADMIN),
    }


@pytest.fixture
def world(api: Api, people: dict[str, Any]) -> dict[str, Any]:
    """A model of each publisher (prices 2 and 3), on which both users predicted, plus a
    402 that costs nothing."""
    alice, bob = people["alice"], people["bob"]
    model_a = publish(api, people["pub_a"]["access"], price=2)
    model_b = publish(api, people["pub_b"]["access"], price=3)
    grant(api, alice["id"], 100)
    grant(api, bob["id"], 12)
    row = ROWS[0].tolist()
    plan = [(alice, model_a, 1), (alice, model_a, 3), (alice, model_b, 2), (bob, model_b, 1)]
    plan += [(bob, model_a, 2), (bob, model_b, 5)]  # 4 + 15 > 12 - 3: the last is a 402
    statuses = []
    for user, model, rows in plan:
        status, _ = predict(api, user["access"], model, {"inputs": [row] * rows})
        statuses.append(status)
    assert statuses == [200, 200, 200, 200, 200, 402]
    return {**people, "model_a": model_a, "model_b": model_b}


def test_each_scope_shows_exactly_its_part_of_the_ledger(api: Api, world: dict[str, Any]) -> None:
    assert aggregate(api, stream_records()) == {"batchItemFailures": []}
    debits = ledger_debits()
    assert len(debits) == 5

    def of(predicate: Any) -> dict[str, int]:
        return sums([d for d in debits if predicate(d)])

    def model(d: dict[str, Any]) -> str:
        return str(json.loads(d["details"])["model_id"])

    expected = {
        ("alice", "own"): of(lambda d: d["account_id"] == world["alice"]["id"]),
        ("bob", "own"): of(lambda d: d["account_id"] == world["bob"]["id"]),
        ("pub_a", "published"): of(lambda d: model(d) == world["model_a"]),
        ("pub_b", "published"): of(lambda d: model(d) == world["model_b"]),
        ("admin", "all"): of(lambda d: True),
        ("pub_a", "own"): of(lambda d: False),
    }
    assert expected[("alice", "own")] == {"predictions": 3, "rows": 6, "credits": 2 + 6 + 6}
    for (who, scope), totals in expected.items():
        for group_by in ("day", "model"):
            status, body = usage(api, world[who]["access"], f"scope={scope}&group_by={group_by}")
            assert status == 200, body
            assert body["totals"] == totals, (who, scope, group_by, body)
            assert body["scope"] == scope
            assert body["group_by"] == group_by
            by_item = Tally()
            for item in body["items"]:
                by_item += Tally(item["predictions"], item["rows"], item["credits"])
            assert by_item == Tally(**totals)
    today = datetime.now(UTC).date().isoformat()
    _, by_day = usage(api, world["alice"]["access"])
    assert [item["key"] for item in by_day["items"]] == [today]
    assert "model_name" not in by_day["items"][0]
    assert by_day["to"] == today
    assert by_day["from"] == (datetime.now(UTC).date() - timedelta(days=29)).isoformat()
    _, by_model = usage(api, world["admin"]["access"], "scope=all&group_by=model")
    assert {item["key"] for item in by_model["items"]} == {world["model_a"], world["model_b"]}
    assert {item["model_name"] for item in by_model["items"]} == {"m"}


def test_who_may_see_what(api: Api, people: dict[str, Any]) -> None:
    alice, pub_a = people["alice"]["access"], people["pub_a"]["access"]
    assert usage(api, alice, "scope=published")[0] == 403
    assert usage(api, alice, "scope=all")[0] == 403
    assert usage(api, pub_a, "scope=all")[0] == 403
    assert usage(api, pub_a, "scope=published")[0] == 200
    assert usage(api, people["admin"]["access"], "scope=published")[0] == 200  # their own


@pytest.mark.parametrize(
    "query",
    [
        "scope=everyone",  # 422 before the role: not 403 for a plain user
        "group_by=week",
        "from=2026-02-30",
        "from=2026-11-02&to=2026-11-01",
        "from=2025-01-01&to=2026-01-02",
        "to=29-11-2026",
    ],
)
def test_bad_queries_are_422(api: Api, people: dict[str, Any], query: str) -> None:
    status, body = usage(api, people["alice"]["access"], query)
    assert status == 422, body
    assert body["code"] == "validation_error"


def test_redelivered_reordered_and_split_batches_count_once(
    api: Api, world: dict[str, Any]
) -> None:
    records = stream_records()
    debit_records = [r for r in records if r["dynamodb"]["NewImage"].get("kind") == {"S": "debit"}]
    assert len(debit_records) == 5
    aggregate(api, records[::-1])  # out of order
    aggregate(api, records[: len(records) // 2])  # a redelivered, shorter batch
    aggregate(api, records[len(records) // 3 :])  # overlapping the first
    aggregate(api, debit_records[1:2] * 3)  # the same record thrice in one batch
    _, body = usage(api, world["admin"]["access"], "scope=all")
    assert body["totals"] == sums(ledger_debits())


def test_a_lost_reply_is_retried_by_the_stream_and_still_counts_once(
    api: Api, world: dict[str, Any]
) -> None:
    records = stream_records()
    plan = FaultPlan().fail("dynamodb", "TransactWriteItems", TIMEOUT_AFTER_WRITE)
    with faults(plan), pytest.raises(ServiceUnavailable):
        aggregate(api, records)  # the counters were written, the reply lost: Lambda retries
    assert plan.fired_names() == ["timeout_after_write"]
    aggregate(api, records)
    _, body = usage(api, world["admin"]["access"], "scope=all")
    assert body["totals"] == sums(ledger_debits())


def test_conflicts_with_another_aggregator_are_retried(api: Api, world: dict[str, Any]) -> None:
    plan = FaultPlan().fail("dynamodb", "TransactWriteItems", CONFLICT, times=2)
    with faults(plan):
        aggregate(api, stream_records())
    assert plan.fired_names() == ["conflict", "conflict"], plan.calls
    _, body = usage(api, world["admin"]["access"], "scope=all")
    assert body["totals"] == sums(ledger_debits())


def test_batches_larger_than_a_transaction_count_exactly(aws: dict[str, str]) -> None:
    """250 debits by 50 users on 3 models: 4 counters each, so several transactions; then
    a redelivery that straddles their boundaries."""
    counters = UsageCounters(get_settings().usage_table, clock=lambda: datetime.now(UTC))
    start = datetime(2026, 11, 27, 23, 0, tzinfo=UTC)
    debits = [
        Debit(
            account_id=f"user-{n % 50}",
            entry_id=uuid.uuid4().hex,
            model_id=f"model-{n % 3}",
            created_at=start + timedelta(minutes=n),  # crosses midnight
            rows=1 + n % 4,
            credits=2 * (1 + n % 4),
        )
        for n in range(250)
    ]
    owners = {f"model-{n}": f"owner-{n % 2}" for n in range(3)}
    assert counters.count(debits, owners) == 250
    assert counters.count(debits[100:180] + debits[:10], owners) == 0

    def total(view: View, subject: str) -> Tally:
        found = counters.counters(view, subject, start.date(), start.date() + timedelta(days=2))
        return sum((tally for _, _, tally in found), Tally())

    everything = Tally(250, sum(d.rows for d in debits), sum(d.credits for d in debits))
    assert total(View.ALL, "") == everything
    assert total(View.OWN, "user-7") == Tally(
        5, sum(d.rows for d in debits[7::50]), sum(d.credits for d in debits[7::50])
    )
    assert total(View.PUBLISHED, "owner-0") + total(View.PUBLISHED, "owner-1") == everything
    first_day = [d for d in debits if d.day == start.date()]
    assert 0 < len(first_day) < len(debits)
    on_first_day = counters.counters(View.ALL, "", start.date(), start.date())
    assert sum((tally for _, _, tally in on_first_day), Tally()) == sum(
        (d.tally for d in first_day), Tally()
    )


class InlineRunner:
    """Runs usage_report at once, in-process, where Lambda would queue the event."""

    def __init__(self, api: Api) -> None:
        self._api = api
        self.payloads: list[dict[str, str]] = []

    def start(self, payload: dict[str, str]) -> None:
        self.payloads.append(payload)
        runtime.invoke(self._api._template.functions["UsageReportFunction"], payload)


def reports_with(
    runner: InlineRunner,
    observe: Any = lambda name, value: None,
    clock: Any = lambda: datetime.now(UTC),
) -> DailyReports:
    """The daily reports service as the composition root builds it, with another runner,
    metrics sink or clock."""
    return DailyReports(
        counters=usage_counters(),
        ledger=ledger_repository(),
        models=model_repository(),
        store=ReportFiles(get_settings().reports_bucket),
        runner=runner,
        observe=observe,
        clock=clock,
    )


def fetch(url: str) -> bytes:
    """What a presigned GET URL of the reports bucket gives (read through the SDK: moto's
    in-process mock does not serve plain HTTP; the e2e tests download for real)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert "X-Amz-Signature" in query or "Signature" in query, url
    assert query.get("X-Amz-Expires", query.get("Expires"))
    bucket = get_settings().reports_bucket
    key = parts.path.lstrip("/").removeprefix(f"{bucket}/")
    body: bytes = (
        boto3.client("s3", region_name=REGION).get_object(Bucket=bucket, Key=key)["Body"].read()
    )
    return body


def daily(api: Api, token: str, day: str, method: str = "GET") -> tuple[int, dict[str, Any]]:
    event = load_event("reports_usage", access_token=token)
    path = f"/reports/daily/{day}"
    event["routeKey"] = f"{method} /reports/daily/{{date}}"
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["routeKey"] = event["routeKey"]
    event["pathParameters"] = {"date": day}
    event["rawQueryString"] = ""
    event.pop("queryStringParameters", None)
    return api.call(REPORTS, event)


def test_the_daily_report_equals_a_ledger_scan_of_its_day(api: Api, world: dict[str, Any]) -> None:
    aggregate(api, stream_records())
    runner = InlineRunner(api)
    api.override(REPORTS, get_daily_reports, reports_with(runner))
    admin = world["admin"]["access"]
    today = datetime.now(UTC).date().isoformat()
    assert daily(api, admin, today)[0] == 404
    status, body = daily(api, admin, today, "POST")
    assert (status, body) == (202, {"date": today, "status": "running"})
    assert runner.payloads == [{"date": today}]
    status, found = daily(api, admin, today)
    assert status == 200, found
    assert found["totals"] == sums(ledger_debits())
    document = json.loads(fetch(found["json_url"]))
    assert document["totals"] == sums(ledger_debits())
    assert document["complete"] is False  # today is still being written
    assert document["ledger_cross_check"]["ok"] is True
    per_model = {m["model_id"]: m for m in document["models"]}
    assert per_model[world["model_a"]]["distinct_users"] == 2
    assert per_model[world["model_b"]]["distinct_users"] == 2
    revenue = {p["owner_id"]: p["revenue"] for p in document["publishers"]}
    assert revenue == {world["pub_a"]["id"]: 2 * (1 + 3 + 2), world["pub_b"]["id"]: 3 * (2 + 1)}
    csv_text = fetch(found["csv_url"]).decode()
    assert csv_text.splitlines()[0].startswith("section,key,name")
    # Re-running rewrites the same bytes.
    before = fetch(found["json_url"])
    daily(api, admin, today, "POST")
    assert fetch(daily(api, admin, today)[1]["json_url"]) == before


def test_daily_reports_are_for_admins_and_past_or_current_days(
    api: Api, people: dict[str, Any]
) -> None:
    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    admin, alice = people["admin"]["access"], people["alice"]["access"]
    assert daily(api, alice, "2026-01-01")[0] == 403
    assert daily(api, alice, "2026-01-01", "POST")[0] == 403
    assert daily(api, people["pub_a"]["access"], "2026-01-01")[0] == 403
    status, body = daily(api, admin, tomorrow, "POST")
    assert status == 422, body
    assert body["code"] == "validation_error"
    assert daily(api, admin, "2026-1-1")[0] == 422
    status, body = daily(api, admin, "2020-02-29")
    assert (status, body["code"]) == (404, "report_not_found")


def test_a_finished_day_that_disagrees_with_the_ledger_fails_loudly(
    api: Api, world: dict[str, Any]
) -> None:
    """The counters lost a debit (its stream record never delivered): the report of that
    (finished) day is still written, the mismatch metric is 1 and the run fails."""
    records = [
        r for r in stream_records() if r["dynamodb"]["NewImage"].get("kind") == {"S": "debit"}
    ]
    aggregate(api, records[1:])
    metrics: list[tuple[str, float]] = []
    today = datetime.now(UTC).date()
    tomorrow = datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC)
    reports = reports_with(
        InlineRunner(api),
        observe=lambda name, value: metrics.append((name, value)),
        clock=lambda: tomorrow + timedelta(minutes=15),  # the schedule, the next morning
    )
    with pytest.raises(CrossCheckFailed):
        reports.make(today)
    assert metrics == [("LedgerCrossCheckMismatch", 1)]
    stored = reports.find(today)
    document = json.loads(fetch(stored.json_url))
    assert document["complete"] is True
    assert document["ledger_cross_check"]["ok"] is False
    assert document["ledger_cross_check"]["ledger"] == sums(ledger_debits())
    aggregate(api, records)  # the lost record arrives: only it is counted
    metrics.clear()
    reports.make(today)
    assert metrics == [("LedgerCrossCheckMismatch", 0)]


def test_a_backfill_counts_what_the_stream_never_delivered_once(
    api: Api, world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """Debits written before the ledger's stream fed the aggregator (or a batch it gave
    up on): `creditml usage backfill` counts them, each once, however often it runs."""
    records = [
        r for r in stream_records() if r["dynamodb"]["NewImage"].get("kind") == {"S": "debit"}
    ]
    aggregate(api, records[:2])  # the stream delivered only two of the five
    assert main(["usage", "backfill"]) == 0
    assert "5 debits in the ledger, 3 newly counted, 2 counted before" in capsys.readouterr().out
    _, body = usage(api, world["admin"]["access"], "scope=all")
    assert body["totals"] == sums(ledger_debits())
    assert main(["usage", "backfill"]) == 0
    assert "0 newly counted" in capsys.readouterr().out
    aggregate(api, records)  # and the stream, late, counts nothing again
    _, again = usage(api, world["admin"]["access"], "scope=all")
    assert again["totals"] == body["totals"]


def test_debits_that_are_not_predictions_are_left_out_and_stop_nothing(
    api: Api, world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """A `debit` entry without a model or rows in its details (ledger tooling writes them:
    tests/e2e/test_billing_flow.py does, on the shared stack) is no prediction: the stream,
    the daily report's ledger scan and the backfill all leave it out, and none of them fails
    on it (a KeyError here once stopped every daily report of the day)."""
    from creditml.billing.ledger import IdempotencySlot, request_hash
    from creditml.composition.core import ledger

    alice = world["alice"]["id"]
    for index, details in enumerate([None, {"note": "adjustment"}, {"model_id": "m"}]):
        ledger().debit(
            alice,
            1,
            slot=IdempotencySlot.of(alice, f"tooling-{index}"),
            request=request_hash("debit", {"n": index}),
            details=details,
        )
    predictions = [d for d in ledger_debits() if "rows" in json.loads(d.get("details", "{}"))]
    assert len(ledger_debits()) == len(predictions) + 3
    aggregate(api, stream_records())
    _, body = usage(api, world["admin"]["access"], "scope=all")
    assert body["totals"] == sums(predictions)
    reports = reports_with(InlineRunner(api))
    today = datetime.now(UTC).date()
    report = reports.make(today)
    assert report.document()["ledger_cross_check"]["ok"] is True
    assert report.document()["totals"] == sums(predictions)
    assert main(["usage", "backfill"]) == 0
    assert f"{len(predictions)} debits in the ledger" in capsys.readouterr().out
