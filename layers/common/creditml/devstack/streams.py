"""DynamoDB stream event sources for the local stack, as Lambda's event source mappings run.

moto keeps a table's stream but cannot run a function without Docker. For every function
whose template Events include `Type: DynamoDB`, a pump thread reads the stream through the
embedded AWS (`dynamodbstreams`: DescribeStream, GetShardIterator, GetRecords) and calls the
function's real handler with the very event Lambda would send, keeping Lambda's rules:

- records of a shard arrive in stream order, in batches of at most BatchSize, gathered for
  at most MaximumBatchingWindowInSeconds (cut to LOCAL_MAX_BATCHING_WINDOW locally);
- FilterCriteria drop the records that match none of the filters before batching (a
  subset of Lambda's filter syntax, below; anything else is refused at startup);
- a batch whose invocation raises comes again, whole (at-least-once), after a short backoff,
  or split in two first when BisectBatchOnFunctionError is set (splitting consumes no
  retries); with ReportBatchItemFailures, `{"batchItemFailures": [{"itemIdentifier": seq}]}`
  checkpoints before the earliest failed record and redelivers from it;
- after MaximumRetryAttempts the batch is discarded: described on the OnFailure SQS
  destination when DestinationConfig names one (Lambda's invocation record), else logged
  at ERROR. No record is dropped without one or the other.

The pump does not poll an idle stream: moto rings `WRITTEN` whenever it appends a record to
any stream of this process (`install()`), and the pump sleeps until then or until its own
next deadline (a batching window closing, a retry's backoff ending). Like Lambda, which
polls an idle shard 4 times a second, it reads again at most READ_INTERVAL after a read
that found nothing: records written meanwhile arrive together, in one invocation, instead
of one invocation per write competing with the writers for this process's CPU.

Filter syntax emulated: a JSON object whose fields are nested objects or non-empty lists of
matchers; a list matches when any matcher matches (an array in the record: any element).
Matchers: a string, number, boolean or null (exact, type included), `{"prefix": "..."}`,
`{"exists": true|false}` (leaf values only, as Lambda's). All fields of a pattern must
match; a record is delivered when any of the filters matches.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
from moto.dynamodb.models.dynamo_type import Item
from moto.dynamodb.models.table import StreamShard
from moto.dynamodbstreams.models import DynamoDBStreamsBackend

from creditml.devstack.aws import ACCOUNT_ID, REGION, Provisioned, pseudo_parameters
from creditml.devstack.doorbell import Doorbell
from creditml.devstack.runtime import invoke
from creditml.devstack.template import FunctionSpec, Resolver, Template, TemplateError
from creditml.observability import telemetry
from creditml.storage.clients import client_config

logger = telemetry("devstack").logger
# Only a safety net: every record moto appends to a stream in this process rings WRITTEN.
IDLE_CHECK_SECONDS = 30.0
READ_INTERVAL = 0.25  # Lambda polls an idle shard 4 times a second
LOCAL_MAX_BATCHING_WINDOW = 2.0  # longer windows are cut, so local feedback stays quick
READ_LIMIT = 1000  # GetRecords' own maximum
RETRY_BASE_SECONDS = 0.05
RETRY_MAX_SECONDS = 1.0
MAX_FILTERS = 5
REPORT_ITEM_FAILURES = "ReportBatchItemFailures"
_PROPERTIES = frozenset(
    {
        "Stream",
        "StartingPosition",
        "BatchSize",
        "MaximumBatchingWindowInSeconds",
        "ParallelizationFactor",  # one batch per shard at a time locally: order is kept anyway
        "BisectBatchOnFunctionError",
        "MaximumRetryAttempts",
        "FunctionResponseTypes",
        "FilterCriteria",
        "DestinationConfig",
        "Enabled",
    }
)
Record = dict[str, Any]


# -- filters -------------------------------------------------------------------------------

_MISSING = object()


def compile_filters(criteria: Any, where: str) -> tuple[dict[str, Any], ...]:
    """The patterns of a FilterCriteria property, checked; TemplateError for any syntax
    the local stack does not emulate."""
    if criteria is None:
        return ()
    filters = criteria.get("Filters") if isinstance(criteria, dict) else None
    if not isinstance(filters, list) or not 0 < len(filters) <= MAX_FILTERS:
        raise TemplateError(f"{where}: FilterCriteria needs 1 to {MAX_FILTERS} Filters")
    patterns = []
    for item in filters:
        text = item.get("Pattern") if isinstance(item, dict) else None
        if not isinstance(text, str):
            raise TemplateError(f"{where}: each filter needs a Pattern string")
        try:
            pattern = json.loads(text)
        except json.JSONDecodeError as error:
            raise TemplateError(f"{where}: filter pattern is not JSON: {text}") from error
        _check_pattern(pattern, where, "")
        patterns.append(pattern)
    return tuple(patterns)


def _check_pattern(pattern: Any, where: str, path: str) -> None:
    if not isinstance(pattern, dict) or not pattern:
        raise TemplateError(f"{where}: filter pattern {path or '(top)'} must be a JSON object")
    for key, rule in pattern.items():
        at = f"{path}.{key}" if path else key
        if isinstance(rule, dict):
            _check_pattern(rule, where, at)
        elif isinstance(rule, list) and rule:
            for matcher in rule:
                _check_matcher(matcher, where, at)
        else:
            raise TemplateError(f"{where}: filter field {at} must be an object or a list")


def _check_matcher(matcher: Any, where: str, at: str) -> None:
    if matcher is None or isinstance(matcher, str | int | float | bool):
        return
    if isinstance(matcher, dict) and len(matcher) == 1:
        ((operator, argument),) = matcher.items()
        if (operator, type(argument)) in (("prefix", str), ("exists", bool)):
            return
    raise TemplateError(
        f"{where}: filter field {at}: the local stack does not emulate {json.dumps(matcher)}"
        ' (only exact values, {"prefix": "..."} and {"exists": true|false})'
    )


def matches(pattern: Mapping[str, Any], record: Any) -> bool:
    """Whether `record` matches one compiled filter `pattern`."""
    return all(_field_matches(rule, _field(record, key)) for key, rule in pattern.items())


def _field(value: Any, key: str) -> Any:
    return value.get(key, _MISSING) if isinstance(value, dict) else _MISSING


def _field_matches(rule: Any, value: Any) -> bool:
    values = value if isinstance(value, list) else [value]
    if isinstance(rule, dict):
        return any(matches(rule, item) for item in values)
    return any(_matcher_matches(matcher, item) for matcher in rule for item in values)


def _matcher_matches(matcher: Any, value: Any) -> bool:
    is_leaf = value is not _MISSING and not isinstance(value, dict)
    if isinstance(matcher, dict):
        ((operator, argument),) = matcher.items()
        if operator == "exists":
            return bool(is_leaf is argument)
        return isinstance(value, str) and value.startswith(argument)
    if isinstance(matcher, int | float) and not isinstance(matcher, bool):
        return isinstance(value, int | float) and not isinstance(value, bool) and value == matcher
    return type(value) is type(matcher) and bool(value == matcher)


# -- subscriptions -------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamSubscription:
    """One `Type: DynamoDB` event of a function: what Lambda's event source mapping holds."""

    spec: FunctionSpec
    event: str
    stream_arn: str
    starting_position: str
    batch_size: int = 100
    batching_window: float = 0.0
    bisect: bool = False
    max_retries: int | None = None  # None: until the record expires (Lambda's -1)
    report_item_failures: bool = False
    filters: tuple[dict[str, Any], ...] = ()
    on_failure: str | None = None  # an SQS queue ARN

    @property
    def function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.spec.logical_id}"

    def wants(self, record: Record) -> bool:
        return not self.filters or any(matches(pattern, record) for pattern in self.filters)


