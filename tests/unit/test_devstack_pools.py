"""AWS clients' connection pools sized to the threads that may call AWS at once.

botocore keeps 10 connections per client by default; the local stack runs up to
MAX_CONCURRENT_INVOCATIONS handlers at once, and urllib3 dropped (and logged) every
connection over the pool's size. Creating clients opens no socket, so this is pure.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from pynamodb.attributes import UnicodeAttribute
from pynamodb.models import Model

from creditml.devstack.gateway import MAX_CONCURRENT_INVOCATIONS
from creditml.storage import clients
from creditml.storage.tables import bind_table
from tests.conftest import ROOT


class _Record(Model):
    pk = UnicodeAttribute(hash_key=True)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials (no credential lookup over the network), and the process-wide pool
    size and default boto3 session restored afterwards."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setattr(clients, "_pool_connections", clients.DEFAULT_POOL_CONNECTIONS)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


def _pool(client: Any) -> int:
    size: int = client.meta.config.max_pool_connections
    return size


def _table_client(table_name: str) -> Any:
    return bind_table(_Record, table_name)._get_connection().connection.client


def test_deployed_functions_keep_botocores_default() -> None:
    assert _pool(boto3.client("s3")) == 10
    assert _pool(_table_client("pools-default")) == 10


def test_sized_pools_reach_boto3_and_pynamodb_clients() -> None:
    clients.size_pools(66)
    assert _pool(boto3.client("s3")) == 66
    assert _pool(boto3.client("kms")) == 66
    assert _pool(_table_client("pools-sized")) == 66
    assert _pool(boto3.Session().client("sqs", config=clients.client_config())) == 66


def test_a_pool_needs_a_connection() -> None:
    with pytest.raises(ValueError, match="at least one"):
        clients.size_pools(0)


def test_the_readme_states_the_gateways_bound() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"at most {MAX_CONCURRENT_INVOCATIONS} at once" in " ".join(readme.split())
