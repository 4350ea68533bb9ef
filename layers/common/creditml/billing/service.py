"""The billing service: balances, top-ups and grants, and ledger pages."""

from __future__ import annotations

import base64
import binascii
from typing import Protocol

from creditml.auth.roles import Role
from creditml.auth.tokens import AccessClaims
from creditml.billing.entries import EntryKind, LedgerEntry
from creditml.billing.ledger import Ledger, request_hash
from creditml.billing.payments import PaymentGateway
from creditml.errors import Forbidden, InvalidCursor, TopUpTooLarge


class LedgerReader(Protocol):
    def balance(self, account_id: str) -> int: ...

    def entries(self, account_id: str, limit: int, before_seq: int | None) -> list[LedgerEntry]: ...


def encode_cursor(sequence: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{sequence}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, _, value = text.partition(":")
        sequence = int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidCursor() from exc
    if version != "v1" or sequence < 1:
        raise InvalidCursor()
    return sequence


class BillingService:
    def __init__(
        self,
        ledger: Ledger,
        reader: LedgerReader,
        payments: PaymentGateway,
        max_top_up: int,
    ) -> None:
        self._ledger = ledger
        self._reader = reader
        self._payments = payments
        self._max_top_up = max_top_up

    def balance(self, caller: AccessClaims) -> int:
        return self._reader.balance(caller.user_id)

    def top_up(
        self,
        caller: AccessClaims,
        amount: int,
        idempotency_key: str,
        user_id: str | None = None,
        note: str | None = None,
    ) -> tuple[LedgerEntry, bool]:
        """Credit an account. A user buys credits for themself (payment step); an admin may
        credit any account, recorded as a grant. Returns the entry and whether it replays
        an earlier request with the same key."""
        if amount > self._max_top_up:
            raise TopUpTooLarge(maximum=self._max_top_up)
        target = user_id or caller.user_id
        fingerprint = request_hash("top_up", {"amount": amount, "user_id": target, "note": note})
        details: dict[str, object] = {"note": note} if note else {}
        if target != caller.user_id:
            if caller.role is not Role.ADMIN:
                raise Forbidden("Only admins may credit another user's account.")
            kind = EntryKind.GRANT
        else:
            receipt = self._payments.charge(caller.user_id, amount, idempotency_key)
            details |= {
                "payment_provider": receipt.provider,
                "payment_reference": receipt.reference,
            }
            kind = EntryKind.TOP_UP
        return self._ledger.credit(
            target,
            amount,
            kind,
            actor_id=caller.user_id,
            idempotency_key=idempotency_key,
            request=fingerprint,
            details=details,
        )

    def transactions(
        self, caller: AccessClaims, limit: int, cursor: str | None
    ) -> tuple[list[LedgerEntry], str | None]:
        """A page of the caller's ledger, newest first, and the cursor of the next page."""
        before = decode_cursor(cursor) if cursor else None
        entries = self._reader.entries(caller.user_id, limit, before)
        last = entries[-1].sequence if entries else 1
        has_more = len(entries) == limit and last > 1
        return entries, encode_cursor(last) if has_more else None
