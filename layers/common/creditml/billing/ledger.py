"""The ledger: credit and debit integer credits, atomically and at most once per key.

Each operation is one DynamoDB transaction (see creditml.storage.ledger). This module decides
what to write and what an outcome means:

- The entry id is derived from (actor, Idempotency-Key), so the same key can never write a
  second entry, permanently (not just for DynamoDB's 10-minute ClientRequestToken window).
- A replay with the same request returns the original entry; the same key with a different
  request raises IdempotencyKeyReused.
- Writes are exact first, bounded under contention (entries.WritePlan). An exact write
  carries the account version it expects, so its `balance_after` is exact. The last known
  state per account is remembered in this container, so a warm debit is one call; a stale
  guess comes back with the true state (ALL_OLD) and is retried at once. When the account
  moved on again (another writer overlapped), the write turns bounded: `ADD` on the balance
  with `balance >= floor`, which concurrent writers cannot invalidate, and a lower-bound
  `balance_after`. So many containers debiting one account do not retry each other into
  the ground (work linear, not quadratic, in the number of writers).
- Debits never take a balance below zero: InsufficientCredits carries balance and required.
- Debits are rate limited (DESIGN §12) at no extra call: the account item counts the debits
  of the current minute, and the debit's own update sets the new count. The count the
  state shows is checked here, before writing: a debit over the limit is RateLimited (429,
  never 402; the rate is checked before the balance), and writes nothing. An exact write
  sets the count it computed (its version pins it); a bounded one adds 1 on the condition
  that the minute is the same and still below the limit (or opens the next minute on the
  condition that the stored one is older), so the limit holds under overlap too. A replay
  of a key already charged is never limited (it writes nothing): a refusal based on this
  container's remembered state first reads the key's slot (one read, on the refusal path
  only); a refusal based on the state a failed write returned needs none (that write would
  have reported a taken slot).
- TransactionConflict (DynamoDB refusing a transaction that overlaps another on the same
  item) is retried with full-jitter exponential backoff, bounded in time: an operation
  gives up with 503 ledger_busy (and Retry-After) after RETRY_BUDGET_SECONDS (and at
  least MIN_ATTEMPTS attempts), or, as a safety net, after MAX_ATTEMPTS.
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
    RateStep,
    SlotTaken,
    StaleVersion,
    UserMissing,
    WriteOutcome,
    WritePlan,
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

# Exact attempts before a write turns bounded: the remembered state, then the true state a
# failed write returned. Two operations that do not overlap in time are therefore exact.
EXACT_ATTEMPTS = 2
# A bounded write's first floor is the balance seen minus this many times its amount (or
# twice what the balance moved during one of its attempts, if more); each time the balance
# falls below the floor before the write lands, the gap doubles (so the floor reaches the
# price itself within a few attempts; 402 is decided only from the true balance). A
# smaller gap gives a tighter lower bound, a larger one fewer attempts.
FLOOR_GAP_AMOUNTS = 8
# How long one operation may keep retrying before 503 ledger_busy: well inside the
# functions' timeouts, long enough to ride out a burst on one account.
RETRY_BUDGET_SECONDS = 5.0
# A safety net under the time budget (immediate retries after a failed condition), and the
# attempts an operation always gets however slow each one is.
MAX_ATTEMPTS = 200
MIN_ATTEMPTS = 6
BACKOFF_BASE_SECONDS = 0.005
BACKOFF_CAP_SECONDS = 0.2
# Accounts whose last state this container remembers (a hint, never trusted for money).
KNOWN_STATES = 10_000


class PreconditionNotMet(Exception):
    """The transaction's extra condition (e.g. a model's price) no longer held."""


class AlreadyClaimed(Exception):
    """The account already bought what the debit's `claim` names; nothing was written."""


class LedgerStore(Protocol):
    def write(self, pending: PendingEntry, plan: WritePlan) -> WriteOutcome: ...

    def slot(self, actor_id: str, entry_id: str) -> tuple[LedgerEntry, str] | None: ...


def request_hash(operation: str, body: dict[str, Any]) -> str:
    """The request fingerprint of a parsed JSON body (member order and spacing ignored)."""
    return request_fingerprint(operation, canonical_json(body))


