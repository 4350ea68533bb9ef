"""`creditml dev` lifecycle and `creditml invoke`, as a developer uses them."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import EVENTS
from tests.e2e.conftest import CREDITML, RunningStack, new_account, start_stack
from tests.e2e.test_events import invoke


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


def test_a_second_dev_in_the_same_folder_is_refused_and_touches_nothing(
    project_copy: Path,
) -> None:
    running = start_stack(cwd=project_copy)
    try:
        state = project_copy / ".creditml" / "dev-stack.json"
        before = state.read_text()
        second = subprocess.run(
            [CREDITML, "dev", "--port", "0"],
            cwd=project_copy,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1
        assert second.stderr.strip().splitlines() == [
            f"creditml dev: a local stack is already running in {project_copy} (pid "
            f"{running.process.pid}, API {running.url}): stop it first, or start this one "
            "from a copy of the project"
        ]
        assert state.read_text() == before  # the first stack's state file, untouched
        assert httpx.get(f"{running.url}/openapi.json", timeout=30).status_code == 200
    finally:
        assert running.stop() == 0
    assert not state.exists()


def test_dev_prints_urls_and_demo_logins(stack: RunningStack) -> None:
    output = "".join(stack.output)
    for expected in ("/docs", "/openapi.json", "ops@example.com", "demo@creditml.local"):
        assert expected in output


def test_invoke_acts_as_the_demo_user_by_default(stack: RunningStack) -> None:
    response = invoke(stack, "auth", EVENTS / "users_me.json")
    assert response["statusCode"] == 200
    assert json.loads(str(response["body"]))["email"] == "demo@creditml.local"


def test_invoke_as_an_email_with_given_values(http: httpx.Client, stack: RunningStack) -> None:
    admin = new_account(http, role="admin", prefix="admin")
    target = new_account(http)
    granted = invoke(
        stack,
        "BillingFunction",
        EVENTS / "billing_grant.json",
        "--as",
        admin.email,
        "--set",
        f"demo-user-id={target.id}",
    )
    assert granted["statusCode"] == 201
    assert json.loads(str(granted["body"]))["kind"] == "grant"
    # The grant reached the account named with --set, sent by the --as admin.
    assert http.get("/billing/balance", headers=target.headers()).json() == {"balance": 250}
    entries = http.get("/billing/transactions", headers=target.headers()).json()["items"]
    assert [(entry["kind"], entry["details"].get("note")) for entry in entries] == [
        ("grant", "welcome bonus")
    ]


def test_invoke_names_unknown_placeholders(project_copy: Path) -> None:
    # Refused before any stack work (no stack runs in the project copy, none is started).
    event = project_copy / "odd.json"
    event.write_text(
        (EVENTS / "users_me.json").read_text().replace("<access-token>", "<acess-token>")
    )
    typo = _invoke_failing("auth", "-e", str(event), cwd=project_copy)
    assert "<acess-token>" in typo.stderr
    unknown_set = _invoke_failing(
        "auth", "-e", str(EVENTS / "users_me.json"), "--set", "acess-token=x", cwd=project_copy
    )
    assert "acess-token" in unknown_set.stderr


def test_invoke_without_a_running_stack_brings_up_its_own(project_copy: Path) -> None:
    result = subprocess.run(
        [CREDITML, "invoke", "auth", "-e", str(EVENTS / "auth_register.json")],
        cwd=project_copy,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    response = json.loads(result.stdout)
    assert response["statusCode"] == 201
    assert json.loads(str(response["body"]))["email"].startswith("new.user.")
    assert not (project_copy / ".creditml" / "dev-stack.json").exists()


def test_invoke_names_unknown_functions(project_copy: Path) -> None:
    result = _invoke_failing("nope", "-e", "x.json", cwd=project_copy)
    assert "AuthFunction" in result.stderr


def _invoke_failing(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [CREDITML, "invoke", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0, result.stdout
    return result
