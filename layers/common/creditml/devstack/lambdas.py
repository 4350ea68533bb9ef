"""Lambda's Invoke API for the template's functions, served by the embedded AWS.

A function that starts another (POST /reports/daily/{date} starts usage_report) calls
`lambda:Invoke` with the AWS SDK. moto would run the target in Docker; the local stack has
no Docker, so this WSGI middleware, in front of moto, answers Invoke for every function of
the template (by name, alias-qualified name or ARN, as `!Ref Function.Alias` resolves
locally to the function's logical id) and runs the real handler in-process:

  RequestResponse   runs it and answers its result (200; a raised error, or a result that
                    is not JSON, as Lambda reports it: 200 with
                    `X-Amz-Function-Error: Unhandled` and the error document)
  Event             answers 202 at once and runs it on a thread of its own, retried after a
                    failure up to its EventInvokeConfig's MaximumRetryAttempts (default 2,
                    with a second's pause instead of Lambda's minutes), then handed to its
                    OnFailure SQS destination if it has one, in Lambda's record shape
  DryRun            204

It runs outside the embedded AWS's lock: the invoked code makes AWS calls of its own.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import boto3

from creditml.devstack.runtime import LambdaContext, invoke
from creditml.devstack.template import FunctionSpec
from creditml.observability import telemetry
from creditml.storage.clients import client_config

logger = telemetry("devstack").logger
StartResponse = Callable[..., Any]
INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations$")
DEFAULT_RETRIES = 2  # Lambda's default for asynchronous invocations
RETRY_PAUSE_SECONDS = 1.0
ASYNC_WORKERS = 4


class _Unhandled(Exception):
    """An invocation that failed as Lambda reports it: `error` is its error document."""

    def __init__(self, error: dict[str, str]) -> None:
        super().__init__(error["errorMessage"])
        self.error = error


def function_name(identifier: str) -> str:
    """The function a FunctionName parameter names: `Name`, `Name:qualifier`, its ARN
    `arn:aws:lambda:<region>:<account>:function:Name[:qualifier]` or its partial ARN
    `<account>:function:Name[:qualifier]`."""
    if ":function:" in identifier:
        identifier = identifier.split(":function:", 1)[1]
    elif identifier.startswith("arn:"):
        identifier = ""
    return identifier.split(":", 1)[0]


class LocalLambda:
    """WSGI middleware: Invoke for the template's functions, everything else to `app`."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self._functions: dict[str, FunctionSpec] = {}
        self._pool = ThreadPoolExecutor(ASYNC_WORKERS, thread_name_prefix="lambda-event")
        self._counting = threading.Lock()
        self.delivered = 0
        self.failed = 0

    def serve(self, functions: Mapping[str, FunctionSpec], resolve: Callable[[Any], Any]) -> None:
        """Answer Invoke for `functions` (by logical id) from now on; `resolve` resolves
        their EventInvokeConfig's intrinsics (the failure destination's queue ARN)."""
        self._functions = {
            name: replace(spec, event_invoke_config=resolve(dict(spec.event_invoke_config)))
            for name, spec in functions.items()
        }

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        found = INVOKE_PATH.match(environ.get("PATH_INFO", ""))
        if found is None or environ.get("REQUEST_METHOD") != "POST":
            return self._app(environ, start_response)
        spec = self._functions.get(function_name(unquote(found["name"])))
        if spec is None:
            return _answer(
                start_response,
                "404 Not Found",
                _error("ResourceNotFoundException", "Function not found"),
                {"x-amzn-ErrorType": "ResourceNotFoundException"},
            )
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        try:
            payload = json.loads(raw or b"{}")
        except ValueError:
            return _answer(
                start_response,
                "400 Bad Request",
                _error("InvalidRequestContentException", "Could not parse request body into json"),
                {"x-amzn-ErrorType": "InvalidRequestContentException"},
            )
        kind = environ.get("HTTP_X_AMZ_INVOCATION_TYPE", "RequestResponse")
        if kind == "DryRun":
            return _answer(start_response, "204 No Content", b"", {})
        if kind == "Event":
            self._pool.submit(self._run_event, spec, payload)
            return _answer(start_response, "202 Accepted", b"", {})
        return self._run_now(spec, payload, start_response)

    def _run_now(
        self, spec: FunctionSpec, payload: Any, start_response: StartResponse
    ) -> Iterable[bytes]:
        try:
            body = _run(spec, payload)
        except _Unhandled as failed:  # reported to the caller as Lambda reports it
            return _answer(
                start_response,
                "200 OK",
                json.dumps(failed.error).encode(),
                {"X-Amz-Function-Error": "Unhandled"},
            )
        return _answer(start_response, "200 OK", body, {})

    def _run_event(self, spec: FunctionSpec, payload: Any) -> None:
        config = spec.event_invoke_config
        retries = int(config.get("MaximumRetryAttempts", DEFAULT_RETRIES))
        error: dict[str, str] = {}
        for attempt in range(retries + 1):
            if attempt:  # Lambda waits before each retry (not after the last attempt)
                threading.Event().wait(RETRY_PAUSE_SECONDS)
            try:
                _run(spec, payload)
            except _Unhandled as failed:
                error = failed.error
                continue
            with self._counting:
                self.delivered += 1
            return
        with self._counting:
            self.failed += 1
        try:
            _to_failure_destination(spec, payload, retries + 1, error)
        except Exception:  # nobody waits on this thread's outcome: say so here
            logger.exception(
                "Asynchronous invocation lost (its failure destination failed)",
                extra={"function": spec.logical_id},
            )


