"""Logs, traces and metrics of the functions: one Powertools setup per function.

A function names itself once, in its `functions/<name>/app.py`: `lambda_handler(app,
service="auth")` for an HTTP function, `@observed("register_model")` otherwise. That name is
the `service` of every JSON log line, trace and metric the function writes. Shared code logs
through `logger()` and counts through `record_metric`, which resolve to the function being
invoked. Deployed, a process serves one function, so that is constant; the local stack runs
every function in one process (with one merged environment), so "the function being
invoked" is a context variable that `observed` sets for the invocation. Outside any
invocation (module import, the CLI) the name is `settings.service_name`.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from typing import Any, TextIO, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from creditml.settings import get_settings

HandlerT = TypeVar("HandlerT", bound=Callable[..., Any])

# What X-Ray traces: the AWS SDK calls, the only calls this code makes (boto3 clients and
# pynamodb, which calls botocore; pynamodb's patch adds its own subsegment, as patch_all
# did). Powertools' default, patch_all, would also import and patch every other library it
# knows (http.client, sqlite3, requests, httpx, ...) while the function's module is
# imported: tens of milliseconds of every cold start for calls never made.
TRACED_MODULES = ("botocore", "pynamodb")

_invoked_service: ContextVar[str | None] = ContextVar("creditml_invoked_service", default=None)


class _StdoutHandler(logging.StreamHandler[TextIO]):
    """Writes each line to `sys.stdout` as it is at that moment, not when the logger was
    made: `creditml invoke` redirects stdout to stderr around a function it has already
    imported, and pytest's capture swaps stdout per test."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


@dataclass(frozen=True)
class Telemetry:
    """One function's Powertools logger, tracer and metrics."""

    service: str
    logger: Logger
    # None where tracing is off (outside Lambda, POWERTOOLS_TRACE_DISABLED, SAM local).
    tracer: Tracer | None
    metrics: Metrics


@cache
def telemetry(service: str) -> Telemetry:
    """The logger, tracer and metrics of function `service`, made once per process.

    The logger is the Python logger named `service`, so Powertools child loggers of that
    service (`Logger(service=service, child=True)`) write through it.
    """
    return Telemetry(
        service=service,
        logger=Logger(service=service, logger_handler=_StdoutHandler()),
        tracer=_tracer(service),
        metrics=Metrics(service=service),
    )


def _tracer(service: str) -> Tracer | None:
    """Function `service`'s tracer with the AWS SDKs patched, or None where tracing is off.

    Patched here, when the tracer is made: `observed` makes it when the function's module
    is imported (`lambda_handler(app, ...)`, `@observed(...)`), so before any request and
    therefore before the first AWS SDK call (nothing calls AWS at import). Where tracing is
    off no tracer is made at all: Powertools' disabled Tracer still imports the X-Ray SDK,
    whose recorder creates two botocore X-Ray clients outside Lambda.
    """
    if not get_settings().tracing_enabled:
        return None
    tracer = Tracer(service=service, auto_patch=False)
    tracer.patch(TRACED_MODULES)
    return tracer


def current() -> Telemetry:
    """The telemetry of the function being invoked (of `settings.service_name` outside an
    invocation)."""
    return telemetry(_invoked_service.get() or get_settings().service_name)


def logger() -> Logger:
    """The logger of the function being invoked: the one shared code logs through."""
    return current().logger


def record_metric(name: str, value: float) -> None:
    """Add a metric (CloudWatch EMF) to the invocation's set, flushed when it ends; names
    ending in "Time" are milliseconds, all others counts."""
    if is_metrics_disabled():
        # Powertools keeps disabled metrics anyway and prints them every 100 values: the
        # local stack, tests and benchmarks (POWERTOOLS_METRICS_DISABLED) would fill stdout.
        return
    unit = MetricUnit.Milliseconds if name.endswith("Time") else MetricUnit.Count
    current().metrics.add_metric(name=name, unit=unit, value=value)


def observed(
    service: str, correlation_id_path: str | None = None
) -> Callable[[HandlerT], HandlerT]:
    """Decorate a Lambda handler as the handler of function `service`.

    During each invocation, `logger()` and `record_metric` are `service`'s; its log lines
    carry the Lambda context and, when `correlation_id_path` (a JMESPath into the event)
    finds one, a correlation id. The event is never logged and traces never capture the
    response: both can hold bearer tokens. Metrics are flushed, with a cold-start count,
    when the handler returns.
    """
    tools = telemetry(service)

    def decorate(handler: HandlerT) -> HandlerT:
        # Powertools' decorators are untyped; the result keeps the handler's signature.
        instrumented = tools.metrics.log_metrics(capture_cold_start_metric=True)(handler)
        if tools.tracer is not None:
            instrumented = tools.tracer.capture_lambda_handler(capture_response=False)(instrumented)
        instrumented = tools.logger.inject_lambda_context(
            correlation_id_path=correlation_id_path, log_event=False
        )(instrumented)

        @functools.wraps(handler)
        def as_service(event: Any, context: Any) -> Any:
            token = _invoked_service.set(service)
            try:
                return instrumented(event, context)
            finally:
                _invoked_service.reset(token)

        return cast(HandlerT, as_service)

    return decorate
