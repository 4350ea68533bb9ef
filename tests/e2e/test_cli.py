"""`creditml dev` lifecycle and `creditml invoke`, as a developer uses them."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import CREDITML, RunningStack, start_stack


def _invoke(*args: str, cwd: Path = ROOT) -> dict[str, object]:
    result = subprocess.run(
        [CREDITML, "invoke", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    response: dict[str, object] = json.loads(result.stdout)
    return response


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_dev_stops_cleanly_on_signals(project_copy: Path, sig: int) -> None:
    running = start_stack(cwd=project_copy)
    state = project_copy / ".creditml" / "dev-stack.json"
    assert state.exists()
    assert httpx.get(f"{running.url}/openapi.json", timeout=30).status_code == 200

    assert running.stop(sig) == 0
    assert "stopped" in "".join(running.output)
    assert not state.exists()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{running.url}/openapi.json", timeout=5)


def test_dev_prints_urls_and_demo_logins(stack: RunningStack) -> None:
    output = "".join(stack.output)
    for expected in ("/docs", "/openapi.json", "ops@example.com", "demo@creditml.local"):
        assert expected in output


def test_invoke_against_the_running_stack(stack: RunningStack) -> None:
    response = _invoke("auth", "-e", "events/users_me.json")
    assert response["statusCode"] == 200
    assert json.loads(str(response["body"]))["email"] == "demo@creditml.local"

    # The demo user seen through the running stack's own HTTP API is the same one.
    promoted = _invoke("AuthFunction", "-e", "events/users_set_role.json", "--as", "admin")
    assert promoted["statusCode"] == 200
    assert json.loads(str(promoted["body"]))["role"] == "publisher"


def test_invoke_billing_events(stack: RunningStack) -> None:
    granted = _invoke("billing", "-e", "events/billing_grant.json", "--as", "admin")
    assert granted["statusCode"] == 201
    assert json.loads(str(granted["body"]))["kind"] == "grant"
    balance = _invoke("billing", "-e", "events/billing_balance.json")
    assert balance["statusCode"] == 200
    assert json.loads(str(balance["body"]))["balance"] >= 1250
    page = _invoke("billing", "-e", "events/billing_transactions.json")
    assert json.loads(str(page["body"]))["items"][0]["kind"] == "grant"


def test_invoke_without_a_running_stack_brings_up_its_own(project_copy: Path) -> None:
    event = ROOT / "events" / "auth_register.json"
    response = _invoke("auth", "-e", str(event), cwd=project_copy)
    assert response["statusCode"] == 201
    assert json.loads(str(response["body"]))["email"] == "new.user@example.com"
    assert not (project_copy / ".creditml" / "dev-stack.json").exists()


def test_invoke_names_unknown_functions(project_copy: Path) -> None:
    result = subprocess.run(
        [CREDITML, "invoke", "nope", "-e", "x.json"],
        cwd=project_copy,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "AuthFunction" in result.stderr
