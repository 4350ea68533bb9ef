"""DynamoDB stream event sources in the local stack (creditml.devstack.streams), against the
embedded AWS: a tiny recording function subscribed through a template, as Lambda's event
source mapping would deliver to it."""

from __future__ import annotations

import base64
import dataclasses
import json
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.dynamodbstreams.models import dynamodbstreams_backends

from creditml.devstack import streams
from creditml.devstack.aws import ACCOUNT_ID, REGION, Provisioned, provision
from creditml.devstack.streams import (
    StreamEventPump,
    StreamSubscription,
    compile_filters,
    matches,
    subscribe,
)
from creditml.devstack.template import Template, TemplateError
from tests.integration.conftest import embedded_aws

# Records its events to received.jsonl next to itself. rules.json says, per item key, how
# many deliveries of that record raise ("raise") or report it failed ("fail").
RECORDER = textwrap.dedent(
    """
    import json
    from pathlib import Path

    HERE = Path(__file__).parent


    def _key(record):
        return "|".join(value["S"] for value in record["dynamodb"]["Keys"].values())


    def handler(event, context):
        log = HERE / "received.jsonl"
        lines = log.read_text().splitlines() if log.exists() else []
        history = [json.loads(line) for line in lines]
        with log.open("a") as out:
            out.write(json.dumps(event) + "\\n")
        rules = json.loads((HERE / "rules.json").read_text())

        def seen(key):
            return sum(_key(r) == key for past in history for r in past["Records"])

        keys = [_key(record) for record in event["Records"]]
        if any(seen(key) < rules.get("raise", {}).get(key, 0) for key in keys):
            raise RuntimeError("poisoned record")
        failed = [
            {"itemIdentifier": record["dynamodb"]["SequenceNumber"]}
            for record in event["Records"]
            if seen(_key(record)) < rules.get("fail", {}).get(_key(record), 0)
        ]
        return {"batchItemFailures": failed}
    """
)


