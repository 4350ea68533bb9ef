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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT

ADMIN_EMAIL = "ops@example.com"
ADMIN_PASSWORD = "e2e admin password"
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
        return self.process.wait(timeout=20)


def start_stack(
    cwd: Path = ROOT, extra_env: dict[str, str] | None = None, timeout: float = 60
) -> RunningStack:
    """Start `creditml dev --port 0` and wait until it prints that it is up."""
    env = {
        **os.environ,
        "CREDITML_ADMIN_EMAIL": ADMIN_EMAIL,
        "CREDITML_ADMIN_PASSWORD": ADMIN_PASSWORD,
        **(extra_env or {}),
    }
    env.pop("AWS_ENDPOINT_URL", None)
    process = subprocess.Popen(
        [CREDITML, "dev", "--port", "0"],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    lines: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "Press Ctrl-C" in line:
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.1):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("local stack did not start:\n" + "".join(lines))
    url = next(
        match.group(1) for line in lines if (match := re.search(r"API\s+(http://\S+)", line))
    )
    return RunningStack(process, url, cwd, lines)


@pytest.fixture(scope="session")
def stack() -> Iterator[RunningStack]:
    running = start_stack()
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
    from creditml.api.dependencies import reset_dependencies

    environment = stack.environment()
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    reset_dependencies()
    yield environment
    monkeypatch.undo()
    reset_dependencies()


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """The template and function code in a folder of their own (no running stack there)."""
    shutil.copy(ROOT / "template.yaml", tmp_path / "template.yaml")
    shutil.copytree(ROOT / "functions", tmp_path / "functions")
    return tmp_path
