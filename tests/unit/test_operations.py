"""Operations in template.yaml (DESIGN §7, §9): every asynchronously invoked function has a
failure destination, every dead-letter queue and every background function an alarm, every
alarm notifies the alarm topic, and the dashboard is valid JSON that shows only metrics the
code emits (or AWS's own), with the dimensions they are emitted with."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from creditml.devstack.template import Template
from creditml.models.registration import Outcome
from tests.conftest import ROOT

FUNCTION = "AWS::Serverless::Function"
QUEUE = "AWS::SQS::Queue"
ALARM = "AWS::CloudWatch::Alarm"
# How Lambda is invoked by each event type: asynchronously (failures go nowhere unless the
# function has a destination), by polling a stream, or synchronously (the caller sees the
# error). A new event type must be classified here before the template can use it.
ASYNC_EVENTS = {"S3", "Schedule", "ScheduleV2", "SNS", "EventBridgeRule", "CloudWatchEvent"}
STREAM_EVENTS = {"DynamoDB", "Kinesis"}
SYNC_EVENTS = {"HttpApi"}
FOURTEEN_DAYS = 14 * 24 * 3600
# Business metrics an alarm may watch before their code exists. Each must leave this set
# once its code is in.
PENDING_METRICS: set[str] = set()
# AWS metrics the dashboard and alarms may use, with the dimensions they are read by.
AWS_METRICS = {
    "AWS/Lambda": (
        {
            "Errors",
            "Throttles",
            "Duration",
            "ConcurrentExecutions",
            "Invocations",
            "IteratorAge",
        },
        ("FunctionName",),
    ),
    "AWS/ApiGateway": (
        {"Count", "4xx", "5xx", "Latency", "IntegrationLatency", "DataProcessed"},
        ("ApiId", "Stage"),
    ),
    "AWS/SQS": (
        {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"},
        ("QueueName",),
    ),
}
# What each function kind must show per function on the dashboard.
PER_FUNCTION_METRICS = ("Errors", "Duration", "Throttles", "ConcurrentExecutions")
# A metric-math alarm may read at most 10 metrics (a CloudWatch hard limit).
MAX_ALARM_METRICS = 10


# --- reading the template ------------------------------------------------------------------


def _of_type(template: Template, resource_type: str) -> dict[str, dict[str, Any]]:
    return template.resources_of(resource_type)


def _props(resource: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = resource.get("Properties", {})
    return properties


def _events(template: Template, logical_id: str) -> dict[str, dict[str, Any]]:
    events: dict[str, dict[str, Any]] = _props(template.resources[logical_id]).get("Events", {})
    return events


def _functions_invoked(template: Template, kinds: set[str]) -> set[str]:
    return {
        logical_id
        for logical_id in _of_type(template, FUNCTION)
        if any(event["Type"] in kinds for event in _events(template, logical_id).values())
    }


def _queue_of(template: Template, destination: Any) -> str:
    """The logical id of the template queue that `destination` (`!GetAtt Q.Arn`) names."""
    assert isinstance(destination, dict), destination
    assert set(destination) == {"Fn::GetAtt"}, destination
    queue, attribute = destination["Fn::GetAtt"]
    assert attribute == "Arn"
    assert template.resources[queue]["Type"] == QUEUE, queue
    return str(queue)


def _async_failure_queue(template: Template, logical_id: str) -> str:
    props = _props(template.resources[logical_id])
    config = props.get("EventInvokeConfig", {})
    assert "MaximumRetryAttempts" in config, f"{logical_id}: retries must be explicit"
    on_failure = config.get("DestinationConfig", {}).get("OnFailure", {})
    # Type SQS makes SAM grant the function sqs:SendMessage on the queue.
    assert on_failure.get("Type") == "SQS", f"{logical_id}: no OnFailure SQS destination"
    return _queue_of(template, on_failure.get("Destination"))


def _stream_failure_queues(template: Template, logical_id: str) -> list[str]:
    queues = []
    for name, event in _events(template, logical_id).items():
        if event["Type"] not in STREAM_EVENTS:
            continue
        props = event["Properties"]
        assert "MaximumRetryAttempts" in props, f"{logical_id}.{name}: retries must be explicit"
        on_failure = props.get("DestinationConfig", {}).get("OnFailure", {})
        assert on_failure.get("Type") == "SQS", f"{logical_id}.{name}: no OnFailure queue"
        queues.append(_queue_of(template, on_failure.get("Destination")))
    return queues


def _alarm_metrics(alarm: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every metric an alarm reads, as {Namespace, MetricName, Dimensions}."""
    props = _props(alarm)
    if "MetricName" in props:
        yield {key: props.get(key, []) for key in ("Namespace", "MetricName", "Dimensions")}
    for query in props.get("Metrics", []):
        if "MetricStat" in query:
            yield query["MetricStat"]["Metric"]


