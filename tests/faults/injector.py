"""Fault injection for the AWS clients the product creates, through botocore's own events.

Nothing of the product is patched: every botocore session registers the handlers listed in
`botocore.handlers.BUILTIN_HANDLERS` when it is created (moto hooks in the same way), so a
handler appended there reaches pynamodb's per-thread DynamoDB clients and boto3's S3/KMS/
Secrets Manager clients alike. The handler does nothing until a test arms a `FaultPlan`.

Three ways to fail a call:
- `before-call`: answer with an error response instead of sending the request (the write
  never happens): throttling, internal errors, a cancelled transaction.
- `after-call`: let the request succeed, then raise (the write happened, the reply is lost):
  a read timeout or a dropped connection, or `ContainerKilled` for a process that dies
  between the debit and its reply.
- `before-send` + retry: the request reaches AWS, then the SDK sees a read timeout and
  retries it by itself (botocore's standard retry), as it does on a real lost reply.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import botocore.handlers
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectionClosedError, ReadTimeoutError

FAKE_ENDPOINT = "https://fault-injection.invalid"


class ContainerKilled(BaseException):
    """The function's process died here: no handler, no reply (a BaseException so that no
    `except Exception` in the code under test can swallow it)."""


@dataclass(frozen=True)
class Fault:
    """One way for a call to fail. `stage` is when: before the call (nothing written),
    after it (written, reply lost) or on the wire with the SDK retrying."""

    name: str
    stage: str  # "before" | "after" | "wire"
    code: str = ""
    status: int = 400
    retryable: bool = True  # a caller retrying later may succeed: 503 + Retry-After expected

    @property
    def writes(self) -> bool:
        """Whether the call's effect happened despite the failure."""
        return self.stage in ("after", "wire")


THROTTLED = Fault("throttled", "before", "ProvisionedThroughputExceededException", 400)
REQUEST_LIMIT = Fault("request_limit", "before", "RequestLimitExceeded", 400)
INTERNAL = Fault("internal", "before", "InternalServerError", 500)
CONFLICT = Fault("conflict", "before", "TransactionCanceledException", 400)
TIMEOUT_AFTER_WRITE = Fault("timeout_after_write", "after")
CONNECTION_LOST = Fault("connection_lost", "after")
KILLED = Fault("killed", "after", retryable=False)
LOST_REPLY_RETRIED = Fault("lost_reply_retried", "wire")
S3_SLOW_DOWN = Fault("s3_slow_down", "before", "SlowDown", 503)
S3_INTERNAL = Fault("s3_internal", "before", "InternalError", 500)
KMS_THROTTLED = Fault("kms_throttled", "before", "ThrottlingException", 400)
KMS_INTERNAL = Fault("kms_internal", "before", "KMSInternalException", 500)
KMS_DISABLED = Fault("kms_disabled", "before", "DisabledException", 400, retryable=False)


@dataclass
class Rule:
    service: str  # botocore's hyphenized service id: dynamodb, s3, kms, secrets-manager
    operation: str
    fault: Fault
    skip: int = 0  # matching calls to let through first
    times: int = 1  # then fail this many
    fired: int = 0
    seen: int = 0

    def take(self, service: str, operation: str) -> bool:
        if service != self.service or operation != self.operation or self.fired >= self.times:
            return False
        self.seen += 1
        if self.seen <= self.skip:
            return False
        self.fired += 1
        return True


@dataclass
class FaultPlan:
    """The faults armed now, and a record of every one that fired (service, op, fault)."""

    rules: list[Rule] = field(default_factory=list)
    fired: list[tuple[str, str, Fault]] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    killed: bool = False  # a ContainerKilled fired: whatever reply follows was never sent

    def fail(
        self, service: str, operation: str, fault: Fault, *, skip: int = 0, times: int = 1
    ) -> FaultPlan:
        self.rules.append(Rule(service, operation, fault, skip, times))
        return self

    def match(self, service: str, operation: str, stage: str) -> Fault | None:
        for rule in self.rules:
            if rule.fault.stage == stage and rule.take(service, operation):
                self.fired.append((service, operation, rule.fault))
                return rule.fault
        return None

    def fired_names(self) -> list[str]:
        return [fault.name for _, _, fault in self.fired]


