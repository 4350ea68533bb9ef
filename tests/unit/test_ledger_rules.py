"""The ledger's decisions, against a scripted store (no AWS): replays, reuse, insufficient
credits, stale versions, and bounded, jittered retries on TransactionConflict."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from creditml.billing import ledger as ledger_module
from creditml.billing.entries import (
    AccountState,
    Contended,
    EntryKind,
    IdempotencySlot,
    LedgerEntry,
    PendingEntry,
    SlotTaken,
    StaleVersion,
    UserMissing,
    WriteOutcome,
    Written,
    request_fingerprint,
)
from creditml.billing.ledger import Ledger, request_hash
from creditml.errors import (
    IdempotencyKeyReused,
    InsufficientCredits,
    LedgerBusy,
    RateLimited,
    UserNotFound,
)
from creditml.limits import MinuteCount


def _entry(pending: PendingEntry, expected: AccountState) -> LedgerEntry:
    return pending.applied_to(expected, datetime.now(UTC))


class ScriptedStore:
    """Answers writes from a script; records what was expected (and the debit count set)
    each time. `slots` answers slot reads, which it counts."""

    def __init__(self, *script: WriteOutcome | None) -> None:
        self.script = list(script)
        self.expected: list[AccountState] = []
        self.rates: list[MinuteCount | None] = []
        self.slots: dict[str, tuple[LedgerEntry, str]] = {}
        self.slot_reads = 0

    def write(
        self, pending: PendingEntry, expected: AccountState, rate: MinuteCount | None = None
    ) -> WriteOutcome:
        self.expected.append(expected)
        self.rates.append(rate)
        outcome = self.script.pop(0) if self.script else None
        return outcome or Written(_entry(pending, expected))

    def slot(self, actor_id: str, entry_id: str) -> tuple[LedgerEntry, str] | None:
        self.slot_reads += 1
        return self.slots.get(entry_id)


class Clock:
    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def _ledger(store: ScriptedStore, clock: Clock | None = None) -> Ledger:
    clock = clock or Clock()
    return Ledger(store, sleep=clock.sleep, jitter=lambda low, high: high)


def _entry_id(actor: str, key: str) -> str:
    return IdempotencySlot.of(actor, key).entry_id


def test_entry_ids_are_per_actor_and_key() -> None:
    assert _entry_id("u1", "k") == _entry_id("u1", "k")
    assert _entry_id("u1", "k") != _entry_id("u2", "k")
    assert _entry_id("u1", "k") != _entry_id("u1", "k2")
    assert len(_entry_id("u1", "k")) == 32


def test_request_hash_ignores_member_order_but_not_values() -> None:
    assert request_hash("op", {"a": 1, "b": 2}) == request_hash("op", {"b": 2, "a": 1})
    assert request_hash("op", {"a": 1}) != request_hash("op", {"a": 2})
    assert request_hash("op", {"a": 1}) != request_hash("other", {"a": 1})


def test_one_fingerprint_scheme_for_parsed_and_raw_bodies() -> None:
    # A top-up's parsed body and a prediction's raw bytes go through the same function.
    assert request_hash("op", {"b": 2, "a": 1}) == request_fingerprint("op", b'{"a":1,"b":2}')
    assert request_fingerprint("op", b"x") != request_fingerprint("op", b"x ")


def test_a_debit_belongs_to_the_account_holder() -> None:
    with pytest.raises(ValueError, match="account holder"):
        _ledger(ScriptedStore()).debit("u1", 5, slot=IdempotencySlot.of("u2", "k"), request="h")


def test_a_warm_account_is_one_write() -> None:
    store = ScriptedStore()
    ledger = _ledger(store)
    ledger.credit("u1", 50, EntryKind.GRANT, actor_id="admin", idempotency_key="k1", request="h")
    entry, replayed = ledger.debit("u1", 5, slot=IdempotencySlot.of("u1", "k2"), request="h2")
    assert (entry.balance_after, entry.sequence, replayed) == (45, 2, False)
    # The second write already expected the state the first one left: no retry, no read.
    assert store.expected == [AccountState(0, 0), AccountState(50, 1)]


def test_stale_guess_is_corrected_from_the_failed_write() -> None:
    store = ScriptedStore(StaleVersion(AccountState(balance=70, seq=4)))
    entry, _ = _ledger(store).debit("u1", 20, slot=IdempotencySlot.of("u1", "k"), request="h")
    assert (entry.balance_after, entry.sequence) == (50, 5)
    assert store.expected == [AccountState(0, 0), AccountState(70, 4)]


def test_insufficient_credits_carry_balance_and_required() -> None:
    store = ScriptedStore(StaleVersion(AccountState(balance=3, seq=2)))
    with pytest.raises(InsufficientCredits) as caught:
        _ledger(store).debit("u1", 5, slot=IdempotencySlot.of("u1", "k"), request="h")
    assert caught.value.extra == {"balance": 3, "required": 5}
    assert len(store.expected) == 1


def _stored_debit() -> LedgerEntry:
    """A debit already written under key "k" (what a taken slot holds)."""
    return LedgerEntry(
        id="e",
        account_id="u1",
        sequence=1,
        kind=EntryKind.DEBIT,
        amount=-5,
        balance_after=5,
        created_at=datetime.now(UTC),
        actor_id="u1",
        idempotency_key="k",
    )


def test_same_key_same_request_replays_the_original() -> None:
    original = _stored_debit()
    entry, replayed = _ledger(ScriptedStore(SlotTaken(original, "h"))).debit(
        "u1", 5, slot=IdempotencySlot.of("u1", "k"), request="h"
    )
    assert (entry, replayed) == (original, True)


def test_same_key_other_request_is_refused() -> None:
    original = _stored_debit()
    with pytest.raises(IdempotencyKeyReused):
        _ledger(ScriptedStore(SlotTaken(original, "h"))).debit(
            "u1", 7, slot=IdempotencySlot.of("u1", "k"), request="other"
        )


def test_grant_to_missing_user_is_user_not_found() -> None:
    with pytest.raises(UserNotFound):
        _ledger(ScriptedStore(UserMissing())).credit(
            "ghost", 5, EntryKind.GRANT, actor_id="admin", idempotency_key="k", request="h"
        )


def test_conflicts_are_retried_with_growing_jittered_backoff() -> None:
    clock = Clock()
    store = ScriptedStore(Contended(), Contended(), Contended())
    entry, _ = _ledger(store, clock).credit(
        "u1", 5, EntryKind.TOP_UP, actor_id="u1", idempotency_key="k", request="h"
    )
    assert entry.balance_after == 5
    assert clock.sleeps == [0.02, 0.04, 0.08]  # jitter stubbed to its upper bound


def test_conflict_retries_are_bounded() -> None:
    clock = Clock()
    store = ScriptedStore(*[Contended()] * 50)
    with pytest.raises(LedgerBusy):
        _ledger(store, clock).credit(
            "u1", 5, EntryKind.TOP_UP, actor_id="u1", idempotency_key="k", request="h"
        )
    assert len(clock.sleeps) == ledger_module.MAX_CONFLICT_RETRIES
    assert max(clock.sleeps) <= ledger_module.BACKOFF_CAP_SECONDS


def test_endless_staleness_is_bounded() -> None:
    store = ScriptedStore(*[StaleVersion(AccountState(100, n)) for n in range(100)])
    with pytest.raises(LedgerBusy):
        _ledger(store).debit("u1", 5, slot=IdempotencySlot.of("u1", "k"), request="h")
    assert len(store.expected) == ledger_module.MAX_ATTEMPTS


@pytest.mark.parametrize("amount", [0, 1.5, True, "5"])
def test_only_non_zero_integers_move(amount: object) -> None:
    with pytest.raises(ValueError, match="integer"):
        _ledger(ScriptedStore()).credit(
            "u1",
            amount,
            EntryKind.TOP_UP,
            actor_id="u1",  # type: ignore[arg-type]
            idempotency_key="k",
            request="h",
        )


def test_debit_kind_cannot_be_credited() -> None:
    with pytest.raises(ValueError, match="not a credit"):
        _ledger(ScriptedStore()).credit(
            "u1", 5, EntryKind.DEBIT, actor_id="u1", idempotency_key="k", request="h"
        )


# ---- The prediction rate limit (DESIGN §12), counted on the account item -------------------

MINUTE = 29_000_000  # minutes since the epoch: a fixed "now" for these tests
NOW = MINUTE * 60 + 45.2  # 45.2 s into that minute


def _metered(store: ScriptedStore, limit: int = 3, now: float = NOW) -> Ledger:
    return Ledger(
        store,
        sleep=Clock().sleep,
        jitter=lambda low, high: high,
        debits_per_minute=limit,
        clock=lambda: now,
    )


def _debit(ledger: Ledger, key: str, amount: int = 1) -> tuple[LedgerEntry, bool]:
    return ledger.debit("u1", amount, slot=IdempotencySlot.of("u1", key), request=f"r-{key}")


def test_each_debit_sets_the_minute_count_in_its_own_write() -> None:
    store = ScriptedStore(StaleVersion(AccountState(100, 4, MinuteCount(MINUTE - 1, 3))))
    ledger = _metered(store)
    _debit(ledger, "a")
    _debit(ledger, "b")
    # A count of an earlier minute starts over; the write after the stale one is exact.
    assert store.rates == [MinuteCount(MINUTE, 1), MinuteCount(MINUTE, 1), MinuteCount(MINUTE, 2)]
    assert len(store.expected) == 3
    assert store.slot_reads == 0


def test_a_full_minute_refuses_before_writing_with_seconds_to_the_next_minute() -> None:
    store = ScriptedStore()
    ledger = _metered(store)
    for key in "abc":
        _debit(ledger, key)
    with pytest.raises(RateLimited) as caught:
        _debit(ledger, "d")
    assert caught.value.retry_after == 15  # 45.2 s into the minute
    assert caught.value.extra == {"retry_after": 15}
    assert len(store.expected) == 3  # nothing written for the refused debit
    assert store.slot_reads == 1  # was "d" a replay? (only on the refusal path)


def test_the_next_minute_admits_again() -> None:
    store = ScriptedStore()
    now = [NOW]
    ledger = Ledger(store, debits_per_minute=2, clock=lambda: now[0])
    _debit(ledger, "a")
    _debit(ledger, "b")
    with pytest.raises(RateLimited):
        _debit(ledger, "c")
    now[0] = (MINUTE + 1) * 60
    entry, _ = _debit(ledger, "c")
    assert entry.balance_after == -3  # (the scripted store does not check balances)
    assert store.rates[-1] == MinuteCount(MINUTE + 1, 1)


def test_a_stale_state_that_is_full_is_rate_limited_without_a_slot_read() -> None:
    full = AccountState(100, 9, MinuteCount(MINUTE, 3))
    store = ScriptedStore(StaleVersion(full))
    with pytest.raises(RateLimited):
        _debit(_metered(store), "a")
    assert len(store.expected) == 1
    assert store.slot_reads == 0


def test_rate_limit_wins_over_insufficient_credits() -> None:
    # Given an account that is both empty and at its limit (told by the item's old values)
    store = ScriptedStore(StaleVersion(AccountState(0, 9, MinuteCount(MINUTE, 3))))
    with pytest.raises(RateLimited):
        _debit(_metered(store), "a", amount=5)
    # and one that is empty but under the limit
    store = ScriptedStore(StaleVersion(AccountState(0, 9, MinuteCount(MINUTE, 2))))
    with pytest.raises(InsufficientCredits):
        _debit(_metered(store), "a", amount=5)


def test_a_replay_is_never_rate_limited() -> None:
    store = ScriptedStore()
    ledger = _metered(store, limit=1)
    first, _ = _debit(ledger, "a")
    store.slots[first.id] = (first, "r-a")
    again, replayed = _debit(ledger, "a")
    assert (again, replayed) == (first, True)
    with pytest.raises(IdempotencyKeyReused):  # the same key for another request: still 409
        ledger.debit("u1", 1, slot=IdempotencySlot.of("u1", "a"), request="other")
    assert len(store.expected) == 1


def test_credits_are_not_counted_and_keep_the_count() -> None:
    store = ScriptedStore()
    ledger = _metered(store, limit=1)
    _debit(ledger, "a")
    ledger.credit("u1", 5, EntryKind.TOP_UP, actor_id="u1", idempotency_key="t", request="h")
    assert store.rates == [MinuteCount(MINUTE, 1), None]
    with pytest.raises(RateLimited):  # the credit did not reset the debit count
        _debit(ledger, "b")


def test_unmetered_ledger_counts_nothing() -> None:
    store = ScriptedStore()
    for key in "abcdef":
        _debit(_ledger(store), key)
    assert set(store.rates) == {None}
