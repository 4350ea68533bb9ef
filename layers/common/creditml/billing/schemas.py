"""Request and response bodies of the billing API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from creditml.billing.entries import EntryKind, LedgerEntry


class TopUpRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # StrictInt: 5.0, "5" and true are refused rather than coerced; credits are integers.
    amount: Annotated[StrictInt, Field(gt=0, description="Credits to add (a positive integer)")]
    user_id: Annotated[
        str | None,
        Field(min_length=1, max_length=64, description="Admins only: the account to credit"),
    ] = None
    note: Annotated[str | None, Field(max_length=500)] = None


class EntryPublic(BaseModel):
    id: str
    kind: EntryKind
    amount: int = Field(description="Signed: + credit, - debit")
    balance_after: int = Field(
        description="The balance right after this entry; a lower bound when `balance_exact` "
        "is false (the account then held at least this many credits)"
    )
    balance_exact: bool = Field(
        True,
        description="False only for an entry written while other operations on the account "
        "overlapped it: its `balance_after` is then a lower bound",
    )
    created_at: datetime
    sequence: int = Field(
        description="Orders the account's entries, newest highest: milliseconds since the "
        "epoch x 1000 + 0..999 (entries written by earlier versions: 1, 2, 3...)"
    )
    details: dict[str, Any] = {}

    @classmethod
    def of(cls, entry: LedgerEntry) -> EntryPublic:
        return cls(
            id=entry.id,
            kind=entry.kind,
            amount=entry.amount,
            balance_after=entry.balance_after,
            balance_exact=entry.balance_exact,
            created_at=entry.created_at,
            sequence=entry.sequence,
            details=entry.details,
        )


class Balance(BaseModel):
    balance: int


class EntryPage(BaseModel):
    items: list[EntryPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end"
    )