@pytest.fixture
def embedded(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The embedded AWS on a free port, this process's SDK pointed at it."""
    # Quick retries: the tests wait on outcomes, not on Lambda's pace.
    monkeypatch.setattr(streams, "RETRY_BASE_SECONDS", 0.001)
    with embedded_aws() as aws:
        yield aws.endpoint


class Stack:
    """A template with one streamed table (`Things`, key `pk`) and a recording function."""

    def __init__(self, root: Path, properties: dict[str, Any], rules: dict[str, Any]) -> None:
        self.prefix = f"t{uuid.uuid4().hex[:10]}"
        self.function = f"Recorder{uuid.uuid4().hex[:8]}"  # handler modules load once per id
        self.code = root / "recorder"
        self.code.mkdir()
        (self.code / "app.py").write_text(RECORDER, encoding="utf-8")
        (self.code / "rules.json").write_text(json.dumps(rules), encoding="utf-8")
        event = {
            "Stream": {"Fn::GetAtt": ["Things", "StreamArn"]},
            "StartingPosition": "TRIM_HORIZON",
            **properties,
        }
        document = {
            "Resources": {
                "Things": {
                    "Type": "AWS::DynamoDB::Table",
                    "Properties": {
                        "BillingMode": "PAY_PER_REQUEST",
                        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                        "StreamSpecification": {"StreamViewType": "NEW_IMAGE"},
                    },
                },
                "Failures": {"Type": "AWS::SQS::Queue"},
                self.function: {
                    "Type": "AWS::Serverless::Function",
                    "Properties": {
                        "CodeUri": "recorder/",
                        "Handler": "app.handler",
                        "Events": {"Changes": {"Type": "DynamoDB", "Properties": event}},
                    },
                },
            }
        }
        (root / "template.yaml").write_text(json.dumps(document), encoding="utf-8")
        self.template = Template(root / "template.yaml")

    def provision(self) -> Provisioned:
        self.provisioned = provision(self.template, self.prefix)
        return self.provisioned

    def subscriptions(self) -> list[StreamSubscription]:
        return subscribe(self.template, self.provisioned, self.prefix)

    @property
    def table(self) -> str:
        return self.provisioned.physical["Things"]

    def put(self, key: str, **attributes: dict[str, Any]) -> None:
        boto3.client("dynamodb").put_item(
            TableName=self.table, Item={"pk": {"S": key}, **attributes}
        )

    def batches(self) -> list[list[str]]:
        """The item keys of each invocation's records, in invocation order."""
        return [
            [record["dynamodb"]["Keys"]["pk"]["S"] for record in event["Records"]]
            for event in self.events()
        ]

    def events(self) -> list[dict[str, Any]]:
        log = self.code / "received.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def make_stack(tmp_path: Path, rules: dict[str, Any] | None = None, **properties: Any) -> Stack:
    stack = Stack(tmp_path, properties, rules or {})
    stack.provision()
    return stack


@contextmanager
def pumping(subscriptions: list[StreamSubscription]) -> Iterator[StreamEventPump]:
    pump = StreamEventPump(subscriptions).start()
    try:
        yield pump
    finally:
        pump.stop()


def eventually(check: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def keys(count: int) -> list[str]:
    return [f"item-{n}" for n in range(count)]


# -- delivery ------------------------------------------------------------------------------


def test_records_arrive_in_order_in_batches_of_at_most_batch_size_shaped_as_lambdas(
    embedded: str, tmp_path: Path
) -> None:
    stack = make_stack(tmp_path, BatchSize=3)
    client = boto3.client("dynamodb")
    # Given five inserts (one with a binary attribute), an update and a delete
    for key in keys(5):
        stack.put(key, n={"N": key[-1]})
    stack.put("item-1", n={"N": "10"}, blob={"B": b"\x00\xff"})
    client.delete_item(TableName=stack.table, Key={"pk": {"S": "item-0"}})
    # When the pump reads the stream from its start
    with pumping(stack.subscriptions()) as pump:
        eventually(lambda: pump.delivered == 7)
    # Then every record came once, in stream order, at most 3 at a time
    assert stack.batches() == [keys(3), [*keys(5)[3:], "item-1"], ["item-0"]]
    records = [record for event in stack.events() for record in event["Records"]]
    assert [r["eventName"] for r in records] == ["INSERT"] * 5 + ["MODIFY", "REMOVE"]
    sequences = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
    assert sequences == sorted(sequences)
    assert len(set(sequences)) == 7
    # And each is exactly what Lambda delivers
    arn = stack.provisioned.attributes["Things"]["StreamArn"]
    modify = records[5]
    assert list(modify) == [
        "eventID",
        "eventName",
        "eventVersion",
        "eventSource",
        "awsRegion",
        "dynamodb",
        "eventSourceARN",
    ]
    assert modify["eventVersion"] == "1.1"
    assert modify["eventSource"] == "aws:dynamodb"
    assert modify["awsRegion"] == REGION
    assert modify["eventSourceARN"] == arn
    assert arn.startswith(f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{stack.table}/stream/")
    change = modify["dynamodb"]
    assert set(change) == {
        "ApproximateCreationDateTime",
        "Keys",
        "NewImage",
        "SequenceNumber",
        "SizeBytes",
        "StreamViewType",
    }
    assert isinstance(change["ApproximateCreationDateTime"], int)
    assert abs(change["ApproximateCreationDateTime"] - time.time()) < 600
    assert change["Keys"] == {"pk": {"S": "item-1"}}
    assert change["NewImage"] == {
        "pk": {"S": "item-1"},
        "n": {"N": "10"},
        "blob": {"B": base64.b64encode(b"\x00\xff").decode()},
    }
    assert change["StreamViewType"] == "NEW_IMAGE"
    assert isinstance(change["SizeBytes"], int)
    assert "NewImage" not in records[6]["dynamodb"]  # a REMOVE has no new image


def test_latest_starts_after_what_the_stream_already_holds(embedded: str, tmp_path: Path) -> None:
    stack = make_stack(tmp_path, StartingPosition="LATEST")
    stack.put("before")
    with pumping(stack.subscriptions()) as pump:
        stack.put("after")
        eventually(lambda: pump.delivered == 1)
    assert stack.batches() == [["after"]]


def test_the_batching_window_gathers_records_written_one_by_one(
    embedded: str, tmp_path: Path
) -> None:
    stack = make_stack(tmp_path, BatchSize=10, MaximumBatchingWindowInSeconds=1)
    with pumping(stack.subscriptions()) as pump:
        for key in keys(4):
            stack.put(key)
        eventually(lambda: pump.delivered == 4)
    assert stack.batches() == [keys(4)]


# -- filters -------------------------------------------------------------------------------

DEBITS = '{"eventName": ["INSERT"], "dynamodb": {"NewImage": {"kind": {"S": ["debit"]}}}}'
VIP = (
    '{"dynamodb": {"NewImage": {"note": {"S": [{"prefix": "vip-"}]},'
    ' "refund": {"S": [{"exists": false}]}}}}'
)


def test_records_matching_no_filter_are_skipped(embedded: str, tmp_path: Path) -> None:
    stack = make_stack(
        tmp_path, FilterCriteria={"Filters": [{"Pattern": DEBITS}, {"Pattern": VIP}]}
    )
    stack.put("debit", kind={"S": "debit"})
    stack.put("grant", kind={"S": "grant"})
    stack.put("vip", kind={"S": "grant"}, note={"S": "vip-1"})
    stack.put("vip-refund", note={"S": "vip-2"}, refund={"S": "yes"})
    stack.put("debit", kind={"S": "debit"}, amount={"N": "2"})  # a MODIFY
    stack.put("last", kind={"S": "debit"})
    with pumping(stack.subscriptions()) as pump:
        eventually(lambda: pump.counters.read == 6 and pump.delivered == 3)
        assert pump.counters.filtered == 3
    assert [key for batch in stack.batches() for key in batch] == ["debit", "vip", "last"]


@pytest.mark.parametrize(
    ("pattern", "record", "expected"),
    [
        ({"a": ["x", "y"]}, {"a": "y"}, True),
        ({"a": ["x"]}, {"a": "xx"}, False),
        ({"a": [5]}, {"a": 5.0}, True),
        ({"a": [5]}, {"a": "5"}, False),
        ({"a": ["5"]}, {"a": 5}, False),
        ({"a": [True]}, {"a": 1}, False),
        ({"a": [None]}, {"a": None}, True),
        ({"a": ["x"]}, {"a": ["w", "x"]}, True),
        ({"a": {"b": {"c": ["x"]}}}, {"a": {"b": {"c": "x"}}}, True),
        ({"a": {"b": ["x"]}, "c": ["y"]}, {"a": {"b": "x"}, "c": "z"}, False),
        ({"a": [{"prefix": "ab"}]}, {"a": "abc"}, True),
        ({"a": [{"prefix": "ab"}]}, {"a": "cab"}, False),
        ({"a": [{"exists": True}]}, {"a": "x"}, True),
        ({"a": [{"exists": True}]}, {"b": "x"}, False),
        ({"a": [{"exists": True}]}, {"a": {"b": "x"}}, False),  # leaves only
        ({"a": [{"exists": False}]}, {"b": "x"}, True),
        ({"a": {"b": [{"exists": False}]}}, {}, True),
        ({"a": {"b": [{"exists": False}]}}, {"a": {"b": "x"}}, False),
    ],
)
def test_filter_matching(pattern: dict[str, Any], record: dict[str, Any], expected: bool) -> None:
    assert matches(pattern, record) is expected


@pytest.mark.parametrize(
    "pattern",
    [
        '{"dynamodb": {"NewImage": {"amount": {"N": [{"numeric": [">", 0]}]}}}}',
        '{"eventName": [{"anything-but": ["REMOVE"]}]}',
        '{"eventName": "INSERT"}',
        '{"eventName": []}',
        '{"eventName": [{"prefix": 1}]}',
        "not json",
        "[]",
    ],
)
def test_a_filter_the_local_stack_cannot_emulate_is_refused(pattern: str, tmp_path: Path) -> None:
    stack = Stack(tmp_path, {"FilterCriteria": {"Filters": [{"Pattern": pattern}]}}, {})
    stack.provisioned = Provisioned(
        {"Things": "things"}, {"Things": {"StreamArn": "arn:aws:dynamodb:x"}}
    )
    with pytest.raises(TemplateError, match=f"{stack.function}.Events.Changes"):
        stack.subscriptions()
    with pytest.raises(TemplateError):
        compile_filters({"Filters": [{"Pattern": pattern}]}, "here")


def test_properties_the_local_stack_cannot_emulate_are_refused(tmp_path: Path) -> None:
    stack = Stack(tmp_path, {"TumblingWindowInSeconds": 60}, {})
    stack.provisioned = Provisioned(
        {"Things": "things"}, {"Things": {"StreamArn": "arn:aws:dynamodb:x"}}
    )
    with pytest.raises(TemplateError, match="TumblingWindowInSeconds"):
        stack.subscriptions()


# -- errors --------------------------------------------------------------------------------


def test_a_raising_function_gets_the_same_batch_again(embedded: str, tmp_path: Path) -> None:
    stack = make_stack(tmp_path, {"raise": {"item-1": 1}}, BatchSize=3, MaximumRetryAttempts=2)
    for key in keys(3):
        stack.put(key)
    with pumping(stack.subscriptions()) as pump:
        eventually(lambda: pump.delivered == 3)
        assert pump.counters.failed_invocations == 1
    assert stack.batches() == [keys(3), keys(3)]


def test_a_failing_batch_is_bisected_down_to_the_bad_record(embedded: str, tmp_path: Path) -> None:
    stack = make_stack(
        tmp_path,
        {"raise": {"item-2": 2}},
        BatchSize=4,
        BisectBatchOnFunctionError=True,
        MaximumRetryAttempts=0,  # splitting consumes no retries
    )
    for key in keys(4):
        stack.put(key)
    with pumping(stack.subscriptions()) as pump:
        eventually(lambda: pump.delivered == 4)
        assert pump.counters.discarded == 0
    k = keys(4)
    assert stack.batches() == [k, k[:2], k[2:], ["item-2"], ["item-3"]]


def test_batch_item_failures_redeliver_from_the_failed_record_only(
    embedded: str, tmp_path: Path
) -> None:
    stack = make_stack(
        tmp_path,
        {"fail": {"item-2": 1, "item-4": 1}},
        BatchSize=5,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    for key in keys(6):
        stack.put(key)
    with pumping(stack.subscriptions()) as pump:
        eventually(lambda: pump.delivered == 6)
    k = keys(6)
    # The earliest failure (item-2) is the checkpoint; item-4, failed too, comes with it.
    assert stack.batches() == [k[:5], k[2:5], k[5:]]


def test_batch_item_failures_are_ignored_unless_the_event_reports_them(
    embedded: str, tmp_path: Path
) -> None:
    stack = make_stack(tmp_path, {"fail": {"item-1": 1}}, BatchSize=5)
    for key in keys(3):
        stack.put(key)
    with pumping(stack.subscriptions()) as pump:
        eventually(lambda: pump.delivered == 3)
    assert stack.batches() == [keys(3)]


def test_exhausted_retries_go_to_the_on_failure_queue(embedded: str, tmp_path: Path) -> None:
    stack = Stack(
        tmp_path,
        {
            "BatchSize": 2,
            "MaximumRetryAttempts": 1,
            "DestinationConfig": {
                "OnFailure": {"Destination": {"Fn::GetAtt": ["Failures", "Arn"]}}
            },
        },
        {"raise": {"item-1": 100}},
    )
    stack.provision()
    for key in keys(3):
        stack.put(key)
    sqs = boto3.client("sqs")
    queue = stack.provisioned.physical["Failures"]
    with pumping(stack.subscriptions()) as pump:
        eventually(lambda: pump.delivered == 1)
        assert pump.counters.discarded == 2
    k = keys(3)
    # Then the bad batch came twice (one retry), was given up, and the stream went on
    assert stack.batches() == [k[:2], k[:2], k[2:]]
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert len(messages) == 1
    record = json.loads(messages[0]["Body"])
    sequences = [r["dynamodb"]["SequenceNumber"] for r in stack.events()[0]["Records"]]
    stream_arn = stack.provisioned.attributes["Things"]["StreamArn"]
    info = record["DDBStreamBatchInfo"]
    assert info["startSequenceNumber"] == sequences[0]
    assert info["endSequenceNumber"] == sequences[1]
    assert info["batchSize"] == 2
    assert info["streamArn"] == stream_arn
    assert info["shardId"].startswith("shardId-")
    assert info["approximateArrivalOfFirstRecord"].endswith("Z")
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert record["requestContext"]["functionArn"].endswith(f":function:{stack.function}")
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["version"] == "1.0"


# -- the local stack -----------------------------------------------------------------------


def test_the_ledger_stream_reaches_the_usage_aggregator_subscription(
    embedded: str, tmp_path: Path, template: Template
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    provisioned = provision(template, prefix)
    subscriptions = subscribe(template, provisioned, prefix)
    assert [(s.spec.logical_id, s.event) for s in subscriptions] == [
        ("UsageAggregatorFunction", "LedgerEntries")
    ]
    (aggregator,) = subscriptions
    assert aggregator.stream_arn == provisioned.attributes["LedgerTable"]["StreamArn"]
    assert aggregator.report_item_failures
    assert (
        aggregator.on_failure == (provisioned.attributes["UsageAggregatorDeadLetterQueue"]["Arn"])
    )
    # Delivered to a recorder in the aggregator's place (its code is not under test here)
    recorder = Stack(tmp_path, {}, {})
    subscription = dataclasses.replace(
        aggregator,
        spec=recorder.template.functions[recorder.function],
        batching_window=0,
    )
    ledger = provisioned.physical["LedgerTable"]
    client = boto3.client("dynamodb")

    def entry(sk: str, kind: str) -> None:
        item = {"account_id": {"S": "u1"}, "sk": {"S": sk}, "kind": {"S": kind}}
        client.put_item(TableName=ledger, Item=item)

    entry("ENTRY#grant", "grant")
    entry("ENTRY#debit", "debit")
    entry("ENTRY#debit", "debit")  # rewritten: a MODIFY, not counted
    with pumping([subscription]) as pump:
        eventually(lambda: pump.counters.read == 3 and pump.delivered == 1)
    (event,) = recorder.events()
    (record,) = event["Records"]
    assert record["dynamodb"]["Keys"] == {"account_id": {"S": "u1"}, "sk": {"S": "ENTRY#debit"}}
    assert record["eventSourceARN"] == provisioned.attributes["LedgerTable"]["StreamArn"]


def test_reads_finding_nothing_new_do_not_grow_motos_iterators(
    embedded: str, tmp_path: Path
) -> None:
    stack = make_stack(tmp_path)
    iterators = dynamodbstreams_backends[ACCOUNT_ID][REGION].shard_iterators
    with pumping(stack.subscriptions()) as pump:
        eventually(lambda: pump.counters.polls >= 1)
        before = len(iterators)
        polls = pump.counters.polls
        # Every write to a streamed table wakes the pump, which reads its own stream too.
        (tmp_path / "other").mkdir()
        other = make_stack(tmp_path / "other")
        for key in keys(30):
            other.put(key)
        eventually(lambda: pump.counters.polls > polls)
        assert len(iterators) == before
        stack.put("item-0")
        eventually(lambda: pump.delivered == 1)


def test_an_idle_pump_does_not_poll_and_wakes_on_a_write(embedded: str, tmp_path: Path) -> None:
    stack = make_stack(tmp_path)
    with pumping(stack.subscriptions()) as pump:
        eventually(lambda: pump.counters.polls >= 1)
        polls = pump.counters.polls
        # Given an idle stream, when nobody writes for a while
        time.sleep(0.5)
        # Then the pump read nothing more (it used to poll 5 times a second)
        assert pump.counters.polls == polls
        # And a write still reaches the function
        stack.put("item-0")
        eventually(lambda: pump.delivered == 1)
