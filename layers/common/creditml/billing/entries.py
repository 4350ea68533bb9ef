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
    """One balance change, as stored. `amount` is signed: + credit, - debit."""

    id: str
    account_id: str
    sequence: int
    kind: EntryKind
    amount: int
    balance_after: int
    created_at: datetime
    actor_id: str
    idempotency_key: str
    details: dict[str, Any] = {}


@dataclass(frozen=True)
class AccountState:
    """An account item: its balance, its version (`seq`, the entry count) and the
    predictions it was debited for in the latest minute (the rate limit's counter)."""

    balance: int
    seq: int
    rate: MinuteCount = NO_COUNT


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

    def applied_to(self, state: AccountState, created_at: datetime) -> LedgerEntry:
        """The entry this change becomes when written on top of `state`."""
        return LedgerEntry(
            id=self.slot.entry_id,
            account_id=self.account_id,
            sequence=state.seq + 1,
            kind=self.kind,
            amount=self.amount,
            balance_after=state.balance + self.amount,
            created_at=created_at,
            actor_id=self.slot.actor_id,
            idempotency_key=self.slot.key,
            details=self.details,
        )


# Outcomes of one write attempt (LedgerStore.write).
@dataclass(frozen=True)
class Written:
    entry: LedgerEntry


@dataclass(frozen=True)
class StaleVersion:
    """The account moved on (or the debit does not fit); `actual` is its state just now."""

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