def _dimensions(metric: dict[str, Any]) -> dict[str, Any]:
    return {item["Name"]: item["Value"] for item in metric.get("Dimensions", [])}


def _alarms_on(template: Template, metric_name: str) -> dict[str, list[dict[str, Any]]]:
    """Alarm id -> the metrics named `metric_name` it reads."""
    found: dict[str, list[dict[str, Any]]] = {}
    for logical_id, alarm in _of_type(template, ALARM).items():
        for metric in _alarm_metrics(alarm):
            if metric["MetricName"] == metric_name:
                found.setdefault(logical_id, []).append(metric)
    return found


# --- reading the code ----------------------------------------------------------------------

_METRIC_CALL = re.compile(r"""(?:record_metric|observe)\(\s*"([A-Za-z0-9]+)"\s*,""")
_SERVICE = re.compile(r"""(?:service=|observed\()\s*"([a-z_]+)\"""")


def _python_sources() -> Iterator[Path]:
    yield from sorted((ROOT / "layers" / "common" / "creditml").rglob("*.py"))
    yield from sorted((ROOT / "functions").glob("*/app.py"))


def _service_of_function_dir() -> dict[str, str]:
    """functions/<dir> -> the service name its app.py gives itself (the metric dimension)."""
    services = {}
    for app in sorted((ROOT / "functions").glob("*/app.py")):
        found = _SERVICE.findall(app.read_text(encoding="utf-8"))
        assert len(found) == 1, f"{app}: cannot tell its service name"
        services[app.parent.name] = found[0]
    return services


def _emitted_metrics() -> dict[str, set[str] | None]:
    """Metric name -> the services that emit it (None: shared code, any service may)."""
    services = _service_of_function_dir()
    emitted: dict[str, set[str] | None] = {}
    for path in _python_sources():
        text = path.read_text(encoding="utf-8")
        names = set(_METRIC_CALL.findall(text))
        if path.parent.parent == ROOT / "functions" and 'record_metric(f"Models{' in text:
            # register_model counts each outcome: Models<Outcome.title()>.
            names |= {f"Models{outcome.title()}" for outcome in Outcome}
        for name in names:
            if path.parent.parent == ROOT / "functions":
                owners = emitted.setdefault(name, set())
                if owners is not None:
                    owners.add(services[path.parent.name])
            else:
                emitted[name] = None
    return emitted


# --- failure handling ----------------------------------------------------------------------


def test_every_event_type_is_classified(template: Template) -> None:
    known = ASYNC_EVENTS | STREAM_EVENTS | SYNC_EVENTS
    for logical_id in _of_type(template, FUNCTION):
        for name, event in _events(template, logical_id).items():
            assert event["Type"] in known, f"{logical_id}.{name}: classify {event['Type']}"


