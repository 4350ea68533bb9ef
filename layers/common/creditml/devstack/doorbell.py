"""Wake-ups for the local stack's event pumps, instead of polling.

The S3 event pump and the stream event pump read their sources through the embedded AWS.
Asking every few milliseconds whether anything arrived kept an idle stack at 8-20 % of a
core. moto runs in this process, so the pumps' sources ring a `Doorbell` when they change
(creditml.devstack.s3events and .streams hook moto for that), and a pump with nothing to do
sleeps until the bell rings, its own next deadline (a batching window, a retry) comes, or it
is stopped.
"""

from __future__ import annotations

import threading


class Doorbell:
    """A counter of changes that threads can wait on without missing one.

    Read `rings` BEFORE looking at the source, then `wait(rings_read, ...)`: a change that
    lands in between has already moved the counter, so the wait returns at once.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._rings = 0

    @property
    def rings(self) -> int:
        with self._changed:
            return self._rings

    def ring(self) -> None:
        """Something changed: wake every waiter."""
        with self._changed:
            self._rings += 1
            self._changed.notify_all()

    def wait(self, seen: int, timeout: float | None) -> bool:
        """Block until the bell rang after `seen` was read, or `timeout` seconds (None:
        no limit) passed; whether it rang."""
        with self._changed:
            return self._changed.wait_for(lambda: self._rings != seen, timeout)
