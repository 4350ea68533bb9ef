"""The billing service: balances, top-ups and grants, and ledger pages."""

from __future__ import annotations

import base64
import binascii
from typing import Protocol

from creditml.auth.roles import Role
from creditml.auth.tokens import AccessClaims
from creditml.billing.entries import SEEN_ID_CHARS, EntryKind, LedgerEntry, PageStart
from creditml.billing.ledger import Ledger, request_hash
from creditml.billing.payments import PaymentGateway
from creditml.errors import Forbidden, InvalidCursor, TopUpTooLarge


class LedgerReader(Protocol):
    def balance(self, account_id: str) -> int: ...

    def entries(
        self, account_id: str, limit: int, start: PageStart | None
    ) -> list[LedgerEntry]: ...


# A cursor names at most this many entries already shown at its sequence (two are already
# a one-in-a-thousand event; see PageStart).
MAX_SEEN = 16
CURSOR_MAX_LENGTH = 256


def encode_cursor(start: PageStart) -> str:
    """`v2:<sequence>:<id>.<id>...` in URL-safe base64 (opaque to clients)."""
    text = f"v2:{start.sequence}:{'.'.join(start.seen[-MAX_SEEN:])}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> PageStart:
    """The page start a cursor names; InvalidCursor for anything else. Cursors of earlier
    versions (`v1:<sequence>`, "below this one") still work."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, _, rest = text.partition(":")
        value, _, seen = rest.partition(":")
        sequence = int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidCursor() from exc
    ids = tuple(seen.split(".")) if seen else ()
    if version == "v1" and sequence >= 1 and not seen:
        return PageStart(sequence - 1)
    if version != "v2" or sequence < 0 or len(ids) > MAX_SEEN:
        raise InvalidCursor()
    if not all(len(i) == SEEN_ID_CHARS and i.isalnum() for i in ids):
        raise InvalidCursor()
    return PageStart(sequence, ids)


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
        start = decode_cursor(cursor) if cursor else None
        entries = self._reader.entries(caller.user_id, limit, start)
        has_more = len(entries) == limit
        return entries, encode_cursor(PageStart.after(entries, start)) if has_more else None
