"""S3 event notifications for the local stack.

moto cannot run Lambda functions without Docker, but it can notify an SQS queue. For every
function whose template Events include `Type: S3`, the stack points that bucket's
notifications at a queue of its own and a pump thread hands each S3 event (the very JSON
S3 sends to Lambda) to the function's real handler, asynchronously, as S3 does.

The pump does not poll: moto rings `QUEUED` whenever a message enters any queue of this
process (`install()`), and an idle pump sleeps until then. While a failed event waits to
become visible again (SQS's visibility timeout, then S3's retry), it looks once a second.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

import boto3
from moto.sqs.models import Message, Queue

from creditml.devstack.doorbell import Doorbell
from creditml.devstack.runtime import invoke
from creditml.devstack.template import FunctionSpec, Template
from creditml.observability import telemetry

logger = telemetry("devstack").logger
MAX_ATTEMPTS = 3  # S3 retries an asynchronous Lambda invocation twice
RETRY_CHECK_SECONDS = 1.0  # how often to look for a failed event visible again
# Only a safety net: every message moto queues in this process rings QUEUED.
IDLE_CHECK_SECONDS = 30.0
QUEUED = Doorbell()
_moto_add_message = Queue.add_message


def _add_message(self: Queue, message: Message) -> None:
    """moto's Queue.add_message, then a ring for the pumps."""
    _moto_add_message(self, message)
    QUEUED.ring()


def install() -> None:
    """Make every moto SQS queue in this process ring QUEUED when a message arrives."""
    Queue.add_message = _add_message  # type: ignore[method-assign]


@dataclass(frozen=True)
class S3Subscription:
    spec: FunctionSpec
    bucket: str
    events: list[str]
    queue_url: str


def subscribe(template: Template, physical: dict[str, str], prefix: str) -> list[S3Subscription]:
    """Point each S3-triggered function's bucket at a queue; returns the subscriptions."""
    sqs, s3 = boto3.client("sqs"), boto3.client("s3")
    by_bucket: dict[str, list[dict[str, Any]]] = {}
    subscriptions = []
    for spec in template.functions.values():
        for name, event in spec.events.items():
            if event.get("Type") != "S3":
                continue
            props = event["Properties"]
            bucket = physical[props["Bucket"]["Ref"]]
            events = props["Events"] if isinstance(props["Events"], list) else [props["Events"]]
            queue_url = sqs.create_queue(QueueName=f"{prefix}-{spec.logical_id}-{name}")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
            by_bucket.setdefault(bucket, []).append(
                {"QueueArn": arn["Attributes"]["QueueArn"], "Events": events}
            )
            subscriptions.append(S3Subscription(spec, bucket, events, queue_url))
    for bucket, queues in by_bucket.items():
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"QueueConfigurations": queues}
        )
    return subscriptions


class S3EventPump:
    """Delivers queued S3 events to their functions until stopped."""

    def __init__(self, subscriptions: list[S3Subscription]) -> None:
        install()
        self._subscriptions = subscriptions
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="s3-events", daemon=True)
        self._sqs = boto3.client("sqs")
        self.delivered = 0
        self.receives = 0  # ReceiveMessage calls made
        self._retrying: set[str] = set()  # ids of failed events left for another attempt

    def start(self) -> S3EventPump:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10) -> None:
        """Stop delivering; wait at most `timeout` s for an event being delivered."""
        self._stop.set()
        QUEUED.ring()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            rung = QUEUED.rings  # before draining: a message queued meanwhile cuts the wait
            busy, failed = False, False
            for subscription in self._subscriptions:
                try:
                    busy |= self._drain(subscription)
                except Exception:  # keep the pump alive, as S3's would be
                    logger.exception("S3 event delivery failed")
                    failed = True
            if not busy:
                retry = failed or bool(self._retrying)
                QUEUED.wait(rung, RETRY_CHECK_SECONDS if retry else IDLE_CHECK_SECONDS)

    def _drain(self, subscription: S3Subscription) -> bool:
        # WaitTimeSeconds=0: a long poll would hold the embedded AWS's single lock.
        answer = self._sqs.receive_message(
            QueueUrl=subscription.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            AttributeNames=["ApproximateReceiveCount"],
        )
        self.receives += 1
        messages = answer.get("Messages", [])
        for message in messages:
            event = json.loads(message["Body"])
            attempts = int(message["Attributes"].get("ApproximateReceiveCount", "1"))
            if "Records" in event:  # skip S3's s3:TestEvent
                try:
                    invoke(subscription.spec, event)
                    self.delivered += 1
                except Exception:  # retried like an asynchronous invocation
                    logger.exception(
                        "S3-triggered function failed",
                        extra={"function": subscription.spec.logical_id},
                    )
                    if attempts < MAX_ATTEMPTS:
                        self._retrying.add(message["MessageId"])
                        continue
            self._retrying.discard(message["MessageId"])
            self._sqs.delete_message(
                QueueUrl=subscription.queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
        return bool(messages)