def test_every_asynchronously_invoked_function_has_its_own_failure_queue(
    template: Template,
) -> None:
    asynchronous = _functions_invoked(template, ASYNC_EVENTS)
    streams = _functions_invoked(template, STREAM_EVENTS)
    assert {"RegisterModelFunction", "ExpireUploadsFunction"} <= asynchronous
    assert "UsageAggregatorFunction" in streams

    queues = [_async_failure_queue(template, fn) for fn in sorted(asynchronous)]
    queues += [queue for fn in sorted(streams) for queue in _stream_failure_queues(template, fn)]

    assert len(queues) == len(set(queues)), "each function gets its own queue"


@pytest.mark.parametrize("function", ["RegisterModelFunction", "ExpireUploadsFunction"])
def test_async_retries_are_bounded(template: Template, function: str) -> None:
    config = _props(template.resources[function])["EventInvokeConfig"]
    assert 0 <= config["MaximumRetryAttempts"] <= 2
    assert 60 <= config["MaximumEventAgeInSeconds"] <= 21600


def test_dead_letter_queues_are_encrypted_and_keep_messages_14_days(template: Template) -> None:
    queues = _of_type(template, QUEUE)
    assert queues
    for logical_id, queue in queues.items():
        props = _props(queue)
        assert props.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in props, logical_id
        assert props.get("MessageRetentionPeriod") == FOURTEEN_DAYS, logical_id


def test_every_queue_has_a_depth_alarm(template: Template) -> None:
    alarmed = set()
    for metrics in _alarms_on(template, "ApproximateNumberOfMessagesVisible").values():
        for metric in metrics:
            name = _dimensions(metric)["QueueName"]
            assert name["Fn::GetAtt"][1] == "QueueName"
            alarmed.add(name["Fn::GetAtt"][0])
    assert alarmed == set(_of_type(template, QUEUE))


# --- alarms --------------------------------------------------------------------------------


def test_every_alarm_notifies_the_alarm_topic(template: Template) -> None:
    alarms = _of_type(template, ALARM)
    assert len(alarms) >= 10
    assert template.resources["AlarmTopic"]["Type"] == "AWS::SNS::Topic"
    for logical_id, alarm in alarms.items():
        props = _props(alarm)
        assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}], logical_id
        assert props.get("OKActions", [{"Ref": "AlarmTopic"}]) == [{"Ref": "AlarmTopic"}]
        # No data (nothing happened) is fine for every alarm here: none watches a heartbeat.
        assert props["TreatMissingData"] == "notBreaching", logical_id


def test_alarm_topic_is_encrypted_with_a_key_cloudwatch_may_use(template: Template) -> None:
    # CloudWatch cannot publish to a topic under the AWS managed SNS key.
    topic = _props(template.resources["AlarmTopic"])
    key_id = topic["KmsMasterKeyId"]["Ref"]
    key = template.resources[key_id]
    assert key["Type"] == "AWS::KMS::Key"
    statements = _props(key)["KeyPolicy"]["Statement"]
    cloudwatch = [
        s for s in statements if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert len(cloudwatch) == 1
    assert set(cloudwatch[0]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}


def test_the_email_subscription_exists_only_when_an_address_is_given(
    template: Template,
) -> None:
    subscriptions = _of_type(template, "AWS::SNS::Subscription")
    assert {s.get("Condition") for s in subscriptions.values()} == {"HasAlarmEmail"}
    assert template.document["Conditions"]["HasAlarmEmail"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]
    }
    assert template.parameters["AlarmEmail"]["Default"] == ""


def test_api_5xx_rate_alarm_is_a_ratio_over_five_minutes(template: Template) -> None:
    props = _props(template.resources["ApiServerErrorRateAlarm"])
    queries = {query["Id"]: query for query in props["Metrics"]}
    returned = [query for query in queries.values() if query["ReturnData"]]
    assert len(returned) == 1
    assert returned[0]["Expression"] == "IF(requests > 0, 100 * FILL(errors, 0) / requests, 0)"
    for query_id, metric_name in (("errors", "5xx"), ("requests", "Count")):
        stat = queries[query_id]["MetricStat"]
        assert stat["Metric"]["MetricName"] == metric_name
        assert _dimensions(stat["Metric"]) == {"ApiId": {"Ref": "HttpApi"}, "Stage": "$default"}
        assert (stat["Period"], stat["Stat"]) == (300, "Sum")
    assert (props["ComparisonOperator"], props["Threshold"]) == ("GreaterThanThreshold", 1)
    assert props["EvaluationPeriods"] == 1


