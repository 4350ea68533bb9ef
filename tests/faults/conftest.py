"""Fault injection: the money paths through the real handlers under moto, with chosen AWS
calls failing (tests/faults/injector.py). Marked `integration` (it runs in-process against
moto, in the coverage run) and `faults` (`pytest -m faults` runs this suite alone)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from creditml.auth.roles import Role
from creditml.devstack.aws import REGION, function_environment, provision
from creditml.devstack.stack import apply_environment, aws_environment
from creditml.devstack.template import Template
from tests.faults import injector
from tests.faults.harness import PRICE, START, Money, fresh_container, new_key
from tests.integration.conftest import Api, register_and_login
from tests.integration.publishing import publish

# Before any test creates a client: every botocore session made from now on carries the
# injection handlers (disarmed until a test arms a plan).
injector.install()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults/" in str(item.path):
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.faults)


@pytest.fixture(scope="module")
def shared_aws(template: Template) -> Iterator[None]:
    """One moto AWS with the template's resources for a whole module (as the integration
    suite's `aws` fixture, kept for longer: each test makes its own accounts, and the
    ledger checks cover every account there is)."""
    environment = aws_environment("unused")
    del environment["AWS_ENDPOINT_URL"]  # in-process moto intercepts calls itself
    with pytest.MonkeyPatch.context() as patch, mock_aws():
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        for name, value in environment.items():
            patch.setenv(name, value)
        provisioned = provision(template, "test", boto3.Session(region_name=REGION))
        for name, value in function_environment(template, provisioned, "test").items():
            patch.setenv(name, value)
        apply_environment({})
        yield
    apply_environment({})


@pytest.fixture(scope="module")
def catalog(shared_aws: None, template: Template) -> dict[str, Any]:
    """An admin and a publisher's ready model (price PRICE), shared by a module's tests."""
    api = Api(template)
    publisher = register_and_login(api, "pub@example.com", role=Role.PUBLISHER)
    admin = register_and_login(api, "root@example.com", role=Role.ADMIN)
    return {"api": api, "admin": admin, "model_id": publish(api, publisher["access"], price=PRICE)}


@pytest.fixture
def world(catalog: dict[str, Any], template: Template) -> dict[str, Any]:
    """The shared catalog, a new user of this test's own holding START credits, and a
    fresh container (nothing cached from the previous test)."""
    fresh_container()
    money = Money(template)
    user = register_and_login(catalog["api"], f"user-{new_key()[:8]}@example.com")
    granted = money.grant(catalog["admin"]["access"], user["id"], START, new_key())
    assert granted.status == 201, granted
    return {**catalog, "money": money, "user": user}
