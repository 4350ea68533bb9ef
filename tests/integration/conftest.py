"""Integration tests: real handlers in-process against moto's in-process AWS, with every
resource created from template.yaml's own definitions."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from fastapi import FastAPI
from moto import mock_aws

from creditml.auth.roles import Role
from creditml.devstack import runtime
from creditml.devstack.aws import REGION, EmbeddedAws, function_environment, provision
from creditml.devstack.gateway import Gateway, to_http_response
from creditml.devstack.stack import apply_environment, aws_environment
from creditml.devstack.template import Template


@contextmanager
def embedded_aws() -> Iterator[EmbeddedAws]:
    """The embedded AWS on a free port with this process's SDK pointed at it, until the
    block ends (for tests of the local stack's own server, not moto in-process)."""
    aws = EmbeddedAws().start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in aws_environment(aws.endpoint).items():
                patch.setenv(name, value)
            apply_environment({})
            yield aws
    finally:
        aws.stop()
        apply_environment({})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def aws(template: Template, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A fresh moto AWS with the template's resources; the process environment set as a
    function container's. Yields that environment."""
    environment = aws_environment("unused")
    del environment["AWS_ENDPOINT_URL"]  # in-process moto intercepts calls itself
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        provisioned = provision(template, "test", boto3.Session(region_name=REGION))
        function_env = function_environment(template, provisioned, "test")
        for name, value in function_env.items():
            monkeypatch.setenv(name, value)
        apply_environment({})
        yield {**environment, **function_env}
    apply_environment({})


class Api:
    """Calls a template function's real handler with events, as Lambda would."""

    def __init__(self, template: Template) -> None:
        self._template = template
        self._overridden: list[FastAPI] = []

    def override(self, function: str, dependency: Callable[..., Any], value: Any) -> None:
        """Serve `value` for `dependency` in `function`'s app until the test ends (FastAPI's
        dependency_overrides: constructor injection for one test, no environment change)."""

        async def replacement() -> Any:
            return value

        app: FastAPI = runtime.load_module(self._template.functions[function]).app
        app.dependency_overrides[dependency] = replacement
        self._overridden.append(app)

    def clear_overrides(self) -> None:
        for app in self._overridden:
            app.dependency_overrides.clear()
        self._overridden.clear()

    def call(self, function: str, event: dict[str, Any]) -> tuple[int, Any]:
        response = runtime.invoke(self._template.functions[function], event)
        # Decode the way API Gateway does (base64 bodies included).
        status, _, body = to_http_response(response)
        return status, json.loads(body or b"null")


@pytest.fixture
def api(aws: dict[str, str], template: Template) -> Iterator[Api]:
    calls = Api(template)
    yield calls
    calls.clear_overrides()


def register_and_login(
    api: Api, email: str, password: str = "correct horse battery", role: Role | None = None
) -> dict[str, Any]:
    """Register `email`, optionally give it `role` directly, log in; returns ids and tokens."""
    from creditml.composition.auth import auth_service
    from creditml.settings import get_settings
    from creditml.storage.users import UserRepository
    from tests.conftest import load_event, with_body

    status, user = api.call(
        "AuthFunction",
        with_body(load_event("auth_register"), {"email": email, "password": password}),
    )
    assert status == 201, user
    if role is not None:
        UserRepository(get_settings().users_table).set_role(user["id"], role)
    pair = auth_service().login(email, password)
    return {"id": user["id"], "access": pair.access_token, "refresh": pair.refresh_token}


@contextmanager
def bare_dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A DynamoDB client on a fresh, empty moto (no template resources): for tests of the
    embedded AWS's own DynamoDB behaviour."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield boto3.client("dynamodb", region_name=REGION)


def keyed_table(
    name: str, attributes: Sequence[dict[str, str]] = (), **extra: Any
) -> dict[str, Any]:
    """create_table arguments for an on-demand table keyed (pk, sk), both strings, with
    more attribute definitions (for indexes) and other arguments (the indexes)."""
    return {
        "TableName": name,
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            *attributes,
        ],
        "BillingMode": "PAY_PER_REQUEST",
        **extra,
    }


@contextmanager
def serving(template: Template) -> Iterator[Gateway]:
    """The local gateway for `template`'s routes on a free port, served from a thread."""
    server = Gateway(template, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
