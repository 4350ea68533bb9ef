"""Ledger value types, shared by the ledger service and its repository: entries, account
states, the extra conditions a write may carry, and the outcomes of one write attempt."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from creditml.limits import NO_COUNT, MinuteCount


class EntryKind(StrEnum):
    TOP_UP = "top_up"  # bought by the user (payment step)
    GRANT = "grant"  # credited by an admin
    DEBIT = "debit"  # a prediction
    REFUND = "refund"  # credits returned
    # A model download bought for one device (details: model_id, version, device_id,
    # price). Not a prediction: usage counters, reports and prediction history ignore it.
    DOWNLOAD = "download"


CREDIT_KINDS = frozenset({EntryKind.TOP_UP, EntryKind.GRANT, EntryKind.REFUND})
DEBIT_KINDS = frozenset({EntryKind.DEBIT, EntryKind.DOWNLOAD})


class LedgerEntry(BaseModel):
    """One balance change, as stored. `amount` is signed: + credit, - debit.

    `sequence` orders the account's entries, newest highest: milliseconds since the epoch
    x 1000 + 0..999, always above the entry before when writes do not overlap (entries
    written by earlier versions are numbered 1, 2, 3...). `balance_after` is the
    exact balance right after the entry when `balance_exact`; an entry written while other
    operations on the account overlapped it may carry a lower bound instead
    (`balance_exact` false): the account held at least that many credits right after it."""

    id: str
    account_id: str
    sequence: int
    kind: EntryKind
    amount: int
    balance_after: int
    balance_exact: bool = True
    created_at: datetime
    actor_id: str
    idempotency_key: str
    details: dict[str, Any] = {}


@dataclass(frozen=True)
class AccountState:
    """An account item: its balance, its version (`seq`, the entry count), the predictions
    it was debited for in the latest minute (the rate limit's counter) and the `sequence`
    of its latest entry (`last_order`)."""

    balance: int
    seq: int
    rate: MinuteCount = NO_COUNT
    last_order: int = 0

    def next_order(self, now: float, entry_id: str) -> int:
        """The `sequence` of an entry written on top of this state at `now` (seconds since
        the epoch): milliseconds since the epoch x 1000, at least one millisecond after the
        latest entry, plus 0..999 from the entry's id (so two writers in the same
        millisecond almost never share a sequence). Below 2**53: exact in JSON anywhere."""
        millis = max(int(now * 1000), self.last_order // 1000 + 1)
        return millis * 1000 + int(entry_id[:8], 16) % 1000


@dataclass(frozen=True)
class ModelStillServing:
    """A condition checked in the same transaction as a debit: the model still serves
    `version` at `price` and is not archived (so a stale cache never charges a wrong price)."""

    model_id: str
    price: int
    version: int


@dataclass(frozen=True)
class DownloadPriceHeld:
    """A condition checked in the same transaction as a download's debit: the model still
    has this `download_price` and is not archived."""

    model_id: str
    download_price: int


# The conditions a ledger write can carry.
Precondition = ModelStillServing | DownloadPriceHeld


@dataclass(frozen=True)
class IdempotencySlot:
    """Where an (actor, Idempotency-Key) pair writes: the entry id is derived from both, so
    the same key can never write a second entry, permanently. Derived once per request."""

    actor_id: str
    key: str
    entry_id: str

    @classmethod
    def of(cls, actor_id: str, key: str) -> IdempotencySlot:
        digest = hashlib.sha256(f"{actor_id}\n{key}".encode()).hexdigest()
        return cls(actor_id, key, digest[:32])  # 128 bits


def request_fingerprint(operation: str, payload: bytes) -> str:
    """What identifies a request for idempotency: a replay has the same fingerprint, a reuse
    of its key for anything else has another. The one scheme for every money-moving route."""
    return hashlib.sha256(operation.encode() + b"\n" + payload).hexdigest()


def canonical_json(body: dict[str, Any]) -> bytes:
    """A parsed body as bytes that do not depend on member order or spacing."""
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class PendingEntry:
    """A balance change to write: which account, by whom, under which Idempotency-Key."""

    account_id: str
    slot: IdempotencySlot
    kind: EntryKind
    amount: int
    request_hash: str
    details: dict[str, Any] = field(default_factory=dict)
    precondition: Precondition | None = None
    # What this entry buys once per account (a download's model, version and device): the
    # write fails with ClaimTaken when the account already bought it.
    claim: str | None = None


@dataclass(frozen=True)
class RateStep:
    """A prediction debit's step of the per-minute counter: `count` is the counter with
    this debit, computed from the state the write starts from, and `limit` the most the
    minute may hold (the write is refused when a concurrent debit filled it)."""

    count: MinuteCount
    limit: int


@dataclass(frozen=True)
class WritePlan:
    """How one attempt writes an entry on top of `expected`, the account's state as this
    container last saw it.

    - `floor is None`: exact. The write is conditioned on the account's version
      (`seq = expected.seq`), so `balance_after` is exact and `sequence` comes right after
      the latest entry. Any other write in between fails it (StaleVersion, with the true
      state).
    - `floor` given: bounded. The write adds `amount` to the balance on the condition
      `balance >= floor` alone, so concurrent writers do not invalidate each other.
      `balance_after` is then the lower bound `floor + amount` (the balance is at least
      `floor` when the write lands), and `sequence` is the writer's clock: among writes
      that overlapped, the order of their stamps, not of their commits.
    """

    expected: AccountState
    order: int
    floor: int | None = None
    rate: RateStep | None = None

    @property
    def exact(self) -> bool:
        return self.floor is None

    def entry(self, pending: PendingEntry, created_at: datetime) -> LedgerEntry:
        """The entry `pending` becomes when this attempt succeeds."""
        base = self.expected.balance if self.floor is None else self.floor
        return LedgerEntry(
            id=pending.slot.entry_id,
            account_id=pending.account_id,
            sequence=self.order,
            kind=pending.kind,
            amount=pending.amount,
            balance_after=base + pending.amount,
            balance_exact=self.floor is None,
            created_at=created_at,
            actor_id=pending.slot.actor_id,
            idempotency_key=pending.slot.key,
            details=pending.details,
        )

    def state_after(self, amount: int) -> AccountState:
        """The account as this container may assume it after the write succeeded: exact
        for an exact write. For a bounded one it is the account as it is if no other write
        landed between `expected` and this one. The next exact write is conditioned on its
        version (`expected.seq + 1`): that holds only if this write was indeed the only one
        since `expected`, and then the balance is exactly `expected.balance + amount`.
        (Never the floor: a lower bound with a matching version would be written back as
        the balance.)"""
        rate = self.rate.count if self.rate is not None else self.expected.rate
        return AccountState(self.expected.balance + amount, self.expected.seq + 1, rate, self.order)


@dataclass(frozen=True)
class PageStart:
    """Where the next page of an account's entries (newest first) starts: entries with a
    `sequence` up to `sequence`, except `seen`, the ids (their first SEEN_ID_CHARS
    characters) of the entries with exactly that sequence already shown. Two overlapping
    writes can share a sequence, so "below the last one shown" could skip one of them."""

    sequence: int
    seen: tuple[str, ...] = ()

    def skips(self, entry: LedgerEntry) -> bool:
        return entry.sequence == self.sequence and entry.id[:SEEN_ID_CHARS] in self.seen

    @classmethod
    def after(cls, page: list[LedgerEntry], start: PageStart | None) -> PageStart:
        """The start of the page after `page` (not empty), which began at `start`."""
        last = page[-1].sequence
        seen = start.seen if start is not None and start.sequence == last else ()
        shown = tuple(e.id[:SEEN_ID_CHARS] for e in page if e.sequence == last)
        return cls(last, seen + shown)


# How much of an entry id a cursor carries (48 bits: ids are 128-bit hashes).
SEEN_ID_CHARS = 12


# Outcomes of one write attempt (LedgerStore.write).
@dataclass(frozen=True)
class Written:
    entry: LedgerEntry


@dataclass(frozen=True)
class StaleVersion:
    """A condition on the account failed: it moved on, the debit does not fit the balance
    or the floor, or the minute's count is full; `actual` is its state just now."""

    actual: AccountState


@dataclass(frozen=True)
class SlotTaken:
    """This (actor, key) already has an entry: the stored one and its request fingerprint."""

    entry: LedgerEntry
    request_hash: str


@dataclass(frozen=True)
class UserMissing:
    """A grant's target account has no user."""


@dataclass(frozen=True)
class PreconditionFailed:
    """The write's extra condition did not hold; nothing was written."""


@dataclass(frozen=True)
class ClaimTaken:
    """The account already bought what the entry's `claim` names; nothing was written."""


@dataclass(frozen=True)
class Contended:
    """DynamoDB cancelled the transaction for a concurrent one (TransactionConflict)."""


WriteOutcome = (
    Written | StaleVersion | SlotTaken | UserMissing | PreconditionFailed | ClaimTaken | Contended
)
