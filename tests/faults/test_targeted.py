"""Each fault, aimed at the one AWS call where it hurts most, on each money path."""

from __future__ import annotations

from typing import Any

import pytest

from creditml.billing.entries import IdempotencySlot
from tests.faults.harness import (
    BIG_ROWS,
    PRICE,
    START,
    assert_clear_failure,
    assert_ledger_consistent,
    fresh_container,
    ledger_entries,
    new_key,
)
from tests.faults.injector import (
    CONFLICT,
    CONNECTION_LOST,
    INTERNAL,
    KILLED,
    KMS_DISABLED,
    KMS_INTERNAL,
    KMS_THROTTLED,
    LOST_REPLY_RETRIED,
    REQUEST_LIMIT,
    S3_INTERNAL,
    S3_SLOW_DOWN,
    THROTTLED,
    TIMEOUT_AFTER_WRITE,
    ContainerKilled,
    Fault,
    FaultPlan,
    faults,
)

WRITE = ("dynamodb", "TransactWriteItems")
BEFORE_WRITE = [THROTTLED, REQUEST_LIMIT, INTERNAL]
AFTER_WRITE = [TIMEOUT_AFTER_WRITE, CONNECTION_LOST]


def _entry_id(actor_id: str, key: str) -> str:
    return IdempotencySlot.of(actor_id, key).entry_id


# --- top-ups and grants -------------------------------------------------------------------


@pytest.mark.parametrize("fault", BEFORE_WRITE, ids=lambda fault: fault.name)
@pytest.mark.parametrize("path", ["top_up", "grant"])
def test_a_credit_failing_before_the_write_changes_nothing(
    world: dict[str, Any], path: str, fault: Fault
) -> None:
    money, user, admin = world["money"], world["user"], world["admin"]
    key = new_key()

    def credit() -> Any:
        if path == "grant":
            return money.grant(admin["access"], user["id"], 7, key)
        return money.top_up(user["access"], 7, key)

    with faults() as plan:
        plan.fail(*WRITE, fault)
        answer = credit()
    assert plan.fired_names() == [fault.name]
    assert_clear_failure(answer, retryable=True)
    assert money.balance(user["access"]) == START

    retried = credit()
    assert retried.status == 201, retried
    assert money.balance(user["access"]) == START + 7
    assert_ledger_consistent()


def test_a_single_transaction_conflict_is_absorbed(world: dict[str, Any]) -> None:
    money, user = world["money"], world["user"]
    with faults() as plan:
        plan.fail(*WRITE, CONFLICT)
        answer = money.top_up(user["access"], 5, new_key())
    assert plan.fired_names() == ["conflict"]
    assert answer.status == 201, answer
    assert money.balance(user["access"]) == START + 5
    assert_ledger_consistent()


def test_endless_transaction_conflicts_are_503_ledger_busy(world: dict[str, Any]) -> None:
    money, user = world["money"], world["user"]
    key = new_key()
    with faults() as plan:
        plan.fail(*WRITE, CONFLICT, times=100)
        answer = money.predict(user["access"], world["model_id"], 1, key)
    assert len(plan.fired) > 1
    assert_clear_failure(answer, retryable=True)
    assert answer.body["code"] == "ledger_busy"
    assert money.balance(user["access"]) == START
    retried = money.predict(user["access"], world["model_id"], 1, key)
    assert retried.status == 200, retried
    assert money.balance(user["access"]) == START - PRICE
    assert_ledger_consistent()


@pytest.mark.parametrize("fault", AFTER_WRITE, ids=lambda fault: fault.name)
def test_a_top_up_whose_reply_is_lost_is_credited_once(world: dict[str, Any], fault: Fault) -> None:
    money, user = world["money"], world["user"]
    key = new_key()
    with faults() as plan:
        plan.fail(*WRITE, fault)
        answer = money.top_up(user["access"], 9, key)
    assert plan.fired_names() == [fault.name]
    # The credit happened, the reply did not: the client is told to retry.
    assert_clear_failure(answer, retryable=True)
    assert money.balance(user["access"]) == START + 9

    replay = money.top_up(user["access"], 9, key)
    assert replay.status == 201, replay
    assert replay.body["id"] == _entry_id(user["id"], key)
    assert money.balance(user["access"]) == START + 9
    assert_ledger_consistent()


# --- predictions: the debit -----------------------------------------------------------------


@pytest.mark.parametrize("rows", [1, BIG_ROWS], ids=["inline", "stored_outputs"])
@pytest.mark.parametrize("fault", BEFORE_WRITE, ids=lambda fault: fault.name)
def test_a_prediction_whose_debit_fails_costs_nothing(
    world: dict[str, Any], fault: Fault, rows: int
) -> None:
    money, user = world["money"], world["user"]
    key = new_key()
    with faults() as plan:
        plan.fail(*WRITE, fault)
        answer = money.predict(user["access"], world["model_id"], rows, key)
    assert plan.fired_names() == [fault.name]
    assert_clear_failure(answer, retryable=True)
    assert money.balance(user["access"]) == START
    assert _entry_id(user["id"], key) not in ledger_entries()

    retried = money.predict(user["access"], world["model_id"], rows, key)
    assert retried.status == 200, retried
    assert not retried.replayed
    assert money.balance(user["access"]) == START - rows * PRICE
    assert_ledger_consistent()


