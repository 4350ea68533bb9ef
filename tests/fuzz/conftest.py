"""API fuzzing: Schemathesis against the local stack's own OpenAPI document, over real HTTP.

The fuzz suite runs its own stack (`stack` below is a fixture of this folder): fuzzing
fails logins by the hundred and spends rate limits, which must not leak into the other e2e
tests' shared stack."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis

from tests.e2e.conftest import RunningStack, copy_project, new_account, start_stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/fuzz/" in str(item.path):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.fuzz)


@pytest.fixture(scope="session")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = start_stack(cwd=copy_project(tmp_path_factory.mktemp("fuzz-stack")))
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="session")
def fuzz_auth(fuzz_stack: RunningStack) -> dict[str, str]:
    """A real token of a fresh publisher with credits (publishers may call every route a
    user may, and the model routes too)."""
    with fuzz_stack.client() as http:
        publisher = new_account(http, role="publisher", credits=10_000, prefix="fuzz")
    return {"Authorization": f"Bearer {publisher.token}"}


@pytest.fixture(scope="session")
def api_schema(fuzz_stack: RunningStack) -> Any:
    return schemathesis.openapi.from_url(f"{fuzz_stack.url}/openapi.json")


@pytest.fixture(scope="session")
def fuzz_http(fuzz_stack: RunningStack) -> Iterator[httpx.Client]:
    with fuzz_stack.client() as http:
        yield http