_lock = threading.Lock()
_armed: FaultPlan | None = None


@contextmanager
def faults(plan: FaultPlan | None = None) -> Iterator[FaultPlan]:
    """Arm `plan` (a new empty one by default) for the duration of the block."""
    global _armed
    plan = plan or FaultPlan()
    with _lock:
        _armed = plan
    try:
        yield plan
    finally:
        with _lock:
            _armed = None


def armed() -> FaultPlan | None:
    """The plan armed now, if any."""
    return _armed


def _service_and_operation(event_name: str) -> tuple[str, str]:
    parts = event_name.split(".")
    return parts[1], parts[2]


def _error_response(fault: Fault, params: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]]:
    parsed: dict[str, Any] = {
        "Error": {"Code": fault.code, "Message": f"injected fault: {fault.name}"},
        "ResponseMetadata": {"HTTPStatusCode": fault.status, "HTTPHeaders": {}},
    }
    if fault.code == "TransactionCanceledException":
        items = json.loads(params.get("body") or b"{}").get("TransactItems", [])
        # Another transaction holds the last item (the account): DynamoDB names the item
        # and gives "None" for the others.
        reasons = [{"Code": "None"} for _ in items[:-1]]
        reasons.append({"Code": "TransactionConflict", "Message": "Transaction is ongoing"})
        parsed["CancellationReasons"] = reasons
        parsed["Error"]["Message"] = "Transaction cancelled [TransactionConflict]"
    return AWSResponse(FAKE_ENDPOINT, fault.status, {}, None), parsed


def _before_call(event_name: str, params: dict[str, Any], **_: Any) -> Any:
    plan = _armed
    if plan is None:
        return None
    service, operation = _service_and_operation(event_name)
    plan.calls.append((service, operation))
    fault = plan.match(service, operation, "before")
    return None if fault is None else _error_response(fault, params)


def _after_call(event_name: str, http_response: Any, **_: Any) -> None:
    plan = _armed
    if plan is None or http_response is None or http_response.status_code >= 300:
        return
    service, operation = _service_and_operation(event_name)
    fault = plan.match(service, operation, "after")
    if fault is None:
        return
    if fault is KILLED:
        plan.killed = True
        raise ContainerKilled(f"process killed after {service}.{operation} succeeded")
    if fault is CONNECTION_LOST:
        raise ConnectionClosedError(endpoint_url=FAKE_ENDPOINT)
    raise ReadTimeoutError(endpoint_url=FAKE_ENDPOINT)


def _before_send(event_name: str, request: Any, **_: Any) -> Any:
    plan = _armed
    if plan is None:
        return None
    service, operation = _service_and_operation(event_name)
    if plan.match(service, operation, "wire") is None:
        return None
    # Deliver the request to (in-process) moto, then lose the reply: botocore sees a read
    # timeout and retries the very same request by itself.
    from moto.core.models import botocore_stubber

    response = botocore_stubber(event_name, request)
    assert response is not None, "lost-reply faults need moto's in-process AWS"
    raise ReadTimeoutError(endpoint_url=FAKE_ENDPOINT)


_HANDLERS: list[tuple[str, Callable[..., Any]]] = [
    ("before-call", _before_call),
    ("after-call", _after_call),
]


def install() -> None:
    """Make every botocore session created from now on carry the injection handlers
    (idempotent). The before-send handler goes first so it runs ahead of moto's."""
    builtin = botocore.handlers.BUILTIN_HANDLERS
    if any(entry[1] is _before_call for entry in builtin):
        return
    builtin.extend(_HANDLERS)
    builtin.insert(0, ("before-send", _before_send))
