"""The configuration every AWS SDK client of this process shares: its connection pool.

A Lambda container serves one request at a time, so botocore's default pool (10 connections
per client) is never the limit there. A process that runs many handlers at once (the local
stack serves each request on a thread of its own) needs pools as large as the number of
threads that may call AWS at once: with fewer, urllib3 drops every surplus connection after
use and logs "Connection pool is full" for each, and the next call opens a new one.
"""

from __future__ import annotations

import boto3
import botocore.session
from botocore.config import Config

# botocore's own default, kept for deployed functions.
DEFAULT_POOL_CONNECTIONS = 10

_pool_connections = DEFAULT_POOL_CONNECTIONS


def pool_connections() -> int:
    """How many connections each AWS client created from now on keeps for reuse."""
    return _pool_connections


def client_config() -> Config:
    """The botocore Config for a client created explicitly (pool size included)."""
    return Config(max_pool_connections=_pool_connections)


def size_pools(connections: int) -> None:
    """Give every AWS client created after this call a pool of `connections`: pynamodb's
    table connections (see `bind_table`) and every `boto3.client(...)` of the default
    session. Call it before the first storage call, with the number of threads that may
    call AWS at the same time."""
    global _pool_connections
    if connections < 1:
        raise ValueError("a connection pool holds at least one connection")
    _pool_connections = connections
    # boto3.client() uses the default session; a fresh botocore session with a default
    # client config makes every later client of it take the pool size.
    session = botocore.session.get_session()
    session.set_default_client_config(client_config())
    boto3.setup_default_session(botocore_session=session)