def _run(spec: FunctionSpec, payload: Any) -> bytes:
    """The handler's JSON result for `payload`; _Unhandled when it raised, or when what it
    returned is not JSON (Lambda's Runtime.MarshalError)."""
    try:
        result = invoke(spec, payload)
    except Exception as error:
        logger.exception("Invoked function failed", extra={"function": spec.logical_id})
        raise _Unhandled({"errorMessage": str(error), "errorType": type(error).__name__}) from error
    try:
        return json.dumps(result).encode()
    except (TypeError, ValueError) as error:
        logger.error("Invoked function's result is not JSON", extra={"function": spec.logical_id})
        raise _Unhandled(
            {
                "errorMessage": f"Unable to marshal response: {error}",
                "errorType": "Runtime.MarshalError",
            }
        ) from error


def _to_failure_destination(
    spec: FunctionSpec, payload: Any, attempts: int, error: dict[str, str]
) -> None:
    destination = spec.event_invoke_config.get("DestinationConfig", {}).get("OnFailure", {})
    arn = destination.get("Destination")
    if not isinstance(arn, str) or ":sqs:" not in arn:
        logger.error("Asynchronous invocation dropped", extra={"function": spec.logical_id})
        return
    sqs = boto3.client("sqs", config=client_config())
    queue_url = sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[1])["QueueUrl"]
    sqs.send_message(
        QueueUrl=queue_url, MessageBody=json.dumps(failure_record(spec, payload, attempts, error))
    )


def failure_record(
    spec: FunctionSpec, payload: Any, attempts: int, error: dict[str, str]
) -> dict[str, Any]:
    """What Lambda sends an OnFailure destination for an event it gave up on."""
    now = datetime.now(UTC)
    arn = LambdaContext.for_function(spec).invoked_function_arn
    return {
        "version": "1.0",
        "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": f"{arn}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": attempts,
        },
        "requestPayload": payload,
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "responsePayload": error,
    }


def _error(kind: str, message: str) -> bytes:
    return json.dumps({"Type": "User", "message": message, "__type": kind}).encode()


def _answer(
    start_response: StartResponse, status: str, body: bytes, headers: Mapping[str, str]
) -> list[bytes]:
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            *headers.items(),
        ],
    )
    return [body]
