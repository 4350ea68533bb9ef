"""FastAPI dependencies for the request limits (DESIGN §12); 429 `rate_limited` with
`Retry-After` above them.

- `request_limited(current_principal)`: the principal, once its request is counted against
  RATE_LIMIT_PER_MINUTE (one UpdateItem). Every authenticated route takes it except
  POST /models/{id}/predictions, whose limit is counted by the debit itself at no extra call.
- `SourceIp`: the caller's address as API Gateway saw it, which log-in throttling counts
  (AuthService.login: a throttled email or source IP answers 429 before the password is
  checked, and a failed log-in is counted).

No `from __future__ import annotations` here: FastAPI reads the dependency closures'
annotations at run time, and they name a local variable.
"""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request

from creditml.auth.tokens import AccessClaims
from creditml.composition.limits import request_limit
from creditml.limits import UNKNOWN_SOURCE, request_subject


def source_ip(request: Request) -> str:
    """The caller's address as API Gateway saw it (HTTP API v2 event, requestContext.http.
    sourceIp, which Mangum keeps in the ASGI scope); never a client-sent header, which
    anyone can forge."""
    event = request.scope.get("aws.event") or {}
    address = event.get("requestContext", {}).get("http", {}).get("sourceIp")
    if address:
        return str(address)
    return request.client.host if request.client else UNKNOWN_SOURCE


def request_limited(principal: Callable[..., Any]) -> Callable[..., AccessClaims]:
    """A dependency giving what `principal` gives, after counting the request against the
    caller's per-minute limit (RateLimited above it; a refused request changes nothing).

    A plain `def`: it does I/O, so FastAPI runs it in the thread pool."""

    def limited(claims: Annotated[AccessClaims, Depends(principal)]) -> AccessClaims:
        request_limit().admit(request_subject(claims.user_id))
        return claims

    return limited


async def request_source_ip(request: Request) -> str:
    """`source_ip` as a dependency (async: it does no I/O, so no thread-pool hop)."""
    return source_ip(request)


SourceIp = Annotated[str, Depends(request_source_ip)]
