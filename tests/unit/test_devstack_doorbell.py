"""The event pumps' wake-up (creditml.devstack.doorbell): no ring is ever missed."""

from __future__ import annotations

import threading

import pytest

from creditml.devstack.doorbell import Doorbell

pytestmark = pytest.mark.unit


def test_a_ring_between_reading_and_waiting_is_not_missed() -> None:
    bell = Doorbell()
    seen = bell.rings
    bell.ring()  # lands after the waiter looked at its source, before it waits
    assert bell.wait(seen, timeout=0) is True


def test_without_a_ring_the_wait_ends_at_its_timeout() -> None:
    bell = Doorbell()
    assert bell.wait(bell.rings, timeout=0.01) is False


def test_a_ring_wakes_every_waiter() -> None:
    bell = Doorbell()
    seen = bell.rings
    woke: list[bool] = []
    waiters = [
        threading.Thread(target=lambda: woke.append(bell.wait(seen, timeout=30))) for _ in range(3)
    ]
    for waiter in waiters:
        waiter.start()
    bell.ring()
    for waiter in waiters:
        waiter.join(timeout=30)
    assert woke == [True, True, True]
