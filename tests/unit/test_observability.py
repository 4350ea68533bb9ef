"""An unexpected error is one JSON log line through the function's logger, saying which
request failed and why, and nothing of what the caller sent (no sockets: the handler is
called in-process, as Lambda would)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Body, Header

from creditml.api.app import create_app, lambda_handler
from creditml.api.problems import _UnexpectedErrors
from creditml.devstack.runtime import LambdaContext
from creditml.observability import record_metric
from creditml.settings import get_settings, reset_settings
from tests.conftest import load_event, with_body

SERVICE = "observability-test"
TOKEN = "tok-7f3a9c-do-not-log"
BODY_TEXT = "body-text-do-not-log"
COOKIE = "cookie-value-do-not-log"

router = APIRouter()


@router.post("/models/{model_id}/predictions")
def explode(
    model_id: str,
    body: Annotated[dict[str, Any], Body()],
    authorization: Annotated[str, Header()],
) -> None:
    record_metric("ExplosionsTried", 1)
    raise RuntimeError("the model store is unreachable")


def _lines(output: str) -> list[dict[str, Any]]:
    """Every line written, each of which must be JSON."""
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def _logs(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The log lines (EMF metric blobs have no level)."""
    return [line for line in lines if "level" in line]


@pytest.fixture
def metrics_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "CreditMLTest")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")


@contextmanager
def _current_event_loop() -> Iterator[None]:
    """A current event loop for Mangum, as the Lambda runtime (and the local stack) gives."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        asyncio.set_event_loop(None)
        loop.close()


@pytest.fixture
def event_loop_set() -> Iterator[None]:
    with _current_event_loop():
        yield


def test_an_unhandled_error_is_one_structured_line_without_secrets(
    metrics_on: None, event_loop_set: None, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = lambda_handler(create_app(router), service=SERVICE)
    event = with_body(
        load_event(
            "predictions_create", access_token=TOKEN, model_id="m-42", idempotency_key="k-1"
        ),
        {"inputs": [[1.0, 2.0]], "note": BODY_TEXT},
    )
    event["cookies"] = [f"session={COOKIE}"]
    context = LambdaContext(function_name="PredictFunction")
    capsys.readouterr()

    response = handler(event, context)

    assert response["statusCode"] == 500
    assert json.loads(response["body"])["code"] == "internal_error"
    output = capsys.readouterr()
    lines = _lines(output.out)
    logs = _logs(lines)
    assert len(logs) == 1, logs
    (line,) = logs
    assert line["level"] == "ERROR"
    assert line["service"] == SERVICE
    assert line["correlation_id"] == event["requestContext"]["requestId"]
    assert line["function_request_id"] == context.aws_request_id
    assert line["method"] == "POST"
    assert line["route"] == "/models/{model_id}/predictions"
    assert line["exception_name"] == "RuntimeError"
    assert "the model store is unreachable" in line["exception"]
    assert line["stack_trace"]["frames"][-1]["function"] == "explode"
    # The metric recorded during the request is flushed under the function's name.
    (emf,) = [blob for blob in lines if "_aws" in blob and "ExplosionsTried" in blob]
    assert emf["service"] == SERVICE
    everything = output.out + output.err
    for secret in (TOKEN, BODY_TEXT, COOKIE):
        assert secret not in everything


# metrics_on: the first invocation in a process flushes a cold-start metric, which needs a
# namespace; without it this test failed whenever it ran before any other handler call.
@pytest.mark.usefixtures("metrics_on")
def test_functions_sharing_a_process_log_as_themselves(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The local stack runs every function in one process, invocations overlapping.
    both_inside = threading.Barrier(2, timeout=10)
    shared = APIRouter()

    @shared.get("/models/{model_id}")
    def fail_together(model_id: str) -> None:
        both_inside.wait()
        raise RuntimeError(f"failed {model_id}")

    handlers = {
        name: lambda_handler(create_app(shared), service=name) for name in ("alpha", "beta")
    }
    events = {}
    for name in handlers:
        event = load_event("models_get", access_token=TOKEN, model_id=name)
        event["requestContext"] = {**event["requestContext"], "requestId": f"req-{name}"}
        events[name] = event
    statuses: dict[str, int] = {}

    def call(name: str) -> None:
        with _current_event_loop():
            response = handlers[name](events[name], LambdaContext(function_name=name))
        statuses[name] = response["statusCode"]

    capsys.readouterr()
    threads = [threading.Thread(target=call, args=(name,)) for name in handlers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == {"alpha": 500, "beta": 500}
    logs = _logs(_lines(capsys.readouterr().out))
    assert sorted(
        (line["service"], line["correlation_id"], line["exception"].splitlines()[-1])
        for line in logs
    ) == [
        ("alpha", "req-alpha", "RuntimeError: failed alpha"),
        ("beta", "req-beta", "RuntimeError: failed beta"),
    ]


def test_a_failure_before_any_route_is_logged_with_its_raw_path(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing public fails before routing, so the catch-all is driven directly; outside an
    # invocation it logs under the process's service name from settings.
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "creditml-outside")
    reset_settings()

    async def failing(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("broken before routing")

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/not/a/route",
        "headers": [(b"authorization", f"Bearer {TOKEN}".encode())],
        "aws.event": {"requestContext": {"requestId": "req-before-routing"}},
    }
    try:
        asyncio.run(_UnexpectedErrors(failing)(scope, receive, send))
        assert get_settings().service_name == "creditml-outside"
    finally:
        monkeypatch.undo()
        reset_settings()

    assert sent[0]["status"] == 500
    output = capsys.readouterr()
    (line,) = _logs(_lines(output.out))
    assert line["level"] == "ERROR"
    assert line["service"] == "creditml-outside"
    assert line["route"] == "/not/a/route"
    assert line["correlation_id"] == "req-before-routing"
    assert line["exception_name"] == "ValueError"
    assert TOKEN not in output.out + output.err


def test_disabled_metrics_are_neither_kept_nor_printed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Powertools keeps metrics even when disabled and prints them at every 100th value: the
    # local stack and the benchmarks printed kilobytes of EMF. Disabled, nothing is kept.
    from creditml.observability import current

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    metrics = current().metrics
    metrics.clear_metrics()
    for _ in range(250):
        record_metric("BenchmarkNoise", 1)
    assert "BenchmarkNoise" not in metrics.metric_set
    assert "BenchmarkNoise" not in capsys.readouterr().out
    # What record_metric used to do (add it anyway) keeps it: the check above can see it.
    metrics.add_metric(name="BenchmarkNoise", unit="Count", value=1)
    assert "BenchmarkNoise" in metrics.metric_set
    metrics.clear_metrics()
