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
    WritePlan,
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


class ScriptedStore:
    """Answers writes from a script; records each attempt's plan, what it expected and the
    debit count it set. `slots` answers slot reads, which it counts. `tick` is called on
    every write (a fake clock's step)."""

    def __init__(self, *script: WriteOutcome | None) -> None:
        self.script = list(script)
        self.plans: list[WritePlan] = []
        self.slots: dict[str, tuple[LedgerEntry, str]] = {}
        self.slot_reads = 0
        self.tick = lambda: None

    @property
    def expected(self) -> list[AccountState]:
        return [plan.expected for plan in self.plans]

    @property
    def rates(self) -> list[MinuteCount | None]:
        return [plan.rate.count if plan.rate else None for plan in self.plans]

    def write(self, pending: PendingEntry, plan: WritePlan) -> WriteOutcome:
        self.tick()
        self.plans.append(plan)
        outcome = self.script.pop(0) if self.script else None
        return outcome or Written(plan.entry(pending, datetime.now(UTC)))

    def slot(self, actor_id: str, entry_id: str) -> tuple[LedgerEntry, str] | None:
        self.slot_reads += 1
        return self.slots.get(entry_id)


class Clock:
    """A fake monotonic clock that sleeping advances."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.now = 1000.0

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


def _ledger(store: ScriptedStore, clock: Clock | None = None) -> Ledger:
    clock = clock or Clock()
    return Ledger(
        store, sleep=clock.sleep, jitter=lambda low, high: high, monotonic=clock.monotonic
    )


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
    assert (entry.balance_after, entry.balance_exact, replayed) == (45, True, False)
    # The second write already expected the state the first one left: no retry, no read.
    first = store.plans[0].order
    assert store.expected == [AccountState(0, 0), AccountState(50, 1, last_order=first)]
    assert entry.sequence > first


def test_stale_guess_is_corrected_from_the_failed_write() -> None:
    store = ScriptedStore(StaleVersion(AccountState(balance=70, seq=4, last_order=4)))
    entry, _ = _ledger(store).debit("u1", 20, slot=IdempotencySlot.of("u1", "k"), request="h")
    assert (entry.balance_after, entry.balance_exact) == (50, True)
    assert store.expected == [AccountState(0, 0), AccountState(70, 4, last_order=4)]
    assert [plan.exact for plan in store.plans] == [True, True]


def test_a_write_overlapped_twice_turns_bounded_with_a_lower_bound() -> None:
    # Given an account that moves on under every exact attempt (other writers overlap)
    store = ScriptedStore(
        StaleVersion(AccountState(balance=1000, seq=4)),
        StaleVersion(AccountState(balance=990, seq=6)),
    )
    entry, _ = _ledger(store).debit("u1", 5, slot=IdempotencySlot.of("u1", "k"), request="h")
    # the third attempt adds to the balance on the condition balance >= floor, and reports
    # the floor's lower bound, flagged as such
    third = store.plans[2]
    assert third.floor == 990 - 5 * ledger_module.FLOOR_GAP_AMOUNTS
    assert (entry.balance_after, entry.balance_exact) == (third.floor - 5, False)


def test_a_missed_floor_doubles_its_gap_and_never_goes_below_the_price() -> None:
    stale = [StaleVersion(AccountState(balance=200, seq=n)) for n in range(6)]
    store = ScriptedStore(*stale)
    _ledger(store).debit("u1", 5, slot=IdempotencySlot.of("u1", "k"), request="h")
    assert [plan.floor for plan in store.plans] == [None, None, 160, 120, 40, 5, 5]


def test_a_bounded_credit_never_has_a_floor_below_zero() -> None:
    store = ScriptedStore(*[StaleVersion(AccountState(balance=10, seq=n)) for n in range(3)])
    entry, _ = _ledger(store).credit(
        "u1", 50, EntryKind.TOP_UP, actor_id="u1", idempotency_key="k", request="h"
    )
    assert store.plans[-1].floor == 0
    assert (entry.balance_after, entry.balance_exact) == (50, False)


def test_sequences_follow_the_clock_and_always_pass_the_latest_entry() -> None:
    entry_id = "0000000a" + "0" * 24
    assert AccountState(0, 0).next_order(1_800_000_000.5, entry_id) == 1_800_000_000_500_010
    # A clock behind the latest entry still orders after it
    latest = 1_800_000_000_900_123
    assert AccountState(0, 3, last_order=latest).next_order(1_800_000_000.5, entry_id) == (
        1_800_000_000_901_010
    )
    # Accounts numbered 1..n before sequences followed the clock: new entries come after
    assert AccountState(0, 7, last_order=7).next_order(1_800_000_000.5, entry_id) > 7
    assert AccountState(0, 0).next_order(4_000_000_000, entry_id) < 2**53  # exact in JSON


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
    assert clock.sleeps == [0.01, 0.02, 0.04]  # jitter stubbed to its upper bound


def test_conflict_retries_are_bounded_in_time_not_count() -> None:
    clock = Clock()
    store = ScriptedStore(*[Contended()] * 500)
    with pytest.raises(LedgerBusy):
        _ledger(store, clock).credit(
            "u1", 5, EntryKind.TOP_UP, actor_id="u1", idempotency_key="k", request="h"
        )
    # It kept trying for the whole budget (far more than a handful of attempts), never
    # sleeping past it, each sleep capped
    assert sum(clock.sleeps) == pytest.approx(ledger_module.RETRY_BUDGET_SECONDS)
    assert len(clock.sleeps) > 10
    assert max(clock.sleeps) <= ledger_module.BACKOFF_CAP_SECONDS


def test_a_conflict_after_a_long_wait_is_retried_until_the_budget_ends() -> None:
    clock = Clock()
    store = ScriptedStore(Contended(), Contended())
    store.tick = lambda: clock.sleep(1.0)  # each write takes a second
    entry, _ = _ledger(store, clock).credit(
        "u1", 5, EntryKind.TOP_UP, actor_id="u1", idempotency_key="k", request="h"
    )
    assert entry.balance_after == 5  # the third write started inside the 3 s budget


def test_endless_staleness_is_bounded_in_time() -> None:
    clock = Clock()
    store = ScriptedStore(*[StaleVersion(AccountState(100, n)) for n in range(500)])
    store.tick = lambda: clock.sleep(0.05)
    with pytest.raises(LedgerBusy):
        _ledger(store, clock).debit("u1", 5, slot=IdempotencySlot.of("u1", "k"), request="h")
    assert len(store.plans) == pytest.approx(ledger_module.RETRY_BUDGET_SECONDS / 0.05, abs=1)


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


def test_slow_writes_still_get_a_few_attempts() -> None:
    # Each write takes longer than the whole budget (a loaded machine): the stale guess is
    # still corrected, and conflicts still get their retries
    clock = Clock()
    store = ScriptedStore(StaleVersion(AccountState(50, 3)), Contended())
    store.tick = lambda: clock.sleep(5.0)
    entry, _ = _ledger(store, clock).debit("u1", 5, slot=IdempotencySlot.of("u1", "k"), request="h")
    assert entry.balance_after == 45
    assert len(store.plans) == 3


def test_a_fast_moving_balance_widens_the_first_floor() -> None:
    # The balance fell by 300 during the exact retry: many writers are at work, so the
    # bounded write leaves room for as much again (and succeeds at once)
    store = ScriptedStore(
        StaleVersion(AccountState(balance=1000, seq=4)),
        StaleVersion(AccountState(balance=700, seq=300)),
    )
    _ledger(store).debit("u1", 1, slot=IdempotencySlot.of("u1", "k"), request="h")
    assert [plan.floor for plan in store.plans] == [None, None, 100]