def subscribe(
    template: Template, provisioned: Provisioned, prefix: str
) -> list[StreamSubscription]:
    """The stream subscriptions of `template`'s functions, resolved against `provisioned`
    resources; TemplateError for anything the local stack cannot emulate faithfully."""
    resolver = Resolver(
        template, provisioned.physical, provisioned.attributes, pseudo_parameters(prefix)
    )
    subscriptions = []
    for spec in template.functions.values():
        for name, event in spec.events.items():
            if event.get("Type") != "DynamoDB":
                continue
            props = resolver.resolve(event.get("Properties", {}))
            if str(props.get("Enabled", True)).lower() != "false":
                subscriptions.append(_subscription(spec, name, props))
    return subscriptions


def _subscription(spec: FunctionSpec, name: str, props: dict[str, Any]) -> StreamSubscription:
    where = f"{spec.logical_id}.Events.{name}"
    unknown = sorted(set(props) - _PROPERTIES)
    if unknown:
        raise TemplateError(f"{where}: the local stack does not emulate {', '.join(unknown)}")
    position = props.get("StartingPosition")
    if position not in ("TRIM_HORIZON", "LATEST"):
        raise TemplateError(f"{where}: StartingPosition must be TRIM_HORIZON or LATEST")
    responses = props.get("FunctionResponseTypes", [])
    if set(responses) - {REPORT_ITEM_FAILURES}:
        raise TemplateError(f"{where}: FunctionResponseTypes may only be {REPORT_ITEM_FAILURES}")
    retries = int(props.get("MaximumRetryAttempts", -1))
    return StreamSubscription(
        spec=spec,
        event=name,
        stream_arn=str(props["Stream"]),
        starting_position=position,
        batch_size=int(props.get("BatchSize", 100)),
        batching_window=min(
            float(props.get("MaximumBatchingWindowInSeconds", 0)), LOCAL_MAX_BATCHING_WINDOW
        ),
        bisect=str(props.get("BisectBatchOnFunctionError", False)).lower() == "true",
        max_retries=None if retries < 0 else retries,
        report_item_failures=REPORT_ITEM_FAILURES in responses,
        filters=compile_filters(props.get("FilterCriteria"), where),
        on_failure=_on_failure(props.get("DestinationConfig"), where),
    )


