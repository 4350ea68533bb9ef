"""The container's revocation list: when it asks the feed, what it asks for, what it keeps."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from creditml.auth.revocations import OVERLAP_SECONDS, REFRESH_INTERVAL_SECONDS, RevocationList

RETENTION = 960
START = 1_800_000_000


class Feed:
    """Revocations as the store would list them; records every `since` it is asked for."""

    def __init__(self) -> None:
        self.revoked: dict[str, int] = {}
        self.asked: list[int] = []
        self.failing = False

    def revoked_since(self, since: int) -> Iterable[tuple[str, int]]:
        self.asked.append(since)
        if self.failing:
            raise ConnectionError("the store is down")
        return [(family, at) for family, at in self.revoked.items() if at >= since]


class Clock:
    def __init__(self) -> None:
        self.now = float(START)

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def feed() -> Feed:
    return Feed()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def revocations(feed: Feed, clock: Clock) -> RevocationList:
    return RevocationList(feed, RETENTION, clock=clock)


def test_the_first_check_loads_the_whole_retention_window(
    revocations: RevocationList, feed: Feed
) -> None:
    feed.revoked = {"old": START - RETENTION, "older": START - RETENTION - 1}
    assert revocations.is_revoked("old")
    assert not revocations.is_revoked("older")  # its access tokens have all expired
    assert feed.asked == [START - RETENTION]


def test_within_the_interval_no_query_and_no_news(
    revocations: RevocationList, feed: Feed, clock: Clock
) -> None:
    assert not revocations.is_revoked("f1")
    feed.revoked["f1"] = START + 1
    for step in range(REFRESH_INTERVAL_SECONDS):
        clock.now = START + step
        assert not revocations.is_revoked("f1")
    assert len(feed.asked) == 1

    clock.now = START + REFRESH_INTERVAL_SECONDS
    assert revocations.is_revoked("f1")
    # The second query asks only for what is new, with an overlap for late index entries.
    assert feed.asked[1] == START - OVERLAP_SECONDS


def test_a_revocation_that_reaches_the_index_late_is_still_seen(
    revocations: RevocationList, feed: Feed, clock: Clock
) -> None:
    revocations.is_revoked("any")  # loaded at START
    clock.now = START + REFRESH_INTERVAL_SECONDS
    revocations.is_revoked("any")
    # Revoked just before the last query but listed only after it.
    feed.revoked["late"] = START + REFRESH_INTERVAL_SECONDS - 2
    clock.now = START + 2 * REFRESH_INTERVAL_SECONDS
    assert revocations.is_revoked("late")


def test_expired_revocations_are_forgotten(
    revocations: RevocationList, feed: Feed, clock: Clock
) -> None:
    feed.revoked["f1"] = START
    assert revocations.is_revoked("f1")
    clock.now = START + RETENTION + REFRESH_INTERVAL_SECONDS
    assert not revocations.is_revoked("f1")


def test_a_failing_refresh_raises_and_the_next_request_tries_again(
    revocations: RevocationList, feed: Feed, clock: Clock
) -> None:
    revocations.is_revoked("f1")
    feed.failing = True
    clock.now = START + REFRESH_INTERVAL_SECONDS
    with pytest.raises(ConnectionError):
        revocations.is_revoked("f1")
    feed.failing = False
    feed.revoked["f1"] = START + 5
    assert revocations.is_revoked("f1")
    assert len(feed.asked) == 3
