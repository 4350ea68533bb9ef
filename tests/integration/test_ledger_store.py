"""The ledger against moto's DynamoDB: debits, replays, two containers, verification, and a
property-based run of random operations."""

from __future__ import annotations

import itertools

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from creditml import cli
from creditml.billing.entries import EntryKind, IdempotencySlot
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
    assert [(entry.sequence, entry.balance_after) for entry in entries] == [
        (4, 40),
        (3, 70),
        (2, 90),
        (1, 100),
    ]
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
