"""Fixtures of the client's unit tests: a fake API and clients wired to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from creditml_client import Client
from tests.client.fake_api import FakeApi

BASE_URL = "http://api.test"
FACTS = {"machine_id": "0123abcd", "arch": "x86_64", "cpu": "Test CPU"}


class Sleeps(list[float]):
    """Records the client's waits instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make_client(api: FakeApi, sleeps: Sleeps, tmp_path: Path) -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(**options: Any) -> Client:
        settings: dict[str, Any] = {
            "email": "a@b.c",
            "password": api.password,
            "transport": api.transport(),
            "config_dir": tmp_path / "config",
            "cache_dir": tmp_path / "cache",
            "sleep": sleeps,
            "hardware": lambda: FACTS,
            **options,
        }
        client = Client(BASE_URL, **settings)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., Client]) -> Client:
    return make_client()
