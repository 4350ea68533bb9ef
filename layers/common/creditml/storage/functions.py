"""Calling an HTTP function of this stack directly, through Lambda's Invoke API.

The web UI's predict form is served by the predict function itself: the web function
invokes it with the HTTP API (payload v2) event API Gateway would have sent, so the
prediction is checked, run and billed by exactly the code the API runs, and the web function
never loads scikit-learn or model keys. The answer is the function's HTTP response.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import boto3
from botocore.config import Config

from creditml.errors import DomainError
from creditml.storage.clients import client_config

LAMBDA_CALL = Config(connect_timeout=5, read_timeout=32, retries={"max_attempts": 2})


class FunctionFailed(DomainError):
    """The invoked function failed as a whole (no HTTP answer): a 502 for the caller."""

    status = 502
    code = "upstream_failed"
    title = "The service could not answer"

    def __init__(self) -> None:
        super().__init__(
            "If it was charged, the receipt is in History; submitting the same form again "
            "never charges twice."
        )


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http_event(
    method: str, path: str, headers: dict[str, str], body: bytes, source_ip: str
) -> dict[str, Any]:
    """The HTTP API payload v2 event API Gateway sends for this request (no route key:
    the function's app routes by path, as it does behind `$default`)."""
    now = datetime.now(UTC)
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {name.lower(): value for name, value in headers.items()},
        "requestContext": {
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": "creditml-web",
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": "$default",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(time.time() * 1000),
        },
        "body": base64.b64encode(body).decode("ascii"),
        "isBase64Encoded": True,
    }


class HttpFunction:
    """One HTTP function of the stack, invoked synchronously (RequestResponse)."""

    def __init__(self, function_name: str) -> None:
        self._function = function_name

    @cached_property
    def _lambda(self) -> Any:
        # Longer than the called function may run (its Timeout), so its answer is never
        # lost to ours; a retry of the call is safe (the request's Idempotency-Key).
        return boto3.client("lambda", config=client_config().merge(LAMBDA_CALL))

    def call(
        self, method: str, path: str, headers: dict[str, str], body: bytes, source_ip: str
    ) -> HttpAnswer:
        """The function's HTTP answer; FunctionFailed when it failed without one."""
        event = http_event(method, path, headers, body, source_ip)
        reply = self._lambda.invoke(
            FunctionName=self._function,
            InvocationType="RequestResponse",
            Payload=json.dumps(event).encode(),
        )
        payload = reply["Payload"].read()
        if reply.get("FunctionError"):
            raise FunctionFailed()
        return to_answer(json.loads(payload))


def to_answer(response: dict[str, Any]) -> HttpAnswer:
    """An HTTP API (v2) function result as an HttpAnswer."""
    raw = response.get("body") or ""
    body = base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode()
    headers = {name.lower(): str(value) for name, value in (response.get("headers") or {}).items()}
    return HttpAnswer(int(response.get("statusCode", 200)), headers, body)
