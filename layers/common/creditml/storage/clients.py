"""The configuration every AWS SDK client of this process shares: its connection pool, and
which of their failures are transient (worth a retry: 503 with Retry-After, not a 500).

A Lambda container serves one request at a time, so botocore's default pool (10 connections
per client) is never the limit there. A process that runs many handlers at once (the local
stack serves each request on a thread of its own) needs pools as large as the number of
threads that may call AWS at once: with fewer, urllib3 drops every surplus connection after
use and logs "Connection pool is full" for each, and the next call opens a new one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as AwsConnectionError

from creditml.errors import ServiceUnavailable

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


# Error codes AWS answers when a retry later may well succeed: throttling, and failures on
# its side. (Any 5xx counts too; these also come as 400s.)
_TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "TransactionInProgressException",
        "InternalServerError",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "KMSInternalException",
        "DependencyTimeoutException",
    }
)


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error, then what caused it (explicitly or while handling), outermost first."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


@contextmanager
def unavailable_when_transient() -> Iterator[None]:
    """Turn a transient AWS failure in the block into ServiceUnavailable (503 with
    Retry-After); any other error passes unchanged."""
    try:
        yield
    except ServiceUnavailable:
        raise
    except Exception as exc:
        if transient_failure(exc):
            raise ServiceUnavailable() from exc
        raise


def transient_failure(error: BaseException) -> bool:
    """Whether `error` (or what caused it) is an AWS call that failed for a reason that may
    pass: throttling, a failure on AWS's side, or a connection that broke or timed out,
    possibly after the request took effect. Anything retried after this must be safe to
    repeat (money moves only under an Idempotency-Key)."""
    for cause in _chain(error):
        if isinstance(cause, AwsConnectionError | HTTPClientError):
            return True
        if isinstance(cause, ClientError):
            response = cause.response
            code = response.get("Error", {}).get("Code", "")
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            return code in _TRANSIENT_CODES or int(status or 0) >= 500
    return False