def _on_failure(config: Any, where: str) -> str | None:
    destination = (config or {}).get("OnFailure", {}).get("Destination")
    if destination is None:
        return None
    if not str(destination).startswith("arn:aws:sqs:"):
        raise TemplateError(f"{where}: the local stack delivers OnFailure to SQS queues only")
    return str(destination)


# -- events --------------------------------------------------------------------------------


def _wire(value: Any) -> Any:
    """An SDK-parsed value back as JSON Lambda sends: binary (B, BS) as base64 text."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {key: _wire(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_wire(item) for item in value]
    return value


def lambda_record(raw: Mapping[str, Any], stream_arn: str) -> Record:
    """A GetRecords record (as boto3 parses it) in the shape Lambda delivers it."""
    change = _wire(dict(raw["dynamodb"]))
    created = raw["dynamodb"].get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        change["ApproximateCreationDateTime"] = int(created.timestamp())
    return {
        "eventID": raw["eventID"],
        "eventName": raw["eventName"],
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": raw.get("awsRegion", REGION),
        "dynamodb": change,
        "eventSourceARN": stream_arn,
    }


def _sequence(record: Record) -> str:
    return str(record["dynamodb"]["SequenceNumber"])


def _iso(epoch: Any) -> str | None:
    if not isinstance(epoch, int | float):
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def failure_record(
    subscription: StreamSubscription,
    shard_id: str,
    batch: list[Record],
    invocations: int,
    function_error: bool,
) -> dict[str, Any]:
    """What Lambda sends an OnFailure destination for a discarded stream batch."""
    response: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
    if function_error:
        response["functionError"] = "Unhandled"
    now = datetime.now(UTC)
    return {
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": subscription.function_arn,
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": invocations,
        },
        "responseContext": response,
        "version": "1.0",
        "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        "DDBStreamBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": _sequence(batch[0]),
            "endSequenceNumber": _sequence(batch[-1]),
            "approximateArrivalOfFirstRecord": _iso(
                batch[0]["dynamodb"].get("ApproximateCreationDateTime")
            ),
            "approximateArrivalOfLastRecord": _iso(
                batch[-1]["dynamodb"].get("ApproximateCreationDateTime")
            ),
            "batchSize": len(batch),
            "streamArn": subscription.stream_arn,
        },
    }


# -- the pump ------------------------------------------------------------------------------


@dataclass
class StreamCounters:
    """What a pump did: records read, filtered out, delivered (acknowledged by the
    function), and discarded after their retries; invocations and the failed ones."""

    read: int = 0
    filtered: int = 0
    delivered: int = 0
    discarded: int = 0
    invocations: int = 0
    failed_invocations: int = 0
    polls: int = 0


@dataclass
class _Shard:
    """One shard of one subscription: Lambda's checkpoint, its pending and failing batches."""

    subscription: StreamSubscription
    shard_id: str
    iterator: str | None
    pending: list[Record] = field(default_factory=list)
    pending_since: float = 0.0
    work: deque[list[Record]] = field(default_factory=deque)  # batches, in stream order
    retries: int = 0
    retry_at: float = 0.0


