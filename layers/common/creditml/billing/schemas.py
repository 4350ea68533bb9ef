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
    balance_after: int
    created_at: datetime
    sequence: int = Field(description="1 for an account's first entry, then +1 each")
    details: dict[str, Any] = {}

    @classmethod
    def of(cls, entry: LedgerEntry) -> EntryPublic:
        return cls(
            id=entry.id,
            kind=entry.kind,
            amount=entry.amount,
            balance_after=entry.balance_after,
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
