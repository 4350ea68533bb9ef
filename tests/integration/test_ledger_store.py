"""The ledger against moto's DynamoDB: debits, replays, two containers, verification, and a
property-based run of random operations."""

from __future__ import annotations

import itertools

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from creditml import cli
from creditml.billing.entries import (
    EntryKind,
    IdempotencySlot,
    LedgerEntry,
    PageStart,
    PendingEntry,
    WriteOutcome,
    WritePlan,
)
from creditml.billing.ledger import Ledger, request_hash
from creditml.billing.verify import verify_ledger
from creditml.errors import IdempotencyKeyReused, InsufficientCredits
from creditml.settings import get_settings
from creditml.storage.ledger import LedgerRepository
from creditml.storage.users import UserRepository


def _store() -> LedgerRepository:
    settings = get_settings()
    return LedgerRepository(settings.ledger_table, settings.users_table, settings.models_table)


def _fund(ledger: Ledger, account: str, amount: int, key: str = "fund") -> None:
    ledger.credit(
        account,
        amount,
        EntryKind.TOP_UP,
        actor_id=account,
        idempotency_key=key,
        request=request_hash("top_up", {"amount": amount}),
    )


@pytest.mark.usefixtures("aws")
def test_debit_below_zero_is_refused_and_changes_nothing() -> None:
    store = _store()
    ledger = Ledger(store)
    _fund(ledger, "u1", 12)
    ledger.debit("u1", 5, slot=IdempotencySlot.of("u1", "d1"), request="r1")
    with pytest.raises(InsufficientCredits) as caught:
        ledger.debit("u1", 8, slot=IdempotencySlot.of("u1", "d2"), request="r2")
    assert caught.value.extra == {"balance": 7, "required": 8}
    assert store.balance("u1") == 7
    assert [entry.amount for entry in store.entries("u1", 10, None)] == [-5, 12]


@pytest.mark.usefixtures("aws")
def test_replay_wins_over_insufficient_credits() -> None:
    # Given a debit that emptied the account
    ledger = Ledger(_store())
    _fund(ledger, "u1", 5)
    first, _ = ledger.debit("u1", 5, slot=IdempotencySlot.of("u1", "d1"), request="r1")
    # When it is replayed (from another container, which knows nothing)
    again, replayed = Ledger(_store()).debit(
        "u1", 5, slot=IdempotencySlot.of("u1", "d1"), request="r1"
    )
    # Then the original answer comes back, not a 402
    assert (again, replayed) == (first, True)
    with pytest.raises(IdempotencyKeyReused):
        Ledger(_store()).debit("u1", 4, slot=IdempotencySlot.of("u1", "d1"), request="r-other")


@pytest.mark.usefixtures("aws")
def test_two_containers_interleave_without_losing_a_write() -> None:
    store = _store()
    one, two = Ledger(store), Ledger(store)
    _fund(one, "u1", 100)
    two.debit(
        "u1", 10, slot=IdempotencySlot.of("u1", "a"), request="a"
    )  # two's guess (0/0) is stale
    one.debit(
        "u1", 20, slot=IdempotencySlot.of("u1", "b"), request="b"
    )  # one's guess (100/1) is stale
    two.debit("u1", 30, slot=IdempotencySlot.of("u1", "c"), request="c")
    entries = store.entries("u1", 10, None)
    # Newest first, each balance exact (no two writes overlapped in time)
    assert [(entry.amount, entry.balance_after, entry.balance_exact) for entry in entries] == [
        (-30, 40, True),
        (-20, 70, True),
        (-10, 90, True),
        (100, 100, True),
    ]
    sequences = [entry.sequence for entry in entries]
    assert sequences == sorted(sequences, reverse=True)
    assert len(set(sequences)) == 4
    assert verify_ledger(store.scan_accounts()).ok