class StreamEventPump:
    """Delivers DynamoDB stream records to their functions until stopped."""

    def __init__(self, subscriptions: list[StreamSubscription]) -> None:
        install()
        self._subscriptions = subscriptions
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stream-events", daemon=True)
        # moto's in-process mock misroutes ARN-addressed calls without a regional endpoint.
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or (
            f"https://streams.dynamodb.{REGION}.amazonaws.com"
        )
        self._streams = boto3.client(
            "dynamodbstreams", endpoint_url=endpoint, config=client_config()
        )
        self._sqs = boto3.client("sqs", config=client_config())
        self._shards: list[_Shard] = []
        self.counters = StreamCounters()

    @property
    def delivered(self) -> int:
        return self.counters.delivered

    def start(self) -> StreamEventPump:
        """Open every subscription's shards (LATEST means now) and start delivering."""
        for subscription in self._subscriptions:
            self._shards.extend(self._open(subscription))
        self._thread.start()
        return self

    def stop(self, timeout: float = 10) -> None:
        """Stop delivering; wait at most `timeout` s for a batch being delivered."""
        self._stop.set()
        WRITTEN.ring()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def _open(self, subscription: StreamSubscription) -> list[_Shard]:
        stream = self._streams.describe_stream(StreamArn=subscription.stream_arn)
        shards = []
        for shard in stream["StreamDescription"]["Shards"]:
            iterator = self._streams.get_shard_iterator(
                StreamArn=subscription.stream_arn,
                ShardId=shard["ShardId"],
                ShardIteratorType=subscription.starting_position,
            )["ShardIterator"]
            shards.append(_Shard(subscription, shard["ShardId"], iterator))
        return shards

    def _run(self) -> None:
        while not self._stop.is_set():
            rung = WRITTEN.rings  # before reading: a record written meanwhile cuts the wait
            busy, failed = False, False
            for shard in self._shards:
                try:
                    busy |= self._step(shard, time.monotonic())
                except Exception:  # keep the pump alive; the shard's state is kept for a retry
                    logger.exception(
                        "stream event delivery failed",
                        extra={"function": shard.subscription.spec.logical_id},
                    )
                    failed = True
            if not busy:
                quiet_since = time.monotonic()
                WRITTEN.wait(rung, RETRY_MAX_SECONDS if failed else self._next_due(quiet_since))
                self._stop.wait(quiet_since + READ_INTERVAL - time.monotonic())

    def _next_due(self, now: float) -> float:
        """Seconds until a shard has something to do without a new record: a batching
        window closes, or a failed batch's backoff ends."""
        due = IDLE_CHECK_SECONDS
        for shard in self._shards:
            if shard.work:
                due = min(due, shard.retry_at - now)
            elif shard.pending:
                due = min(due, shard.pending_since + shard.subscription.batching_window - now)
        return max(due, 0.0)

    def _step(self, shard: _Shard, now: float) -> bool:
        """Read, batch and deliver what is due on `shard`; whether anything happened."""
        read = self._read(shard, now)
        if not shard.work:
            batch = self._take_batch(shard, now)
            if batch:
                shard.work.append(batch)
        if not shard.work or now < shard.retry_at:
            return read
        self._attempt(shard, shard.work[0])
        return True

    def _read(self, shard: _Shard, now: float) -> bool:
        # Read ahead at most one batch: a failing batch holds the shard, as Lambda's does.
        if shard.iterator is None or len(shard.pending) >= shard.subscription.batch_size:
            return False
        answer = self._streams.get_records(ShardIterator=shard.iterator, Limit=READ_LIMIT)
        self.counters.polls += 1
        records = [lambda_record(raw, shard.subscription.stream_arn) for raw in answer["Records"]]
        wanted = [record for record in records if shard.subscription.wants(record)]
        self.counters.read += len(records)
        self.counters.filtered += len(records) - len(wanted)
        if wanted and not shard.pending:
            shard.pending_since = now
        shard.pending.extend(wanted)
        shard.iterator = answer.get("NextShardIterator")  # None once a shard is closed
        return bool(records)

    def _take_batch(self, shard: _Shard, now: float) -> list[Record]:
        size, window = shard.subscription.batch_size, shard.subscription.batching_window
        if len(shard.pending) < size and (not shard.pending or now - shard.pending_since < window):
            return []
        batch, shard.pending = shard.pending[:size], shard.pending[size:]
        return batch

    def _attempt(self, shard: _Shard, batch: list[Record]) -> None:
        subscription = shard.subscription
        self.counters.invocations += 1
        try:
            response = invoke(subscription.spec, {"Records": batch})
        except Exception:  # a function error: Lambda retries the batch
            self.counters.failed_invocations += 1
            logger.exception(
                "stream-triggered function failed",
                extra={"function": subscription.spec.logical_id, "records": len(batch)},
            )
            self._failed(shard, batch, function_error=True)
            return
        failed_from = _first_failure(subscription, batch, response)
        self.counters.delivered += failed_from
        if failed_from == len(batch):
            shard.work.popleft()
            shard.retries, shard.retry_at = 0, 0.0
            return
        self.counters.failed_invocations += 1
        if failed_from == 0:  # the whole batch failed (or the response named no record)
            self._failed(shard, batch, function_error=False)
            return
        # Checkpoint before the earliest failed record; only the rest comes again.
        shard.work[0] = batch[failed_from:]
        self._retry_or_discard(shard, shard.work[0], function_error=False)

    def _failed(self, shard: _Shard, batch: list[Record], function_error: bool) -> None:
        if shard.subscription.bisect and len(batch) > 1:
            half = len(batch) // 2
            shard.work.popleft()
            shard.work.extendleft([batch[half:], batch[:half]])
            shard.retry_at = 0.0  # a split retries at once and consumes no retry
            return
        self._retry_or_discard(shard, batch, function_error)

    def _retry_or_discard(self, shard: _Shard, batch: list[Record], function_error: bool) -> None:
        limit = shard.subscription.max_retries
        if limit is None or shard.retries < limit:
            shard.retries += 1
            backoff = RETRY_BASE_SECONDS * 2 ** (shard.retries - 1)
            shard.retry_at = time.monotonic() + min(backoff, RETRY_MAX_SECONDS)
            return
        self._discard(shard, batch, function_error)
        shard.work.popleft()
        shard.retries, shard.retry_at = 0, 0.0

    def _discard(self, shard: _Shard, batch: list[Record], function_error: bool) -> None:
        subscription = shard.subscription
        message = failure_record(
            subscription, shard.shard_id, batch, shard.retries + 1, function_error
        )
        if subscription.on_failure is not None:
            queue = self._sqs.get_queue_url(QueueName=subscription.on_failure.rsplit(":", 1)[1])
            self._sqs.send_message(QueueUrl=queue["QueueUrl"], MessageBody=json.dumps(message))
        else:
            logger.error(
                "stream batch discarded after its retries (no OnFailure destination)",
                extra={"function": subscription.spec.logical_id, **message["DDBStreamBatchInfo"]},
            )
        self.counters.discarded += len(batch)


