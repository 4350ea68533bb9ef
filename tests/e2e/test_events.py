"""Every file in events/ through `creditml invoke` against the running local stack: each
with the function template.yaml gives its route (or its S3 trigger), as an account of the
role it needs, made for the test; events that change a user or a model act on ones made for
the test too, so nothing seeded changes. A new event file is picked up by itself."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from creditml.cli import main
from creditml.devstack.template import Template
from tests.conftest import EVENTS
from tests.e2e.conftest import CREDITML, Account, RunningStack, new_account

EVENT_FILES = sorted(EVENTS.glob("*.json"))
# Who sends each event, when a plain user may not.
ROLES = {
    "billing_grant": "admin",
    "users_set_role": "admin",
    "models_create": "publisher",
    "models_new_version": "publisher",
    "models_update": "publisher",
    "models_archive": "publisher",
    "s3_put_upload": "publisher",
    "models_download": "admin",  # the demo model has no download price: admins download free
}


def invoke(stack: RunningStack, function: str, event: Path, *args: str) -> dict[str, Any]:
    """`creditml invoke FUNCTION -e EVENT ARGS...` in a process of its own, against `stack`;
    the Lambda response."""
    result = subprocess.run(
        [CREDITML, "invoke", function, "-e", str(event), *args],
        cwd=stack.cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    response: dict[str, Any] = json.loads(result.stdout)
    return response


def _function_for(template: Template, event: dict[str, Any]) -> str:
    """The function template.yaml hands this event to: its route's, the one an S3 bucket
    notifies or a DynamoDB stream triggers, or the one a schedule runs."""
    if event.get("source") == "aws.events":  # the rule's name ends with the function's folder
        rule = event["resources"][0].rsplit("/", 1)[1]
        scheduled = [
            spec.logical_id
            for spec in template.functions.values()
            if any(trigger.get("Type") == "Schedule" for trigger in spec.events.values())
            and rule.endswith(spec.code_uri.name.replace("_", "-"))
        ]
        assert len(scheduled) == 1, scheduled
        return scheduled[0]
    if "routeKey" in event:
        routes = [route for route in template.routes if route.key == event["routeKey"]]
        assert routes, f"template.yaml has no route {event['routeKey']}"
        return routes[0].function
    (source,) = {record["eventSource"] for record in event["Records"]}
    trigger_type = {"aws:s3": "S3", "aws:dynamodb": "DynamoDB"}[source]
    triggered = [
        spec.logical_id
        for spec in template.functions.values()
        if any(trigger.get("Type") == trigger_type for trigger in spec.events.values())
    ]
    assert len(triggered) == 1, triggered
    return triggered[0]


def _wait_until_decided(http: httpx.Client, owner: Account, model_id: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = str(http.get(f"/models/{model_id}", headers=owner.headers()).json()["status"])
        if status != "pending":
            return status
        time.sleep(0.1)
    raise AssertionError(f"{model_id} still pending after 30s")


@pytest.mark.usefixtures("stack_environment")
@pytest.mark.parametrize("path", EVENT_FILES, ids=lambda path: path.stem)
def test_every_event_invokes_successfully(
    path: Path,
    http: httpx.Client,
    stack: RunningStack,
    template: Template,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = path.read_text(encoding="utf-8")
    event = json.loads(text)
    role = ROLES.get(path.stem, "user")
    # Credits for the events that predict (or make a prediction to look at).
    caller = new_account(http, role=role, credits=10, prefix="events")
    given: list[str] = []
    if "<demo-user-id>" in text:
        # An admin's grant or role change lands on an account of this test's, not the demo's.
        given += ["--set", f"demo-user-id={new_account(http).id}"]
    if "<model-id>" in text and role == "publisher":
        # Events a publisher sends change the model: one of the caller's own. Users' events
        # only read, so they use the demo model (the default).
        created = http.post(
            "/models", json={"name": "events", "price": 1}, headers=caller.headers()
        )
        assert created.status_code == 201, created.text
        given += ["--set", f"model-id={created.json()['model_id']}"]

    # The command in this process (a container of the stack, see stack_environment): no
    # Python start and imports to pay for each file. tests/e2e/test_cli.py runs it as its own
    # process.
    monkeypatch.chdir(stack.cwd)
    arguments = ["invoke", _function_for(template, event), "-e", str(path), "--as", caller.email]
    assert main([*arguments, *given]) == 0
    response = json.loads(capsys.readouterr().out)

    if "Records" in event and "batchItemFailures" in response:  # a ledger stream batch
        assert response == {"batchItemFailures": []}, response
    elif "Records" in event:
        (registration,) = response["registrations"]
        # The stack's own S3 notification may register the upload first: then this
        # delivery is recognised as a duplicate.
        assert registration["outcome"] in ("ready", "already_done"), registration
        model_id = registration["key"].split("/")[0]
        assert _wait_until_decided(http, caller, model_id) == "ready"
    elif "source" in event and "expired" in response:  # the sweep: versions it expired
        assert isinstance(response["expired"], int), response
        assert response["expired"] >= 0, response
    elif "source" in event:  # the daily report of the day before the event's time
        assert response["date"] == "2026-11-28", response
        assert response["ledger_cross_check"] is True, response
    else:
        assert 200 <= response["statusCode"] < 300, response
