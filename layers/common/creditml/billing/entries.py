"""Ledger value types, shared by the ledger service and its repository."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel


class EntryKind(StrEnum):
    TOP_UP = "top_up"  # bought by the user (payment step)
    GRANT = "grant"  # credited by an admin
    DEBIT = "debit"  # a prediction
    REFUND = "refund"  # credits returned


CREDIT_KINDS = frozenset({EntryKind.TOP_UP, EntryKind.GRANT, EntryKind.REFUND})


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
    balance: int
    seq: int


@dataclass(frozen=True)
class Precondition:
    """An extra ConditionCheck for the same transaction (e.g. the model's price is still
    what the caller charged): `add(tx)` adds exactly one condition check."""

    add: Any


@dataclass(frozen=True)
class PendingEntry:
    """A balance change to write: which account, by whom, under which Idempotency-Key."""

    account_id: str
    actor_id: str
    entry_id: str
    kind: EntryKind
    amount: int
    idempotency_key: str
    request_hash: str
    details: dict[str, Any] = field(default_factory=dict)
    precondition: Precondition | None = None

    def applied_to(self, state: AccountState, created_at: datetime) -> LedgerEntry:
        """The entry this change becomes when written on top of `state`."""
        return LedgerEntry(
            id=self.entry_id,
            account_id=self.account_id,
            sequence=state.seq + 1,
            kind=self.kind,
            amount=self.amount,
            balance_after=state.balance + self.amount,
            created_at=created_at,
            actor_id=self.actor_id,
            idempotency_key=self.idempotency_key,
            details=self.details,
        )