@pytest.mark.parametrize("rows", [1, BIG_ROWS], ids=["inline", "stored_outputs"])
@pytest.mark.parametrize("fault", AFTER_WRITE, ids=lambda fault: fault.name)
def test_a_prediction_whose_reply_is_lost_replays_its_first_result(
    world: dict[str, Any], fault: Fault, rows: int
) -> None:
    money, user = world["money"], world["user"]
    key = new_key()
    with faults() as plan:
        plan.fail(*WRITE, fault)
        answer = money.predict(user["access"], world["model_id"], rows, key)
    assert plan.fired_names() == [fault.name]
    assert_clear_failure(answer, retryable=True)
    charged = START - rows * PRICE
    assert money.balance(user["access"]) == charged  # debited, reply lost

    replay = money.predict(user["access"], world["model_id"], rows, key)
    assert replay.status == 200, replay
    assert replay.replayed
    assert replay.body["prediction_id"] == _entry_id(user["id"], key)
    assert len(replay.body["outputs"]) == rows
    assert (replay.body["cost"], replay.body["balance"]) == (rows * PRICE, charged)
    assert money.balance(user["access"]) == charged
    assert_ledger_consistent()


@pytest.mark.parametrize("rows", [1, BIG_ROWS], ids=["inline", "stored_outputs"])
def test_a_process_killed_between_debit_and_reply_replays_in_a_new_container(
    world: dict[str, Any], rows: int
) -> None:
    money, user = world["money"], world["user"]
    key = new_key()
    with faults(FaultPlan().fail(*WRITE, KILLED)), pytest.raises(ContainerKilled):
        money.predict(user["access"], world["model_id"], rows, key)
    charged = START - rows * PRICE
    fresh_container()
    assert money.balance(user["access"]) == charged

    replay = money.predict(user["access"], world["model_id"], rows, key)
    assert replay.status == 200, replay
    assert replay.replayed
    assert replay.body["prediction_id"] == _entry_id(user["id"], key)
    assert len(replay.body["outputs"]) == rows
    assert money.balance(user["access"]) == charged
    assert_ledger_consistent()


@pytest.mark.parametrize("rows", [1, BIG_ROWS], ids=["inline", "stored_outputs"])
def test_a_debit_retried_by_the_sdk_after_a_lost_reply_delivers_once(
    world: dict[str, Any], rows: int
) -> None:
    # The transaction reached DynamoDB; its reply timed out; botocore sent it again, which
    # found the entry already written. The caller must get the result, charged once.
    money, user = world["money"], world["user"]
    key = new_key()
    with faults() as plan:
        plan.fail(*WRITE, LOST_REPLY_RETRIED)
        answer = money.predict(user["access"], world["model_id"], rows, key)
    assert plan.fired_names() == ["lost_reply_retried"]
    assert answer.status == 200, answer
    assert len(answer.body["outputs"]) == rows
    assert money.balance(user["access"]) == START - rows * PRICE

    replay = money.predict(user["access"], world["model_id"], rows, key)
    assert replay.status == 200, replay
    assert replay.body["outputs"] == answer.body["outputs"]
    assert money.balance(user["access"]) == START - rows * PRICE
    assert_ledger_consistent()


# --- predictions: loading the model in a new container ----------------------------------------

LOAD_FAULTS = [
    ("dynamodb", "GetItem", THROTTLED),  # the model's head, then its small part
    ("dynamodb", "GetItem", INTERNAL),
    ("s3", "GetObject", S3_SLOW_DOWN),  # the big part
    ("s3", "GetObject", S3_INTERNAL),
    ("kms", "Decrypt", KMS_THROTTLED),  # the data key
    ("kms", "Decrypt", KMS_INTERNAL),
    ("kms", "Decrypt", KMS_DISABLED),
]


@pytest.mark.parametrize(
    ("service", "operation", "fault"),
    LOAD_FAULTS,
    ids=[f"{s}.{o}.{f.name}" for s, o, f in LOAD_FAULTS],
)
def test_a_model_that_cannot_be_loaded_costs_nothing(
    world: dict[str, Any], service: str, operation: str, fault: Fault
) -> None:
    money, user = world["money"], world["user"]
    key = new_key()
    fresh_container()
    with faults() as plan:
        plan.fail(service, operation, fault)
        answer = money.predict(user["access"], world["model_id"], 1, key)
    assert plan.fired_names() == [fault.name]
    assert_clear_failure(answer, retryable=fault.retryable)
    assert money.balance(user["access"]) == START
    assert _entry_id(user["id"], key) not in ledger_entries()

    retried = money.predict(user["access"], world["model_id"], 1, key)
    assert retried.status == 200, retried
    assert money.balance(user["access"]) == START - PRICE
    assert_ledger_consistent()
