"""Request and login counters, in the limits table (pk `pk`, TTL on `expires_at`).

  pk = "rate:<subject>:<minute>"        `requests`: authenticated requests of a subject
                                         ("user:<id>", later "key:<id>") in one clock minute
  pk = "login:email:<hash>"             `failures`, `started`, `last`: an email's failed logins
                                         in the window that began at `started`
  pk = "login:ip:<address>:<quarter>"   `failures`: a source IP's failed logins in one fixed
                                         quarter-hour

Every item expires through TTL once its window is over; the rules never depend on TTL having
run (windows are in the key, or compared with the clock), since DynamoDB deletes expired items
only eventually.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import UpdateError
from pynamodb.models import Model

from creditml.limits import (
    EMAIL_BACKOFF_CAP_SECONDS,
    LOGIN_WINDOW_SECONDS,
    EmailFailures,
    LoginCounters,
    LoginKeys,
    ip_window,
)
from creditml.storage.dynamo import condition_failed
from creditml.storage.tables import bind_table

# Kept a little past its window, so a clock a few seconds behind still finds it.
EXPIRY_MARGIN_SECONDS = 120
# Concurrent failures may race to start an email's window; each retry means another won.
MAX_WINDOW_RACES = 3


class _LimitItem(Model):
    pk = UnicodeAttribute(hash_key=True)
    requests = NumberAttribute(null=True)
    failures = NumberAttribute(null=True)
    started = NumberAttribute(null=True)
    last = NumberAttribute(null=True)
    expires_at = NumberAttribute(null=True)


def login_counters(items: Iterable[dict[str, Any]], keys: LoginKeys) -> LoginCounters:
    """The counters of a log-in attempt from the limits-table items read for `keys` (raw
    DynamoDB items, as a BatchGetItem across tables returns them; a missing item is a
    counter at zero). The read itself is the email claim's (creditml.storage.users)."""
    email, ip_failures = EmailFailures(), 0
    for raw in items:
        item = _LimitItem.from_raw_data(raw)
        if item.pk == keys.email:
            email = EmailFailures(
                failures=int(item.failures or 0),
                started=float(item.started or 0),
                last=float(item.last or 0),
            )
        elif item.pk == keys.ip:
            ip_failures = int(item.failures or 0)
    return LoginCounters(email=email, ip_failures=ip_failures)


class LimitsRepository:
    """Counters of the limits table. Each method is one DynamoDB call, except
    `record_login_failure`: one UpdateItem per counter, one more when the email's window
    changed since it was read. Login counters are read with the email's claim
    (`login_counters`)."""

    def __init__(self, table_name: str) -> None:
        self._item = bind_table(_LimitItem, table_name)

    def count_request(self, key: str, limit: int, expires_at: int) -> bool:
        """Count one request under `key` unless `limit` are counted already (one conditional
        UpdateItem, ADD). False, and nothing changed, when the limit is reached."""
        item = self._item(key)
        full = self._item.requests >= limit
        try:
            item.update(
                actions=[self._item.requests.add(1), self._item.expires_at.set(expires_at)],
                condition=self._item.requests.does_not_exist() | ~full,
            )
        except UpdateError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def record_login_failure(
        self, email_key: str, ip_key: str, now: float, window_open: bool
    ) -> None:
        """Count one failed login for the email (in its current window, or starting one;
        `window_open` says which is likely, from the counters read before) and for the
        address (in the current quarter-hour)."""
        self._count_email_failure(email_key, now, window_open)
        ip = self._item(ip_key)
        ip.update(
            actions=[
                self._item.failures.add(1),
                self._item.expires_at.set(
                    (ip_window(now) + 1) * LOGIN_WINDOW_SECONDS + EXPIRY_MARGIN_SECONDS
                ),
            ]
        )

    def _count_email_failure(self, key: str, now: float, window_open: bool) -> None:
        item, record = self._item(key), self._item
        cutoff = now - LOGIN_WINDOW_SECONDS
        # Long enough for the longest backoff after the window's last failure to run out.
        expires_at = int(now + LOGIN_WINDOW_SECONDS + EMAIL_BACKOFF_CAP_SECONDS)
        in_window = (  # the window is open: one more failure in it
            [record.failures.add(1), record.last.set(now), record.expires_at.set(expires_at)],
            record.started > cutoff,
        )
        new_window = (  # no window, or an ended one: this failure starts a new one
            [
                record.failures.set(1),
                record.started.set(now),
                record.last.set(now),
                record.expires_at.set(expires_at),
            ],
            record.started.does_not_exist() | (record.started <= cutoff),
        )
        tries = [in_window, new_window] if window_open else [new_window, in_window]
        for actions, condition in tries * MAX_WINDOW_RACES:
            try:
                item.update(actions=actions, condition=condition)
                return
            except UpdateError as exc:
                if not condition_failed(exc):
                    raise
        raise RuntimeError("could not count a failed login: its window kept changing")
