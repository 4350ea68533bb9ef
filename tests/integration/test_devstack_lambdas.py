"""Lambda's Invoke API in the local stack (creditml.devstack.lambdas), against the embedded
AWS over real HTTP with boto3's `lambda` client: tiny functions of a temporary template,
invoked as one function invokes another (POST /reports/daily/{date} starts usage_report)."""

from __future__ import annotations

import json
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from creditml.devstack import lambdas
from creditml.devstack.aws import (
    ACCOUNT_ID,
    REGION,
    EmbeddedAws,
    function_environment,
    provision,
    pseudo_parameters,
)
from creditml.devstack.template import Resolver, Template
from creditml.storage.clients import client_config
from tests.integration.conftest import embedded_aws

# Every call appends its event to calls.jsonl next to itself. `echo` answers what it was
# given (and whom Lambda says it is); `explode` raises; `gated` waits for a `release` file
# before it records the call, so a test can see Event answer before the handler finishes.
CODE = textwrap.dedent(
    """
    import json
    import time
    from pathlib import Path

    HERE = Path(__file__).parent


    def _record(event):
        with (HERE / "calls.jsonl").open("a") as out:
            out.write(json.dumps(event) + "\\n")


    def echo(event, context):
        _record(event)
        return {"received": event, "function": context.function_name}


    def explode(event, context):
        _record(event)
        raise ValueError(f"cannot handle {event.get('n')}")


    def opaque(event, context):
        _record(event)
        return {"not json": {1, 2}}


    def gated(event, context):
        deadline = time.monotonic() + 30
        while not (HERE / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        _record(event)
        return None
    """
)


@pytest.fixture
def embedded(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedAws]:
    """The embedded AWS on a free port, this process's SDK pointed at it."""
    monkeypatch.setattr(lambdas, "RETRY_PAUSE_SECONDS", 0.01)  # outcomes, not Lambda's pace
    with embedded_aws() as aws:
        yield aws