class Ledger:
    """Credits and debits accounts through a LedgerStore. `debits_per_minute` limits each
    account's debits per clock minute (None: unlimited); `clock` gives seconds since the
    epoch, `monotonic` the seconds the retry budget is measured in."""

    def __init__(
        self,
        store: LedgerStore,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[float, float], float] = random.uniform,
        *,
        debits_per_minute: int | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        retry_budget: float = RETRY_BUDGET_SECONDS,
    ) -> None:
        self._store = store
        self._sleep = sleep
        self._jitter = jitter
        self._debits_per_minute = debits_per_minute
        self._clock = clock
        self._monotonic = monotonic
        self._retry_budget = retry_budget
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
        deadline = self._monotonic() + self._retry_budget
        authoritative = False  # whether `expected` came from DynamoDB during this call
        misses = conflicts = drift = 0
        for attempt in range(1, MAX_ATTEMPTS + 1):
            rate = self._counted(pending, expected, now, authoritative) if metered else None
            if isinstance(rate, tuple):  # a replay of a key already charged
                return rate
            if authoritative and expected.balance + amount < 0:
                raise InsufficientCredits(balance=expected.balance, required=-amount)
            plan = self._plan(pending, expected, rate, misses, drift)
            outcome = self._store.write(pending, plan)
            if isinstance(outcome, StaleVersion):
                # How far the balance moved while this write was on its way (a measure of
                # the concurrent writers, when the state it started from was a true one).
                if authoritative:
                    drift = max(drift, abs(outcome.actual.balance - expected.balance))
                # The true state, read by the failed write itself: authoritative just now.
                expected, authoritative = outcome.actual, True
                self._known[account_id] = expected
                misses += 1
            elif isinstance(outcome, Contended):
                conflicts += 1
                if not self._back_off(conflicts, deadline, attempt):
                    break
            else:
                return self._settled(account_id, outcome, request, plan)
            if attempt >= MIN_ATTEMPTS and self._monotonic() >= deadline:
                break
        raise LedgerBusy()

    def _plan(
        self,
        pending: PendingEntry,
        expected: AccountState,
        rate: RateStep | None,
        misses: int,
        drift: int,
    ) -> WritePlan:
        """Attempt number `misses + 1`: exact while EXACT_ATTEMPTS last, then bounded with a
        floor below the balance seen by FLOOR_GAP_AMOUNTS x amount, or by twice the most the
        balance moved during one attempt (`drift`) if that is more, the gap doubling with
        each further miss (never below what a debit needs, never below 0)."""
        order = expected.next_order(self._clock(), pending.slot.entry_id)
        if misses < EXACT_ATTEMPTS:
            return WritePlan(expected, order, rate=rate)
        gap = max(abs(pending.amount) * FLOOR_GAP_AMOUNTS, 2 * drift)
        gap <<= min(misses - EXACT_ATTEMPTS, 40)
        floor = max(expected.balance - gap, max(-pending.amount, 0))
        return WritePlan(expected, order, floor=floor, rate=rate)

    def _back_off(self, conflicts: int, deadline: float, attempt: int) -> bool:
        """Sleep a full-jitter exponential backoff before the next attempt after a
        TransactionConflict; False when the retry budget does not allow one more."""
        left = deadline - self._monotonic()
        if left <= 0 and attempt >= MIN_ATTEMPTS:
            return False
        cap = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**conflicts, max(left, 0.001))
        self._sleep(self._jitter(0, cap))
        return True

    def _counted(
        self, pending: PendingEntry, expected: AccountState, now: float, authoritative: bool
    ) -> RateStep | tuple[LedgerEntry, bool]:
        """The account's debit count with this debit, or RateLimited when the minute is full,
        unless the key already charged: then its replay (entry, True)."""
        limit = self._debits_per_minute
        assert limit is not None
        try:
            return RateStep(expected.rate.counting(now, limit), limit)
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
        plan: WritePlan | None = None,
    ) -> tuple[LedgerEntry, bool]:
        """The answer to an outcome that ends the operation: the entry and whether it is a
        replay, or the error it means. `plan` is the write that succeeded, if one did."""
        if isinstance(outcome, Written):
            assert plan is not None
            self._remember(account_id, plan.state_after(outcome.entry.amount))
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

    def _remember(self, account_id: str, state: AccountState) -> None:
        self._known[account_id] = state
        self._known.move_to_end(account_id)
        while len(self._known) > KNOWN_STATES:
            self._known.popitem(last=False)