@pytest.mark.usefixtures("aws")
def test_verify_finds_a_tampered_ledger(capsys: pytest.CaptureFixture[str]) -> None:
    ledger = Ledger(_store())
    _fund(ledger, "u1", 50)
    ledger.debit("u1", 5, slot=IdempotencySlot.of("u1", "d1"), request="r1")
    _fund(ledger, "u2", 9)
    assert cli.main(["ledger", "verify"]) == 0
    assert "2 accounts, 3 entries: OK" in capsys.readouterr().out

    # Someone edits u1's balance behind the ledger's back
    boto3.client("dynamodb").update_item(
        TableName=get_settings().ledger_table,
        Key={"account_id": {"S": "u1"}, "sk": {"S": "ACCOUNT"}},
        UpdateExpression="SET balance = :b",
        ExpressionAttributeValues={":b": {"N": "1000"}},
    )
    assert cli.main(["ledger", "verify"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH u1: balance 1000 != sum of ledger 45" in out
    assert "u2" not in out.replace("2 accounts", "")


_EXAMPLES = itertools.count()
OPERATION = st.one_of(
    st.tuples(st.just("credit"), st.integers(1, 50)),
    st.tuples(st.just("debit"), st.integers(1, 60)),
    st.tuples(st.just("replay"), st.integers(0, 1000)),
)


@pytest.mark.usefixtures("aws")
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(OPERATION, min_size=1, max_size=25))
def test_random_operations_keep_balance_equal_to_ledger_and_never_negative(
    operations: list[tuple[str, int]],
) -> None:
    # moto's state outlives each example: every example gets an account of its own.
    account = f"acct-{next(_EXAMPLES)}"
    store = _store()
    containers = [Ledger(store), Ledger(store)]
    done: list[tuple[str, int, str]] = []  # (kind, amount, key) that succeeded
    expected = 0
    for index, (operation, value) in enumerate(operations):
        ledger = containers[index % 2]
        if operation == "replay":
            if not done:
                continue
            kind, amount, key = done[value % len(done)]
            if kind == "credit":
                _, replayed = ledger.credit(
                    account,
                    amount,
                    EntryKind.TOP_UP,
                    actor_id=account,
                    idempotency_key=key,
                    request=f"{kind}:{amount}",
                )
            else:
                _, replayed = ledger.debit(
                    account,
                    amount,
                    slot=IdempotencySlot.of(account, key),
                    request=f"{kind}:{amount}",
                )
            assert replayed
            continue
        key = f"k{index}"
        if operation == "credit":
            ledger.credit(
                account,
                value,
                EntryKind.TOP_UP,
                actor_id=account,
                idempotency_key=key,
                request=f"credit:{value}",
            )
            expected += value
            done.append(("credit", value, key))
        elif operation == "debit":
            try:
                ledger.debit(
                    account, value, slot=IdempotencySlot.of(account, key), request=f"debit:{value}"
                )
            except InsufficientCredits as refused:
                assert refused.extra == {"balance": expected, "required": value}  # noqa: PT017
                assert value > expected
            else:
                expected -= value
                done.append(("debit", value, key))
        assert store.balance(account) == expected >= 0
    entries = store.entries(account, 100, None)
    assert sum(entry.amount for entry in entries) == store.balance(account) == expected
    report = verify_ledger(
        (acct, state, items) for acct, state, items in store.scan_accounts() if acct == account
    )
    assert report.ok, report.mismatches


@pytest.mark.usefixtures("aws")
def test_users_table_is_consulted_for_grants() -> None:
    # A grant's target must exist in the users table (ConditionCheck in the transaction).
    from datetime import UTC, datetime

    from creditml.auth.roles import Role
    from creditml.users import User

    UserRepository(get_settings().users_table).create(
        User(id="real", email="r@example.com", role=Role.USER, created_at=datetime.now(UTC)), "h"
    )
    ledger = Ledger(_store())
    entry, _ = ledger.credit(
        "real", 5, EntryKind.GRANT, actor_id="admin", idempotency_key="g", request="g"
    )
    assert entry.balance_after == 5


@pytest.mark.usefixtures("aws")
def test_credits_leave_the_prediction_count_on_the_account_item() -> None:
    # Given a debit counted in the current minute
    store = _store()
    metered = Ledger(store, debits_per_minute=600, clock=lambda: 60.0 * 29_000_000 + 1)
    _fund(metered, "u1", 10)
    metered.debit("u1", 1, slot=IdempotencySlot.of("u1", "d1"), request="r1")
    # When credits arrive (from another container, which does not count)
    _fund(Ledger(store), "u1", 5, key="fund-2")
    # Then the count stays as the debit left it
    state = store.state("u1")
    assert (state.balance, state.seq) == (14, 3)
    assert (state.rate.window, state.rate.count) == (29_000_000, 1)


@pytest.mark.usefixtures("aws")
def test_entries_that_share_a_sequence_are_each_listed_once_across_pages() -> None:
    # Two overlapping writes can stamp the same sequence (one chance in a thousand in the
    # same millisecond): give three entries one sequence and page one entry at a time
    store = _store()
    ledger = Ledger(store)
    for key in "abcd":
        _fund(ledger, "u1", 1, key=key)
    ids = [entry.id for entry in store.entries("u1", 10, None)]
    table = boto3.resource("dynamodb").Table(get_settings().ledger_table)
    for entry_id in ids[:3]:
        table.update_item(
            Key={"account_id": "u1", "sk": f"ENTRY#{entry_id}"},
            UpdateExpression="SET entry_seq = :same",
            ExpressionAttributeValues={":same": 1_796_000_000_000_500},
        )
    listed, start = [], None
    while True:
        page = store.entries("u1", 1, start)
        if not page:
            break
        listed += [entry.id for entry in page]
        start = PageStart.after(page, start)
    assert sorted(listed) == sorted(ids)
    assert len(listed) == 4


class _Overlapped:
    """A ledger store where another container credits the account while each of the first
    `times` writes is on its way (so a write misses twice and turns bounded)."""

    def __init__(self, store: LedgerRepository, other: Ledger, times: int) -> None:
        self.store, self.other, self.left = store, other, times

    def write(self, pending: PendingEntry, plan: WritePlan) -> WriteOutcome:
        if self.left:
            self.left -= 1
            self.other.credit(
                "u1",
                1,
                EntryKind.TOP_UP,
                actor_id="u1",
                idempotency_key=f"meddle-{self.left}",
                request=request_hash("top_up", {"amount": 1}),
            )
        return self.store.write(pending, plan)

    def slot(self, actor_id: str, entry_id: str) -> tuple[LedgerEntry, str] | None:
        return self.store.slot(actor_id, entry_id)


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize("then", [-15, 10_000])
def test_a_write_after_a_bounded_one_keeps_the_books(then: int) -> None:
    # Given a debit that other writers overlapped twice: bounded, with a lower bound
    store = _store()
    other = Ledger(store)
    _fund(other, "u1", 100)
    ledger = Ledger(_Overlapped(store, other, times=2))
    bounded, _ = ledger.debit("u1", 10, slot=IdempotencySlot.of("u1", "d1"), request="r1")
    assert not bounded.balance_exact
    assert bounded.balance_after <= store.balance("u1") == 92
    # when the same container writes again, alone, its write is exact and right
    if then < 0:
        entry, _ = ledger.debit("u1", -then, slot=IdempotencySlot.of("u1", "d2"), request="r2")
    else:
        entry, _ = ledger.credit(
            "u1", then, EntryKind.TOP_UP, actor_id="u1", idempotency_key="t2", request="r2"
        )
    assert (entry.balance_after, entry.balance_exact) == (92 + then, True)
    assert store.balance("u1") == 92 + then
    report = verify_ledger(store.scan_accounts())
    assert report.ok, report.mismatches