def _first_failure(subscription: StreamSubscription, batch: list[Record], response: Any) -> int:
    """Index of the earliest record the response reports failed; len(batch) when none did.
    An identifier that names no record of the batch fails the whole batch, as on Lambda."""
    if not subscription.report_item_failures or not isinstance(response, dict):
        return len(batch)
    failures = response.get("batchItemFailures") or []
    positions = {_sequence(record): index for index, record in enumerate(batch)}
    earliest = len(batch)
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if identifier not in positions:
            return 0
        earliest = min(earliest, positions[identifier])
    return earliest


# -- moto ----------------------------------------------------------------------------------

_moto_get_records = DynamoDBStreamsBackend.get_records


def _get_records(self: DynamoDBStreamsBackend, iterator_arn: str, limit: int) -> dict[str, Any]:
    """moto's GetRecords, except that a read finding nothing new hands back the same
    iterator rather than registering a fresh one (moto keeps every iterator it ever made:
    a pump polling an idle stream 5 times a second would grow memory without end)."""
    iterator = self.shard_iterators[iterator_arn]
    shard = iterator.stream_shard
    if iterator.sequence_number >= shard.starting_sequence_number + len(shard.items):
        return {"NextShardIterator": iterator_arn, "Records": []}
    result: dict[str, Any] = _moto_get_records(self, iterator_arn, limit)
    return result


WRITTEN = Doorbell()
_moto_add = StreamShard.add


def _add(self: StreamShard, old: Item | None, new: Item | None) -> None:
    """moto's StreamShard.add, then a ring for the pumps."""
    _moto_add(self, old, new)
    WRITTEN.ring()


def install() -> None:
    """Make every moto DynamoDB Streams backend in this process use `_get_records`, and
    every stream ring WRITTEN when a record is appended."""
    DynamoDBStreamsBackend.get_records = _get_records  # type: ignore[method-assign]
    StreamShard.add = _add  # type: ignore[method-assign]