class Functions:
    """A template of tiny functions (one code folder, a handler each) served by `aws`.

    Logical ids are unique per test: the runtime loads a handler module once per id."""

    def __init__(self, aws: EmbeddedAws, root: Path) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.echo, self.explode = f"Echo{suffix}", f"Explode{suffix}"
        self.retried, self.gated = f"Retried{suffix}", f"Gated{suffix}"
        self.once, self.opaque = f"Once{suffix}", f"Opaque{suffix}"
        self.lost = f"Lost{suffix}"
        self.code = root / "code"
        self.code.mkdir()
        (self.code / "app.py").write_text(CODE, encoding="utf-8")
        failures = {"Fn::GetAtt": ["Failures", "Arn"]}

        def to_failures(retries: int, destination: Any = failures) -> dict[str, Any]:
            return {
                "MaximumRetryAttempts": retries,
                "DestinationConfig": {"OnFailure": {"Type": "SQS", "Destination": destination}},
            }

        def function(handler: str, **properties: Any) -> dict[str, Any]:
            return {
                "Type": "AWS::Serverless::Function",
                "Properties": {"CodeUri": "code/", "Handler": f"app.{handler}", **properties},
            }

        document = {
            "Resources": {
                "Failures": {"Type": "AWS::SQS::Queue"},
                self.echo: function("echo"),
                self.explode: function("explode", EventInvokeConfig=to_failures(1)),
                self.once: function("explode", EventInvokeConfig=to_failures(0)),
                self.retried: function("explode"),  # Lambda's default: 2 retries
                self.gated: function("gated"),
                self.opaque: function("opaque"),
                self.lost: function(
                    "explode",
                    EventInvokeConfig=to_failures(0, f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:gone"),
                ),
            }
        }
        (root / "template.yaml").write_text(json.dumps(document), encoding="utf-8")
        template = Template(root / "template.yaml")
        prefix = f"t{suffix}"
        self.provisioned = provision(template, prefix)
        resolver = Resolver(
            template,
            self.provisioned.physical,
            self.provisioned.attributes,
            pseudo_parameters(prefix),
        )
        aws.lambdas.serve(template.functions, resolver.resolve)
        self.client = boto3.client("lambda", endpoint_url=aws.endpoint, config=client_config())

    @property
    def failure_queue(self) -> str:
        return self.provisioned.physical["Failures"]

    def calls(self) -> list[dict[str, Any]]:
        log = self.code / "calls.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]

    def invoke(self, name: str, payload: Any, **kwargs: Any) -> dict[str, Any]:
        answer: dict[str, Any] = self.client.invoke(
            FunctionName=name, Payload=json.dumps(payload).encode(), **kwargs
        )
        return answer


@pytest.fixture
def functions(embedded: EmbeddedAws, tmp_path: Path) -> Functions:
    return Functions(embedded, tmp_path)


def eventually(check: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"


# -- RequestResponse -----------------------------------------------------------------------


def test_request_response_answers_the_handlers_result(functions: Functions) -> None:
    payload = {"n": 1, "nested": {"list": [1, "two", None]}}
    answer = functions.invoke(functions.echo, payload)
    assert answer["StatusCode"] == 200
    assert "FunctionError" not in answer
    assert json.loads(answer["Payload"].read()) == {
        "received": payload,
        "function": functions.echo,
    }
    assert functions.calls() == [payload]  # ran once, before the answer


def test_a_raising_handler_is_an_unhandled_function_error(functions: Functions) -> None:
    answer = functions.invoke(functions.explode, {"n": 7}, InvocationType="RequestResponse")
    # Lambda answers 200: the invocation worked, the function failed
    assert answer["StatusCode"] == 200
    assert answer["FunctionError"] == "Unhandled"
    error = json.loads(answer["Payload"].read())
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "cannot handle 7"
    # A synchronous call is never retried by Lambda: the caller decides
    assert functions.calls() == [{"n": 7}]


def test_a_result_that_is_not_json_is_a_marshal_error_not_a_server_error(
    functions: Functions,
) -> None:
    answer = functions.invoke(functions.opaque, {"n": 11})
    assert (answer["StatusCode"], answer["FunctionError"]) == (200, "Unhandled")
    error = json.loads(answer["Payload"].read())
    assert error["errorType"] == "Runtime.MarshalError"
    assert "marshal" in error["errorMessage"]
    # Once: a 500 would have had the SDK call it again (and again)
    assert functions.calls() == [{"n": 11}]


@pytest.mark.parametrize(
    "name",
    [
        lambda f: f.echo,
        lambda f: f"{f.echo}:live",  # what `!Ref Function.Alias` names deployed
        lambda f: arn(f.echo),
        lambda f: f"{arn(f.echo)}:live",
        lambda f: f"{ACCOUNT_ID}:function:{f.echo}",  # Lambda's partial ARN
    ],
    ids=["name", "name:alias", "arn", "arn:alias", "partial-arn"],
)
def test_every_spelling_of_the_function_name_reaches_it(
    functions: Functions, name: Callable[[Functions], str]
) -> None:
    answer = functions.invoke(name(functions), {"n": 2})
    assert json.loads(answer["Payload"].read())["function"] == functions.echo


def test_a_qualifier_parameter_reaches_the_function(functions: Functions) -> None:
    answer = functions.invoke(functions.echo, {"n": 3}, Qualifier="live")
    assert json.loads(answer["Payload"].read())["received"] == {"n": 3}


# -- Event ---------------------------------------------------------------------------------


def test_event_answers_202_at_once_and_runs_the_handler_after(functions: Functions) -> None:
    # Given a handler that does not finish until the test lets it
    answer = functions.invoke(functions.gated, {"n": 4}, InvocationType="Event")
    # Then Lambda has queued the event before the handler finished
    assert answer["StatusCode"] == 202
    assert answer["Payload"].read() == b""
    assert functions.calls() == []
    # And the handler ran once it could
    (functions.code / "release").touch()
    eventually(lambda: functions.calls() == [{"n": 4}])


def test_a_failing_event_is_retried_then_sent_to_its_on_failure_queue(
    embedded: EmbeddedAws, functions: Functions
) -> None:
    payload = {"n": 5, "date": "2026-01-02"}
    answer = functions.invoke(functions.explode, payload, InvocationType="Event")
    assert answer["StatusCode"] == 202
    sqs = boto3.client("sqs", config=client_config())
    received: list[dict[str, Any]] = []

    def arrived() -> bool:
        found = sqs.receive_message(QueueUrl=functions.failure_queue, WaitTimeSeconds=0)
        received.extend(found.get("Messages", []))
        return bool(received)

    eventually(arrived)
    # Then the handler ran 1 + MaximumRetryAttempts (1) times, and no more
    assert functions.calls() == [payload, payload]
    assert embedded.lambdas.failed == 1
    assert embedded.lambdas.delivered == 0
    # And the queue got one record, shaped as Lambda's OnFailure destination record
    (message,) = received
    record = json.loads(message["Body"])
    assert set(record) == {
        "version",
        "timestamp",
        "requestContext",
        "requestPayload",
        "responseContext",
        "responsePayload",
    }
    assert record["version"] == "1.0"
    assert record["timestamp"].endswith("Z")
    context = record["requestContext"]
    assert context["functionArn"] == f"{arn(functions.explode)}:$LATEST"
    assert context["condition"] == "RetriesExhausted"
    assert context["approximateInvokeCount"] == 2
    assert uuid.UUID(context["requestId"])
    assert record["requestPayload"] == payload
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert record["responsePayload"]["errorType"] == "ValueError"
    assert record["responsePayload"]["errorMessage"] == "cannot handle 5"
    assert sqs.receive_message(QueueUrl=functions.failure_queue).get("Messages", []) == []


def test_without_a_retry_configuration_an_event_is_tried_three_times(
    embedded: EmbeddedAws, functions: Functions
) -> None:
    functions.invoke(functions.retried, {"n": 6}, InvocationType="Event")
    eventually(lambda: embedded.lambdas.failed == 1)
    assert functions.calls() == [{"n": 6}] * 3
    # Nowhere to hand it to: dropped (logged), nothing lands on another function's queue
    assert sqs_messages(functions.failure_queue) == []


def test_the_last_attempt_is_handed_on_without_a_retry_pause(
    embedded: EmbeddedAws, functions: Functions, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a pause between attempts longer than the test waits, and no retries to pause for
    monkeypatch.setattr(lambdas, "RETRY_PAUSE_SECONDS", 60)
    functions.invoke(functions.once, {"n": 8}, InvocationType="Event")
    # Then its one failure goes to the queue at once
    eventually(lambda: bool(sqs_messages(functions.failure_queue)))
    assert functions.calls() == [{"n": 8}]


def test_a_failure_destination_that_fails_is_logged_not_lost_silently(
    embedded: EmbeddedAws, functions: Functions, caplog: pytest.LogCaptureFixture
) -> None:
    functions.invoke(functions.lost, {"n": 12}, InvocationType="Event")
    eventually(lambda: "Asynchronous invocation lost" in caplog.text)
    assert functions.calls() == [{"n": 12}]
    assert embedded.lambdas.failed == 1


def test_an_event_that_succeeds_is_not_retried(embedded: EmbeddedAws, functions: Functions) -> None:
    functions.invoke(functions.echo, {"n": 9}, InvocationType="Event")
    eventually(lambda: embedded.lambdas.delivered == 1)
    assert functions.calls() == [{"n": 9}]
    assert embedded.lambdas.failed == 0


def sqs_messages(queue_url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", config=client_config())
    messages: list[dict[str, Any]] = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10
    ).get("Messages", [])
    return messages


# -- DryRun, errors, everything else -------------------------------------------------------


def test_dry_run_answers_204_and_runs_nothing(functions: Functions) -> None:
    answer = functions.invoke(functions.echo, {"n": 10}, InvocationType="DryRun")
    assert answer["StatusCode"] == 204
    assert functions.calls() == []


def test_an_unknown_function_is_resource_not_found(functions: Functions) -> None:
    for invocation in ("RequestResponse", "Event", "DryRun"):
        with pytest.raises(ClientError) as raised:
            functions.invoke("NoSuchFunction", {}, InvocationType=invocation)
        error = raised.value.response
        assert error["Error"]["Code"] == "ResourceNotFoundException"
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert functions.calls() == []


def test_a_payload_that_is_not_json_is_refused(functions: Functions) -> None:
    with pytest.raises(ClientError) as raised:
        functions.client.invoke(FunctionName=functions.echo, Payload=b"{not json")
    assert raised.value.response["Error"]["Code"] == "InvalidRequestContentException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert functions.calls() == []


def test_other_requests_still_reach_the_embedded_aws(
    embedded: EmbeddedAws, functions: Functions
) -> None:
    # S3 through the same endpoint
    s3 = boto3.client("s3", endpoint_url=embedded.endpoint, config=client_config())
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"through the middleware")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"through the middleware"
    # And Lambda's other operations are moto's (it has no functions of its own)
    assert functions.client.list_functions()["Functions"] == []
    with pytest.raises(ClientError) as raised:
        functions.client.get_function(FunctionName=functions.echo)
    assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert functions.calls() == []


def test_the_usage_report_function_is_invokable_by_the_name_its_caller_is_given(
    embedded: EmbeddedAws, template: Template
) -> None:
    # Given the real template served as the local stack serves it
    prefix = f"t{uuid.uuid4().hex[:10]}"
    provisioned = provision(template, prefix)
    resolver = Resolver(
        template, provisioned.physical, provisioned.attributes, pseudo_parameters(prefix)
    )
    embedded.lambdas.serve(template.functions, resolver.resolve)
    # When the reports function's USAGE_REPORT_FUNCTION is invoked (a dry run: no report)
    name = function_environment(template, provisioned, prefix)["USAGE_REPORT_FUNCTION"]
    client = boto3.client("lambda", endpoint_url=embedded.endpoint, config=client_config())
    answer = client.invoke(FunctionName=name, InvocationType="DryRun", Payload=b"{}")
    # Then the embedded AWS knows it
    assert name == "UsageReportFunction"
    assert answer["StatusCode"] == 204
