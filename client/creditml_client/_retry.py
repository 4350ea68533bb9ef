"""When the client retries a request, and how long it waits.

Two kinds of request:

- *safe* ones (GET, PATCH, the presigned upload and download, and every POST that carries
  an Idempotency-Key) may be sent again whatever happened to the first try: they are
  retried on timeouts and network errors (even after the request went out: the server may
  have acted, the key makes it answer with the first result), on 5xx, and on 429 with a
  Retry-After;
- *unsafe* ones (other POSTs, DELETE, log-in and token refresh) are retried only when the
  server certainly did nothing: the connection was never made, or it answered 503 or 429
  (both mean "nothing changed, retry later" in CreditML's contract).

Waits grow exponentially with jitter, never shorter than a Retry-After, and all waits of one
call together stay within the client's ``max_retry_seconds``.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

_FIRST_DELAY = 0.25
_MAX_DELAY = 8.0
# Never reached the server, so nothing happened there: fine to send again.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# The answer may be lost after the server acted: only for requests that may repeat.
_MAYBE_SENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


@dataclass
class Backoff:
    """The waiting of one logical call: `wait` sleeps before the next attempt, or says
    there is no budget left for one."""

    budget: float
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[], float] = random.random
    attempt: int = 0
    slept: float = 0.0

    def wait(self, retry_after: float | None = None) -> bool:
        """Sleep before the next attempt; False (without sleeping) when the wait would take
        the call's total waiting past its budget."""
        ceiling = min(_MAX_DELAY, _FIRST_DELAY * 2**self.attempt)
        delay = ceiling / 2 + self.jitter() * ceiling / 2
        if retry_after is not None:
            # At least what the server asked, plus a little so that callers told the same
            # number do not all come back at once.
            delay = max(delay, retry_after + self.jitter() * min(retry_after, ceiling) / 4)
        if self.slept + delay > self.budget:
            return False
        self.attempt += 1
        self.slept += delay
        self.sleep(delay)
        return True


def transport_error_retryable(exc: httpx.TransportError, safe: bool) -> bool:
    """Whether a request that failed with `exc` may be sent again."""
    if isinstance(exc, _NOT_SENT):
        return True
    return safe and isinstance(exc, _MAYBE_SENT)


def response_retry(response: httpx.Response, safe: bool) -> tuple[bool, float | None]:
    """Whether an error answer is worth another attempt, and the server's Retry-After."""
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if status == 429:
        return retry_after is not None, retry_after
    if status == 503:
        return True, retry_after
    return safe and status >= 500, retry_after


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta seconds or an HTTP date); None if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
