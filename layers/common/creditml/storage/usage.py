"""Usage counters, in the usage table (pk `pk`, sk `sk`, TTL on `expires_at`).

  pk = "OWN#<user>"          sk = "<day>#<model>"          a user's charged predictions
  pk = "PUB#<owner>"         sk = "<day>#<model>"          predictions on an owner's models
  pk = "ALL"                 sk = "<day>#<model>"          every charged prediction
  pk = "APPLIED#<account>#<entry>", sk = "-"                a debit already counted; expires
                                                           (TTL) long after the ledger's stream
                                                           could deliver it again (24 hours)

Counters are `predictions`, `rows`, `credits`, only ever ADDed to. A batch of debits is
counted in transactions of at most 100 items: the batch's markers, each conditioned on not
existing, and its counters' summed increments. A redelivered debit fails its marker's
condition; it is dropped and the rest is committed again, so each debit counts once however
the stream redelivers, splits or reorders batches, and concurrent aggregators only add.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.models import Model

from creditml.reports.usage import CounterKey, Debit, Tally, View, increments, prediction_of
from creditml.storage.dynamo import Transaction, TransactionCancelled
from creditml.storage.tables import bind_table

MAX_TRANSACTION_ITEMS = 100
MARKER_SK = "-"
MARKER_LIFETIME = timedelta(days=7)  # the stream keeps records 24 hours
RETRY_BUDGET_SECONDS = 20.0  # per batch: conflicts with concurrent aggregators, then it fails
BACKOFF_CAP_SECONDS = 1.0

_PARTITIONS = {View.OWN: "OWN#", View.PUBLISHED: "PUB#", View.ALL: "ALL"}


class _UsageItem(Model):
    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    predictions = NumberAttribute(null=True)
    rows = NumberAttribute(null=True)
    credits = NumberAttribute(null=True)
    expires_at = NumberAttribute(null=True)


def partition(view: View, subject: str) -> str:
    return _PARTITIONS[view] + ("" if view is View.ALL else subject)


def _key(counter: CounterKey) -> tuple[str, str]:
    return partition(counter.view, counter.subject), f"{counter.day.isoformat()}#{counter.model_id}"


def _marker(debit: Debit) -> str:
    return f"APPLIED#{debit.account_id}#{debit.entry_id}"


def _tally(item: _UsageItem) -> Tally:
    return Tally(int(item.predictions or 0), int(item.rows or 0), int(item.credits or 0))


class UsageCounters:
    """Counts debits into the usage table and reads the counters back."""

    def __init__(
        self,
        table_name: str,
        clock: Callable[[], datetime],
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[float, float], float] = random.uniform,
        marker_lifetime: timedelta | None = MARKER_LIFETIME,
    ) -> None:
        """`marker_lifetime` None: markers never expire (a backfill of old debits, which
        may be read again by a later backfill, not only by the stream's 24 hours)."""
        self._item = bind_table(_UsageItem, table_name)
        self._clock = clock
        self._marker_lifetime = marker_lifetime
        self._sleep = sleep
        self._jitter = jitter

    def count(self, debits: Sequence[Debit], owners: dict[str, str]) -> int:
        """Add `debits` to their counters, each debit exactly once whatever was counted
        before (`owners`: model id -> owner id). Returns how many were new. Raises when
        conflicts with concurrent writers outlast the retry budget or DynamoDB fails: the
        caller's batch is then delivered again, and what was committed is not recounted."""
        unique = list({(d.account_id, d.entry_id): d for d in debits}.values())
        # One budget for the whole batch, well inside the function's timeout (60 s).
        deadline = time.monotonic() + RETRY_BUDGET_SECONDS
        counted = 0
        for chunk in _chunks(unique, owners):
            counted += self._commit(chunk, owners, deadline)
        return counted

    def _commit(self, chunk: list[Debit], owners: dict[str, str], deadline: float) -> int:
        attempt = 0
        while chunk:
            try:
                self._transaction(chunk, owners).commit()
                return len(chunk)
            except TransactionCancelled as cancelled:
                counted_before = {label for label in cancelled.failed if label.startswith("m")}
                if counted_before:  # redelivered debits: drop them, commit the rest
                    chunk = [d for i, d in enumerate(chunk) if f"m{i}" not in counted_before]
                    continue
                if not cancelled.conflict or time.monotonic() >= deadline:
                    raise
                attempt += 1
                self._sleep(self._jitter(0, min(BACKOFF_CAP_SECONDS, 0.02 * 2**attempt)))
        return 0

    def _transaction(self, chunk: list[Debit], owners: dict[str, str]) -> Transaction:
        item = self._item
        lifetime = self._marker_lifetime
        expires = None if lifetime is None else int((self._clock() + lifetime).timestamp())
        tx = Transaction(item)
        for index, debit in enumerate(chunk):
            marker = item(_marker(debit), MARKER_SK, expires_at=expires)
            tx.put(f"m{index}", marker, condition=item.pk.does_not_exist(), return_old=False)
        for index, (counter, tally) in enumerate(sorted(increments(chunk, owners).items())):
            actions = [
                item.predictions.add(tally.predictions),
                item.rows.add(tally.rows),
                item.credits.add(tally.credits),
            ]
            tx.update(f"c{index}", item(*_key(counter)), actions=actions, condition=None)
        return tx

    def counters(
        self, view: View, subject: str, first: date, last: date
    ) -> Iterator[tuple[date, str, Tally]]:
        """(day, model id, tally) of one subject's counters from `first` to `last`."""
        condition = self._item.sk.between(first.isoformat(), f"{last.isoformat()}#\uffff")
        for item in self._item.query(partition(view, subject), range_key_condition=condition):
            day, model_id = str(item.sk).split("#", 1)
            yield date.fromisoformat(day), model_id, _tally(item)


def _chunks(debits: list[Debit], owners: dict[str, str]) -> Iterator[list[Debit]]:
    """Debits in groups whose markers and distinct counters fit one transaction."""
    chunk: list[Debit] = []
    counters: set[CounterKey] = set()
    for debit in debits:
        added = set(increments([debit], owners)) - counters
        if chunk and len(chunk) + 1 + len(counters) + len(added) > MAX_TRANSACTION_ITEMS:
            yield chunk
            chunk, counters = [], set()
            added = set(increments([debit], owners))
        chunk.append(debit)
        counters |= added
    if chunk:
        yield chunk


def debit_from_image(image: dict[str, Any]) -> Debit | None:
    """The debit a ledger stream record's NewImage holds (DynamoDB JSON); None for every
    other ledger item (accounts, top-ups, grants, an admin's guard items)."""
    if image.get("kind", {}).get("S") != "debit" or "entry_id" not in image:
        return None
    details = image.get("details", {}).get("S")
    prediction = prediction_of(json.loads(details)) if details is not None else None
    if prediction is None:
        return None
    return Debit(
        account_id=image["account_id"]["S"],
        entry_id=image["entry_id"]["S"],
        model_id=prediction[0],
        created_at=datetime.fromisoformat(image["created_at"]["S"]),
        rows=prediction[1],
        credits=-int(image["amount"]["N"]),
    )
