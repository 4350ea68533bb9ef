"""This container's view of recently revoked session families, so that the access tokens of
a revoked family (logout, refresh-token reuse, role change) stop working everywhere within
a minute without a DynamoDB call per request.

Every access token carries its family id (`fam`). A revocation writes a marker that one
Query lists (creditml.storage.sessions). Each container keeps the families revoked within
the last access-token lifetime in memory and asks for newer ones at most once per
`REFRESH_INTERVAL_SECONDS`, and only when a request arrives: a warm request in between
costs a set lookup. A family revoked at T is refused by every container from at most
T + REFRESH_INTERVAL_SECONDS + index propagation (typically well under a second) on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Protocol

# 50 s, not 60: leaves 10 s for the index to catch up within the 60 s promise (DESIGN §11).
REFRESH_INTERVAL_SECONDS = 50
# Each refresh asks again for what was revoked this long before the previous one, so a
# marker that reached the (eventually consistent) index late, or carries a revoked_at a
# little behind because of another host's clock, is still seen.
OVERLAP_SECONDS = 10
# Slack between hosts' clocks, added to how long a revocation must be remembered.
CLOCK_SKEW_SECONDS = 60


class RevocationFeed(Protocol):
    def revoked_since(self, since: int) -> Iterable[tuple[str, int]]:
        """(family id, revoked_at) of the families revoked at or after `since`."""
        ...


class RevocationList:
    """Recently revoked families, refreshed lazily from a feed. Not thread-safe by design
    beyond what a dict offers: a Lambda container serves one request at a time, and a
    concurrent double refresh (local stack) only costs one more Query."""

    def __init__(
        self,
        feed: RevocationFeed,
        retention_seconds: int,
        refresh_interval: int = REFRESH_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`retention_seconds`: how long after its revocation a family's access tokens can
        still be unexpired (the access-token lifetime plus clock skew)."""
        self._feed = feed
        self._retention = retention_seconds
        self._interval = refresh_interval
        self._clock = clock
        self._revoked: dict[str, int] = {}
        self._queried_at: int | None = None
        self._next_refresh = 0.0

    def is_revoked(self, family_id: str) -> bool:
        """Whether the family was revoked (as of the last refresh, at most one interval
        ago). Refreshes first when the interval has passed; a failing refresh raises, so
        revocation is never silently skipped (the next request tries again)."""
        now = self._clock()
        if now >= self._next_refresh:
            self._refresh(int(now))
        return family_id in self._revoked

    def _refresh(self, now: int) -> None:
        oldest = now - self._retention
        since = oldest if self._queried_at is None else self._queried_at - OVERLAP_SECONDS
        for family_id, revoked_at in self._feed.revoked_since(max(since, oldest)):
            self._revoked[family_id] = revoked_at
        # Forget families whose access tokens have all expired.
        self._revoked = {f: at for f, at in self._revoked.items() if at >= oldest}
        self._queried_at = now
        self._next_refresh = now + self._interval
