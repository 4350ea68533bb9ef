"""The ledger: credit and debit integer credits, atomically and at most once per key.

Each operation is one DynamoDB transaction (see creditml.storage.ledger). This module decides
what to write and what an outcome means:

- The entry id is derived from (actor, Idempotency-Key), so the same key can never write a
  second entry, permanently (not just for DynamoDB's 10-minute ClientRequestToken window).
- A replay with the same request returns the original entry; the same key with a different
  request raises IdempotencyKeyReused.
- Writes are optimistic: each carries the account version (entry count) it expects. The
  last known state per account is remembered in this container, so a warm debit is one
  call; a stale guess comes back with the true state (ALL_OLD) and is retried at once.
- Debits never take a balance below zero: InsufficientCredits carries balance and required.
- TransactionConflict (another transaction on the same item) is retried a bounded number of
  times with full-jitter exponential backoff.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from creditml.billing.entries import (
    CREDIT_KINDS,
    AccountState,
    EntryKind,
    LedgerEntry,
    PendingEntry,
    Precondition,
)
from creditml.errors import (
    IdempotencyKeyReused,
    InsufficientCredits,
    LedgerBusy,
    UserNotFound,
)
from creditml.storage.ledger import (
    Contended,
    PreconditionFailed,
    SlotTaken,
    StaleVersion,
    UserMissing,
    WriteOutcome,
    Written,
)

# How many times one operation may find the account moved on, or be cancelled for a
# concurrent transaction, before giving up with 503 ledger_busy.
MAX_ATTEMPTS = 30
MAX_CONFLICT_RETRIES = 6
BACKOFF_BASE_SECONDS = 0.01
BACKOFF_CAP_SECONDS = 0.25
# Accounts whose last state this container remembers (a hint, never trusted for money).
KNOWN_STATES = 10_000


class PreconditionNotMet(Exception):
    """The transaction's extra condition (e.g. a model's price) no longer held."""


class LedgerStore(Protocol):
    def write(self, pending: PendingEntry, expected: AccountState) -> WriteOutcome: ...


def entry_id_for(actor_id: str, idempotency_key: str) -> str:
    """The ledger entry id for this actor's Idempotency-Key (128 bits of SHA-256)."""
    digest = hashlib.sha256(f"{actor_id}\n{idempotency_key}".encode()).hexdigest()
    return digest[:32]


def request_hash(operation: str, body: dict[str, Any]) -> str:
    """A fingerprint of a request, to tell a replay from a reuse of its key."""
    canonical = json.dumps({"op": operation, "body": body}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class Ledger:
    """Credits and debits accounts through a LedgerStore."""

    def __init__(
        self,
        store: LedgerStore,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self._store = store
        self._sleep = sleep
        self._jitter = jitter
        self._known: OrderedDict[str, AccountState] = OrderedDict()

    def credit(
        self,
        account_id: str,
        amount: int,
        kind: EntryKind,
        *,
        actor_id: str,
        idempotency_key: str,
        request: str,
        details: dict[str, Any] | None = None,
    ) -> tuple[LedgerEntry, bool]:
        """Add `amount` credits. Returns the entry and whether it is a replay."""
        if kind not in CREDIT_KINDS:
            raise ValueError(f"{kind} is not a credit")
        return self._apply(account_id, amount, kind, actor_id, idempotency_key, request, details)

    def debit(
        self,
        account_id: str,
        amount: int,
        *,
        idempotency_key: str,
        request: str,
        details: dict[str, Any] | None = None,
        precondition: Precondition | None = None,
    ) -> tuple[LedgerEntry, bool]:
        """Take `amount` credits from the account holder's own balance, never below zero,
        in one transaction with `precondition` when given (PreconditionNotMet if it fails).
        Returns the entry and whether it is a replay."""
        return self._apply(
            account_id,
            -amount,
            EntryKind.DEBIT,
            account_id,
            idempotency_key,
            request,
            details,
            precondition,
        )

    def _apply(
        self,
        account_id: str,
        amount: int,
        kind: EntryKind,
        actor_id: str,
        idempotency_key: str,
        request: str,
        details: dict[str, Any] | None,
        precondition: Precondition | None = None,
    ) -> tuple[LedgerEntry, bool]:
        if not isinstance(amount, int) or isinstance(amount, bool) or amount == 0:
            raise ValueError("amount must be a non-zero integer")
        pending = PendingEntry(
            account_id=account_id,
            actor_id=actor_id,
            entry_id=entry_id_for(actor_id, idempotency_key),
            kind=kind,
            amount=amount,
            idempotency_key=idempotency_key,
            request_hash=request,
            details=details or {},
            precondition=precondition,
        )
        expected = self._known.get(account_id, AccountState(balance=0, seq=0))
        conflicts = 0
        for _ in range(MAX_ATTEMPTS):
            outcome = self._store.write(pending, expected)
            if isinstance(outcome, Written):
                self._remember(account_id, outcome.entry)
                return outcome.entry, False
            if isinstance(outcome, SlotTaken):
                if outcome.request_hash != request:
                    raise IdempotencyKeyReused()
                return outcome.entry, True
            if isinstance(outcome, UserMissing):
                raise UserNotFound()
            if isinstance(outcome, PreconditionFailed):
                raise PreconditionNotMet()
            if isinstance(outcome, StaleVersion):
                # The true state, read by the failed write itself: authoritative just now.
                expected = outcome.actual
                self._known[account_id] = expected
                if expected.balance + amount < 0:
                    raise InsufficientCredits(balance=expected.balance, required=-amount)
                continue
            if isinstance(outcome, Contended):
                conflicts += 1
                if conflicts > MAX_CONFLICT_RETRIES:
                    break
                cap = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**conflicts)
                self._sleep(self._jitter(0, cap))
                continue
        raise LedgerBusy()

    def _remember(self, account_id: str, entry: LedgerEntry) -> None:
        self._known[account_id] = AccountState(entry.balance_after, entry.sequence)
        self._known.move_to_end(account_id)
        while len(self._known) > KNOWN_STATES:
            self._known.popitem(last=False)
