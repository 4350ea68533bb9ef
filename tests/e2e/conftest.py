"""End-to-end: `creditml dev` as a subprocess on a free port, driven over real HTTP."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT

ADMIN_EMAIL = "ops@example.com"
ADMIN_PASSWORD = "e2e admin password"
PASSWORD = "correct horse battery"
CREDITML = str(Path(sys.executable).with_name("creditml"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)


@dataclass
class RunningStack:
    process: subprocess.Popen[str]
    url: str
    cwd: Path
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def environment(self) -> dict[str, str]:
        """What a function container of this stack sees (from the stack's state file)."""
        state = json.loads((self.cwd / ".creditml" / "dev-stack.json").read_text())
        environment: dict[str, str] = state["environment"]
        return environment

    def demo_password(self, email: str) -> str:
        for line in self.output:
            if email in line and "password:" in line:
                return line.rsplit("password:", 1)[1].strip()
        raise LookupError(email)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            # What it is stuck on: `creditml dev` prints its threads' stacks on SIGUSR1.
            self.process.send_signal(signal.SIGUSR1)
            time.sleep(2)
            self.process.kill()  # never leave a stack running behind a failed test
            self.process.wait()
            if self.reader is not None:
                self.reader.join(timeout=10)
            raise AssertionError(
                "the stack did not stop within 60 s of the signal; its last output and "
                "threads:\n" + "".join(self.output[-300:])
            ) from None
        if self.reader is not None:  # everything the stack printed, up to its last line
            self.reader.join(timeout=10)
        return code


def spawn_stack(cwd: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`creditml dev --port 0` in `cwd`, its output piped (not waited for)."""
    env = {
        **os.environ,
        "CREDITML_ADMIN_EMAIL": ADMIN_EMAIL,
        "CREDITML_ADMIN_PASSWORD": ADMIN_PASSWORD,
        **(extra_env or {}),
    }
    env.pop("AWS_ENDPOINT_URL", None)
    return subprocess.Popen(
        [CREDITML, "dev", "--port", "0"],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def start_stack(
    cwd: Path = ROOT, extra_env: dict[str, str] | None = None, timeout: float = 60
) -> RunningStack:
    """Start `creditml dev --port 0` and wait until it prints that it is up."""
    process = spawn_stack(cwd, extra_env)
    lines: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "Press Ctrl-C" in line:
                ready.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.1):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("local stack did not start:\n" + "".join(lines))
    url = next(
        match.group(1) for line in lines if (match := re.search(r"API\s+(http://\S+)", line))
    )
    return RunningStack(process, url, cwd, lines, reader)


def copy_project(folder: Path) -> Path:
    """The template and function code in `folder`: a stack started there keeps its state
    file (`.creditml/dev-stack.json`) to itself."""
    shutil.copy(ROOT / "template.yaml", folder / "template.yaml")
    shutil.copytree(ROOT / "functions", folder / "functions")
    return folder


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The stack every e2e test shares. It runs in a project copy, so a `make dev` or another
    e2e run in the work tree cannot swap its state file under `creditml invoke` and
    `creditml ledger verify`. Tests make their own accounts and models (`new_account`) and
    only read the seeded demo user and model."""
    running = start_stack(cwd=copy_project(tmp_path_factory.mktemp("stack")))
    yield running
    assert running.stop() == 0


@pytest.fixture
def http(stack: RunningStack) -> Iterator[httpx.Client]:
    with stack.client() as client:
        yield client


@pytest.fixture
def stack_environment(
    stack: RunningStack, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """This test process, configured like one of the stack's function containers: its
    storage calls go over the network to the stack's serialized embedded AWS."""
    from creditml.composition import forget_components

    environment = stack.environment()
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    forget_components()
    yield environment
    monkeypatch.undo()
    forget_components()


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """The template and function code in a folder of their own (no running stack there)."""
    return copy_project(tmp_path)


def bearer(token: str, key: str | None = None) -> dict[str, str]:
    """Authorization (and, when given, Idempotency-Key) headers."""
    headers = {"Authorization": f"Bearer {token}"}
    if key:
        headers["Idempotency-Key"] = key
    return headers


def login(http: httpx.Client, email: str, password: str = PASSWORD) -> str:
    """An access token for `email`."""
    response = http.post("/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


@dataclass(frozen=True)
class Account:
    id: str
    email: str
    token: str

    def headers(self, key: str | None = None) -> dict[str, str]:
        return bearer(self.token, key)


def new_account(
    http: httpx.Client, role: str = "user", credits: int = 0, prefix: str = "user"
) -> Account:
    """A fresh account of the calling test's own (a unique email), given `role` and
    `credits` by the seeded admin, logged in after the role change."""
    email = f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"
    registered = http.post("/auth/register", json={"email": email, "password": PASSWORD})
    assert registered.status_code == 201, registered.text
    user_id = str(registered.json()["id"])
    if role != "user" or credits:
        admin = login(http, ADMIN_EMAIL, ADMIN_PASSWORD)
        if role != "user":
            changed = http.patch(f"/users/{user_id}", json={"role": role}, headers=bearer(admin))
            assert changed.status_code == 200, changed.text
        if credits:
            granted = http.post(
                "/billing/top-ups",
                json={"amount": credits, "user_id": user_id},
                headers=bearer(admin, str(uuid.uuid4())),
            )
            assert granted.status_code == 201, granted.text
    return Account(user_id, email, login(http, email))


def verify_ledger(stack: RunningStack) -> subprocess.CompletedProcess[str]:
    """`creditml ledger verify` against the running stack."""
    return subprocess.run(
        [CREDITML, "ledger", "verify"], cwd=stack.cwd, capture_output=True, text=True, timeout=120
    )


def post_upload(upload: dict[str, Any], data: bytes, fields: dict[str, str] | None = None) -> None:
    """Send a model file to a presigned POST (`upload` from POST /models) as a browser or
    the client would: the POST's fields (or `fields`), then the file."""
    posted = httpx.post(
        upload["url"],
        data=fields or upload["fields"],
        files={"file": ("model.joblib", data)},
        timeout=60,
    )
    assert posted.status_code in (200, 201, 204), posted.text
