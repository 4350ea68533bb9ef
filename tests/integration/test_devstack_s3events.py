"""S3 event notifications in the local stack (creditml.devstack.s3events), against the
embedded AWS: a tiny recording function subscribed to a bucket through a template, called
with the event S3 sends, and a pump that waits for events instead of polling for them."""

from __future__ import annotations

import json
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest

from creditml.devstack.aws import provision
from creditml.devstack.s3events import S3EventPump, subscribe
from creditml.devstack.template import Template
from tests.integration.conftest import embedded_aws

pytestmark = pytest.mark.integration

RECORDER = textwrap.dedent(
    """
    import json
    from pathlib import Path


    def handler(event, context):
        with (Path(__file__).parent / "received.jsonl").open("a") as out:
            out.write(json.dumps(event) + "\\n")
    """
)


@pytest.fixture
def embedded() -> Iterator[str]:
    """The embedded AWS on a free port, this process's SDK pointed at it."""
    with embedded_aws() as aws:
        yield aws.endpoint


class Stack:
    """A template with one bucket (`Drop`) whose created objects go to a recording function."""

    def __init__(self, root: Path) -> None:
        self.prefix = f"t{uuid.uuid4().hex[:10]}"
        function = f"Recorder{uuid.uuid4().hex[:8]}"  # handler modules load once per id
        self.code = root / "recorder"
        self.code.mkdir()
        (self.code / "app.py").write_text(RECORDER, encoding="utf-8")
        document = {
            "Resources": {
                "Drop": {"Type": "AWS::S3::Bucket"},
                function: {
                    "Type": "AWS::Serverless::Function",
                    "Properties": {
                        "CodeUri": "recorder/",
                        "Handler": "app.handler",
                        "Events": {
                            "Upload": {
                                "Type": "S3",
                                "Properties": {
                                    "Bucket": {"Ref": "Drop"},
                                    "Events": "s3:ObjectCreated:*",
                                },
                            }
                        },
                    },
                },
            }
        }
        (root / "template.yaml").write_text(json.dumps(document), encoding="utf-8")
        self.template = Template(root / "template.yaml")
        self.physical = provision(self.template, self.prefix).physical

    def put(self, key: str) -> None:
        boto3.client("s3").put_object(Bucket=self.physical["Drop"], Key=key, Body=b"x")

    def keys(self) -> list[str]:
        log = self.code / "received.jsonl"
        if not log.exists():
            return []
        return [
            record["s3"]["object"]["key"]
            for line in log.read_text(encoding="utf-8").splitlines()
            for record in json.loads(line)["Records"]
        ]


def eventually(check: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def settled(pump: S3EventPump, quiet: float = 0.2, timeout: float = 15) -> int:
    """The pump's receive count once it stopped changing for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        seen = pump.receives
        time.sleep(quiet)
        if seen >= 1 and pump.receives == seen:
            return seen
        assert time.monotonic() < deadline, "the pump never went quiet"


@pytest.fixture
def stack(embedded: str, tmp_path: Path) -> Stack:
    return Stack(tmp_path)


@pytest.fixture
def pump(stack: Stack) -> Iterator[S3EventPump]:
    running = S3EventPump(subscribe(stack.template, stack.physical, stack.prefix)).start()
    yield running
    running.stop()


def test_each_created_object_reaches_the_function_once(stack: Stack, pump: S3EventPump) -> None:
    for key in ("a.bin", "b.bin", "c.bin"):
        stack.put(key)
    eventually(lambda: pump.delivered == 3)
    assert sorted(stack.keys()) == ["a.bin", "b.bin", "c.bin"]


def test_an_idle_pump_does_not_poll_and_wakes_on_an_upload(stack: Stack, pump: S3EventPump) -> None:
    # Given a pump that has taken what was queued (S3's s3:TestEvent) and found nothing more
    receives = settled(pump)
    # When nothing is uploaded for a while
    time.sleep(0.5)
    # Then it asked SQS nothing more (it used to ask 20 times a second)
    assert pump.receives == receives
    # And an upload still reaches the function
    stack.put("late.bin")
    eventually(lambda: pump.delivered == 1)
    assert stack.keys() == ["late.bin"]


def test_stop_wakes_an_idle_pump(stack: Stack, pump: S3EventPump) -> None:
    eventually(lambda: pump.receives >= 1)
    pump.stop(timeout=5)
    assert not pump._thread.is_alive()
