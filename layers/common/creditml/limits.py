"""Request limits (DESIGN §12): the rules, without storage.

Three limits answer 429 `rate_limited` with `Retry-After`, and a refused request changes
nothing:

- Predictions per account and minute (RATE_LIMIT_PER_MINUTE): a `MinuteCount` kept on the
  account item and written by the debit's own transaction (creditml.billing.ledger), so the
  limit costs no DynamoDB call of its own.
- Other authenticated requests per subject and minute ("user:<id>"; an API key's count as its
  owner's, so more keys buy no more budget): one
  counter item per (subject, minute) in the limits table (creditml.storage.limits).
- Failed logins per email (backoff after EMAIL_FREE_FAILURES in LOGIN_WINDOW_SECONDS,
  doubling with each further failure) and per source IP (IP_FAILURES in a fixed window):
  counter items in the limits table, read in the same BatchGetItem as the email's claim,
  so only a failed log-in pays for throttling (creditml.auth.service).

Windows are fixed and aligned to the clock (minutes since the epoch for requests,
quarter-hours for a source IP): a burst at a window's end and the next window's start can
reach twice the limit over a few seconds, the usual trade for a counter that costs one
attribute and no read.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from creditml.auth.emails import canonical_email
from creditml.errors import RateLimited

WINDOW_SECONDS = 60

LOGIN_WINDOW_SECONDS = 15 * 60
EMAIL_FREE_FAILURES = 5
EMAIL_BACKOFF_SECONDS = 60  # after the 5th failure; doubles with each further one
EMAIL_BACKOFF_CAP_SECONDS = 15 * 60
IP_FAILURES = 100  # many people can share one address (DESIGN §12: at least 100)
# The source of a log-in whose address is not known (a script, a test client): all such
# attempts share one address counter.
UNKNOWN_SOURCE = "unknown"


def seconds_until(moment: float, now: float) -> int:
    """Whole seconds from `now` until `moment`, at least 1 (a Retry-After value)."""
    return max(1, math.ceil(moment - now))


@dataclass(frozen=True)
class MinuteCount:
    """Requests counted in one clock minute: `window` is minutes since the epoch."""

    window: int = 0
    count: int = 0

    def counting(self, now: float, limit: int) -> MinuteCount:
        """The count with one more request at `now`; RateLimited (retry at the next minute)
        when `limit` requests were already counted in this minute.

        A window never moves back: a count written by a container whose clock runs a little
        ahead still holds until that minute is over."""
        current = max(int(now // WINDOW_SECONDS), self.window)
        used = self.count if self.window == current else 0
        if used >= limit:
            raise RateLimited(retry_after=seconds_until((current + 1) * WINDOW_SECONDS, now))
        return MinuteCount(current, used + 1)


# An account that was never debited (or not for a while).
NO_COUNT = MinuteCount()


def request_subject(user_id: str) -> str:
    """Whose requests a per-subject counter counts (an API key's requests are its owner's)."""
    return f"user:{user_id}"


def minute_window(now: float) -> int:
    """The minute (since the epoch) that `now` falls in."""
    return int(now // WINDOW_SECONDS)


class RequestCounterStore(Protocol):
    def count_request(self, key: str, limit: int, expires_at: int) -> bool: ...


class RequestLimit:
    """At most `per_minute` requests per subject and clock minute: one conditional counter
    update per request (a refused one changes nothing)."""

    def __init__(
        self, store: RequestCounterStore, per_minute: int, clock: Callable[[], float]
    ) -> None:
        self._store = store
        self._per_minute = per_minute
        self._clock = clock

    def admit(self, subject: str) -> None:
        """Count one request of `subject`; RateLimited (retry at the next minute) when its
        minute is full."""
        now = self._clock()
        window = minute_window(now)
        window_end = (window + 1) * WINDOW_SECONDS
        # The counter outlives its minute briefly (TTL deletes it eventually, never early).
        if not self._store.count_request(
            f"rate:{subject}:{window}", self._per_minute, window_end + WINDOW_SECONDS
        ):
            raise RateLimited(retry_after=seconds_until(window_end, now))


# ---- Login throttling ---------------------------------------------------------------------


def email_subject(email: str) -> str:
    """The key of an email's failure counter: a hash, so the limits table holds no
    addresses (failed logins are often typos of someone else's)."""
    # The account's own key (creditml.auth.emails): spellings of one address share a counter.
    digest = hashlib.sha256(canonical_email(email).encode()).hexdigest()
    return f"login:email:{digest[:32]}"


def ip_window(now: float) -> int:
    """The fixed quarter-hour (since the epoch) that counts a source IP's failures."""
    return int(now // LOGIN_WINDOW_SECONDS)


def ip_subject(source_ip: str, now: float) -> str:
    """The key of a source IP's failure counter in the window of `now`."""
    return f"login:ip:{source_ip}:{ip_window(now)}"


@dataclass(frozen=True)
class EmailFailures:
    """An email's failed logins since `started` (the first failure of the current window);
    `last` is the latest one. Times are seconds since the epoch."""

    failures: int = 0
    started: float = 0.0
    last: float = 0.0

    def blocked_until(self) -> float | None:
        """When the backoff after the latest failure ends (None below the threshold):
        60 s after the 5th failure, doubling with each further one, at most 15 minutes. A
        backoff always runs out, even when the window that counted it has ended."""
        if self.failures < EMAIL_FREE_FAILURES:
            return None
        exponent = min(self.failures - EMAIL_FREE_FAILURES, 16)
        delay: int = min(EMAIL_BACKOFF_SECONDS << exponent, EMAIL_BACKOFF_CAP_SECONDS)
        return self.last + delay

    def window_open(self, now: float) -> bool:
        """Whether a failure at `now` counts in the current window (else it starts one)."""
        return self.failures > 0 and now - self.started < LOGIN_WINDOW_SECONDS


@dataclass(frozen=True)
class LoginCounters:
    """What the limits table holds about a login attempt's email and source IP."""

    email: EmailFailures
    ip_failures: int

    def check(self, now: float) -> None:
        """RateLimited when either counter holds the attempt back, else nothing."""
        waits = []
        until = self.email.blocked_until()
        if until is not None and until > now:
            waits.append(seconds_until(until, now))
        if self.ip_failures >= IP_FAILURES:
            waits.append(seconds_until((ip_window(now) + 1) * LOGIN_WINDOW_SECONDS, now))
        if waits:
            raise RateLimited(retry_after=max(waits))


class LoginCounterStore(Protocol):
    def record_login_failure(
        self, email_key: str, ip_key: str, now: float, window_open: bool
    ) -> None: ...


@dataclass(frozen=True)
class LoginKeys:
    """One log-in attempt's counters in the limits table (`email`, `ip`: their keys) and
    the moment of the attempt, which picks the address's window and times the email's
    backoff."""

    email: str
    ip: str
    now: float


class LoginThrottle:
    """Throttles log-ins per email and per source IP, at no cost to a successful one.

    Nothing here reads: the counters come with the log-in's first read, the email's claim
    (one BatchGetItem across the users and limits tables, creditml.auth.service.LoginReads).
    `keys` names them; `check` decides from what was read, before the password is verified,
    so a throttled attempt answers 429 whatever its password and writes nothing. Only a
    failed attempt writes (`record_failure`: one update per counter); a successful one
    writes nothing and leaves the counters as they are.
    """

    def __init__(self, store: LoginCounterStore, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock

    def keys(self, email: str, source_ip: str) -> LoginKeys:
        """Where the counters of an attempt now, for `email` from `source_ip`, are kept."""
        now = self._clock()
        return LoginKeys(email_subject(email), ip_subject(source_ip, now), now)

    def check(self, keys: LoginKeys, counters: LoginCounters) -> None:
        """RateLimited when the counters read for `keys` hold the attempt back."""
        counters.check(keys.now)

    def record_failure(self, keys: LoginKeys, seen: LoginCounters) -> None:
        """Count one failed log-in for the email and the address (`seen`: the counters
        read for the attempt, which tell whether the email's window is still open)."""
        self._store.record_login_failure(
            keys.email, keys.ip, keys.now, seen.email.window_open(keys.now)
        )
