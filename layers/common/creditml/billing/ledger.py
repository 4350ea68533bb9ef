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
- Debits are rate limited (DESIGN §12) at no extra call: the account item counts the debits
  of the current minute, and the debit's own update sets the new count. The count at the
  expected version is known exactly, so the limit is checked here, before writing: a debit
  over the limit is RateLimited (429, never 402; the rate is checked before the balance),
  and writes nothing. A replay of a key already charged is never limited (it writes
  nothing): a refusal based on this container's remembered state first reads the key's
  slot (one read, on the refusal path only); a refusal based on the state a failed write
  returned needs none (that write would have reported a taken slot).
- TransactionConflict (another transaction on the same item) is retried a bounded number of
  times with full-jitter exponential backoff.
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from creditml.billing.entries import (
    CREDIT_KINDS,
    DEBIT_KINDS,
    AccountState,
    ClaimTaken,
    Contended,
    EntryKind,
    IdempotencySlot,
    LedgerEntry,
    PendingEntry,
    Precondition,
    PreconditionFailed,
    SlotTaken,
    StaleVersion,
    UserMissing,
    WriteOutcome,
    Written,
    canonical_json,
    request_fingerprint,
)
from creditml.errors import (
    IdempotencyKeyReused,
    InsufficientCredits,
    LedgerBusy,
    RateLimited,
    UserNotFound,
)
from creditml.limits import NO_COUNT, MinuteCount

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


class AlreadyClaimed(Exception):
    """The account already bought what the debit's `claim` names; nothing was written."""


class LedgerStore(Protocol):
    def write(
        self, pending: PendingEntry, expected: AccountState, rate: MinuteCount | None = None
    ) -> WriteOutcome: ...

    def slot(self, actor_id: str, entry_id: str) -> tuple[LedgerEntry, str] | None: ...


def request_hash(operation: str, body: dict[str, Any]) -> str:
    """The request fingerprint of a parsed JSON body (member order and spacing ignored)."""
    return request_fingerprint(operation, canonical_json(body))


class Ledger:
    """Credits and debits accounts through a LedgerStore. `debits_per_minute` limits each
    account's debits per clock minute (None: unlimited); `clock` gives seconds since the
    epoch."""

    def __init__(
        self,
        store: LedgerStore,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[float, float], float] = random.uniform,
        *,
        debits_per_minute: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._sleep = sleep
        self._jitter = jitter
        self._debits_per_minute = debits_per_minute
        self._clock = clock
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
        slot = IdempotencySlot.of(actor_id, idempotency_key)
        return self._apply(account_id, amount, kind, slot, request, details)

    def debit(
        self,
        account_id: str,
        amount: int,
        *,
        slot: IdempotencySlot,
        request: str,
        details: dict[str, Any] | None = None,
        precondition: Precondition | None = None,
        kind: EntryKind = EntryKind.DEBIT,
        claim: str | None = None,
    ) -> tuple[LedgerEntry, bool]:
        """Take `amount` credits from the account holder's own balance (the slot's actor),
        never below zero, in one transaction with `precondition` when given
        (PreconditionNotMet if it fails) and with `claim` when given (AlreadyClaimed when
        the account already bought it). A prediction's debit (`debit`) counts against the
        per-minute limit (RateLimited above it); a `download` does not (its request was
        counted). Returns the entry and whether it is a replay."""
        if slot.actor_id != account_id:
            raise ValueError("a debit's Idempotency-Key belongs to the account holder")
        if kind not in DEBIT_KINDS:
            raise ValueError(f"{kind} is not a debit")
        return self._apply(account_id, -amount, kind, slot, request, details, precondition, claim)

    def _apply(
        self,
        account_id: str,
        amount: int,
        kind: EntryKind,
        slot: IdempotencySlot,
        request: str,
        details: dict[str, Any] | None,
        precondition: Precondition | None = None,
        claim: str | None = None,
    ) -> tuple[LedgerEntry, bool]:
        if not isinstance(amount, int) or isinstance(amount, bool) or amount == 0:
            raise ValueError("amount must be a non-zero integer")
        pending = PendingEntry(
            account_id=account_id,
            slot=slot,
            kind=kind,
            amount=amount,
            request_hash=request,
            details=details or {},
            precondition=precondition,
            claim=claim,
        )
        expected = self._known.get(account_id, AccountState(balance=0, seq=0))
        metered = kind is EntryKind.DEBIT and self._debits_per_minute is not None
        now = self._clock()
        authoritative = False  # whether `expected` came from DynamoDB during this call
        conflicts = 0
        for _ in range(MAX_ATTEMPTS):
            rate = self._counted(pending, expected, now, authoritative) if metered else None
            if isinstance(rate, tuple):  # a replay of a key already charged
                return rate
            if authoritative and expected.balance + amount < 0:
                raise InsufficientCredits(balance=expected.balance, required=-amount)
            outcome = self._store.write(pending, expected, rate)
            if isinstance(outcome, StaleVersion):
                # The true state, read by the failed write itself: authoritative just now.
                expected, authoritative = outcome.actual, True
                self._known[account_id] = expected
            elif isinstance(outcome, Contended):
                conflicts += 1
                if conflicts > MAX_CONFLICT_RETRIES:
                    break
                cap = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**conflicts)
                self._sleep(self._jitter(0, cap))
            else:
                return self._settled(account_id, outcome, request, rate or expected.rate)
        raise LedgerBusy()

    def _counted(
        self, pending: PendingEntry, expected: AccountState, now: float, authoritative: bool
    ) -> MinuteCount | tuple[LedgerEntry, bool]:
        """The account's debit count with this debit, or RateLimited when the minute is full,
        unless the key already charged: then its replay (entry, True)."""
        assert self._debits_per_minute is not None
        try:
            return expected.rate.counting(now, self._debits_per_minute)
        except RateLimited:
            # A remembered state says nothing of this key's slot; a state returned by a
            # failed write does (a taken slot would have been reported instead).
            if not authoritative:
                taken = self._store.slot(pending.slot.actor_id, pending.slot.entry_id)
                if taken is not None:
                    entry, stored = taken
                    return self._settled(
                        pending.account_id, SlotTaken(entry, stored), pending.request_hash
                    )
            raise

    def _settled(
        self,
        account_id: str,
        outcome: Written | SlotTaken | UserMissing | PreconditionFailed | ClaimTaken,
        request: str,
        rate: MinuteCount = NO_COUNT,
    ) -> tuple[LedgerEntry, bool]:
        """The answer to an outcome that ends the operation: the entry and whether it is a
        replay, or the error it means. `rate` is the account's count after a write."""
        if isinstance(outcome, Written):
            self._remember(account_id, outcome.entry, rate)
            return outcome.entry, False
        if isinstance(outcome, SlotTaken):
            if outcome.request_hash != request:
                raise IdempotencyKeyReused()
            return outcome.entry, True
        if isinstance(outcome, UserMissing):
            raise UserNotFound()
        if isinstance(outcome, ClaimTaken):
            raise AlreadyClaimed()
        raise PreconditionNotMet()

    def _remember(self, account_id: str, entry: LedgerEntry, rate: MinuteCount) -> None:
        self._known[account_id] = AccountState(entry.balance_after, entry.sequence, rate)
        self._known.move_to_end(account_id)
        while len(self._known) > KNOWN_STATES:
            self._known.popitem(last=False)