def test_throttles_of_every_function_alarm(template: Template) -> None:
    watched: list[str] = []
    for logical_id, metrics in _alarms_on(template, "Throttles").items():
        alarm_metrics = list(_alarm_metrics(template.resources[logical_id]))
        assert len(alarm_metrics) <= MAX_ALARM_METRICS, logical_id
        watched += [_dimensions(metric)["FunctionName"]["Ref"] for metric in metrics]
    assert sorted(watched) == sorted(_of_type(template, FUNCTION))


def test_every_background_function_has_an_errors_alarm(template: Template) -> None:
    background = _functions_invoked(template, ASYNC_EVENTS | STREAM_EVENTS)
    alarmed = {
        _dimensions(metric)["FunctionName"]["Ref"]
        for metrics in _alarms_on(template, "Errors").values()
        for metric in metrics
    }
    assert background <= alarmed
    for logical_id in _alarms_on(template, "Errors"):
        props = _props(template.resources[logical_id])
        assert (props["Statistic"], props["Threshold"]) == ("Sum", 0)


def test_stream_consumers_alarm_when_usage_falls_a_minute_behind(template: Template) -> None:
    alarmed = {}
    for logical_id, metrics in _alarms_on(template, "IteratorAge").items():
        for metric in metrics:
            alarmed[_dimensions(metric)["FunctionName"]["Ref"]] = _props(
                template.resources[logical_id]
            )
    assert set(alarmed) == _functions_invoked(template, STREAM_EVENTS)
    for props in alarmed.values():
        assert props["Threshold"] <= 60_000  # ms: the freshness promise of /reports/usage
        assert props["Period"] * props["EvaluationPeriods"] <= 60


def test_ledger_cross_check_alarm_watches_what_the_report_will_emit(template: Template) -> None:
    (metric,) = _alarms_on(template, "LedgerCrossCheckMismatch")["LedgerCrossCheckMismatchAlarm"]
    assert metric["Namespace"] == "CreditML"
    assert _dimensions(metric) == {"service": "usage_report"}


def test_alarms_watch_only_metrics_that_exist(template: Template) -> None:
    emitted = _emitted_metrics()
    for logical_id, alarm in _of_type(template, ALARM).items():
        for metric in _alarm_metrics(alarm):
            _check_metric(
                metric["Namespace"], metric["MetricName"], _dimensions(metric), emitted, logical_id
            )


# --- dashboard -----------------------------------------------------------------------------


def _dashboard_text(template: Template) -> str:
    (dashboard,) = _of_type(template, "AWS::CloudWatch::Dashboard").values()
    body = _props(dashboard)["DashboardBody"]
    assert set(body) == {"Fn::Sub"}
    assert isinstance(body["Fn::Sub"], str)
    return str(body["Fn::Sub"])


def _substituted(template: Template) -> dict[str, Any]:
    """The dashboard body with each ${Name} / ${Name.Attribute} replaced by a marker that
    keeps the name (after checking that CloudFormation could resolve it)."""

    def marker(found: re.Match[str]) -> str:
        name = found.group(1)
        logical_id = name.split(".", 1)[0]
        assert name.startswith("AWS::") or logical_id in template.resources, name
        return f"<{name}>"

    body: dict[str, Any] = json.loads(re.sub(r"\$\{([^}!]+)\}", marker, _dashboard_text(template)))
    return body


def _dashboard_metrics(body: dict[str, Any]) -> Iterator[tuple[str, list[Any]]]:
    """(widget title, metric row) for every metric row of every metric widget."""
    for widget in body["widgets"]:
        if widget["type"] == "metric":
            for row in widget["properties"]["metrics"]:
                yield widget["properties"]["title"], row


def _row_parts(row: list[Any]) -> tuple[str, str, dict[str, str]]:
    namespace, name, *rest = row
    if rest and isinstance(rest[-1], dict):
        rest = rest[:-1]
    assert len(rest) % 2 == 0, row
    return namespace, name, dict(zip(rest[::2], rest[1::2], strict=True))


def _check_metric(
    namespace: str,
    name: str,
    dimensions: dict[str, Any],
    emitted: dict[str, set[str] | None],
    where: str,
) -> None:
    if namespace == "CreditML":
        assert set(dimensions) == {"service"}, f"{where}: {name} is emitted with service only"
        service = dimensions["service"]
        if name in PENDING_METRICS:
            return
        assert name in emitted, f"{where}: no code emits {name}"
        owners = emitted[name]
        known = set(_service_of_function_dir().values())
        assert service in (owners if owners is not None else known), f"{where}: {name}/{service}"
        return
    assert namespace in AWS_METRICS, f"{where}: {namespace}"
    names, dimension_names = AWS_METRICS[namespace]
    assert name in names, f"{where}: {namespace} {name}"
    assert tuple(sorted(dimensions)) == tuple(sorted(dimension_names)), f"{where}: {name}"


def test_dashboard_body_is_json_naming_only_template_resources(template: Template) -> None:
    body = _substituted(template)
    assert body["widgets"]
    for widget in body["widgets"]:
        assert widget["type"] in {"metric", "alarm"}
        assert widget["x"] + widget["width"] <= 24  # the dashboard grid is 24 wide


def test_dashboard_shows_only_metrics_that_exist(template: Template) -> None:
    emitted = _emitted_metrics()
    functions = set(_of_type(template, FUNCTION))
    for title, row in _dashboard_metrics(_substituted(template)):
        namespace, name, dimensions = _row_parts(row)
        _check_metric(namespace, name, dimensions, emitted, title)
        if namespace == "AWS/Lambda":
            assert dimensions["FunctionName"].strip("<>") in functions, title
        if namespace == "AWS/ApiGateway":
            assert dimensions == {"ApiId": "<HttpApi>", "Stage": "$default"}, title


def test_dashboard_shows_the_business_metrics_and_the_api(template: Template) -> None:
    shown = {_row_parts(row)[:2] for _, row in _dashboard_metrics(_substituted(template))}
    for name in (
        "Predictions",
        "PredictedRows",
        "CreditsDebited",
        "InsufficientCredits",
        "ModelCacheMisses",
        "ModelLoadTime",
        "UploadsExpired",
    ):
        assert ("CreditML", name) in shown, name
    for name in ("Latency", "4xx", "5xx", "Count"):
        assert ("AWS/ApiGateway", name) in shown, name


@pytest.mark.parametrize("metric", PER_FUNCTION_METRICS)
def test_dashboard_shows_each_function(template: Template, metric: str) -> None:
    shown = {
        _row_parts(row)[2]["FunctionName"].strip("<>")
        for _, row in _dashboard_metrics(_substituted(template))
        if _row_parts(row)[:2] == ("AWS/Lambda", metric)
    }
    assert shown == set(_of_type(template, FUNCTION))


def test_dashboard_shows_every_alarm(template: Template) -> None:
    (widget,) = [w for w in _substituted(template)["widgets"] if w["type"] == "alarm"]
    shown = {arn.strip("<>").removesuffix(".Arn") for arn in widget["properties"]["alarms"]}
    assert shown == set(_of_type(template, ALARM))


def test_the_code_scan_finds_the_metrics_it_should() -> None:
    # The dashboard checks above rely on this scan; it must see the known emitters.
    emitted = _emitted_metrics()
    assert emitted["Predictions"] is None  # shared code (creditml.predictions.service)
    assert emitted["UploadsExpired"] == {"expire_uploads"}
    assert emitted["ModelsReady"] == {"register_model"}
