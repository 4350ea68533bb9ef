"""TransactWriteItems for the embedded AWS at a cost proportional to the transaction.

moto (5.2) backs up every table a transaction touches with `copy.deepcopy` before applying
it, and puts the copies back when the transaction is cancelled. Each debit, top-up and
registration therefore copies the whole ledger, users or sessions table: the local stack
slowed down as it filled and its memory climbed by hundreds of MiB a minute under a soak
(the copies' garbage fragments the heap faster than it is returned).

`install()` replaces that method with one that keeps DynamoDB's semantics and copies only
the items the transaction names:

1. Validation as DynamoDB does it: at most 100 actions, one action per entry, one action
   per item (ValidationException otherwise).
2. Every condition is evaluated against the state before the transaction. When any fails,
   nothing is written and the cancellation reasons come back in action order, with the old
   item when `ReturnValuesOnConditionCheckFailure` is `ALL_OLD`.
3. Then the writes, each item's previous state journalled first; a write that fails (an
   update expression that does not apply to the stored item, say) undoes the ones before it,
   drops the stream records they made, and cancels the transaction with the reason at its
   position.

The embedded server lets one request at a time into moto (creditml.devstack.aws), so
nothing can interleave between the checks and the writes. Installing is process-wide and
idempotent; tests/integration/test_devstack_transactions.py holds both implementations to
the same outcomes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    MockValidationException,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import Item

MAX_ACTIONS = 100
ACTIONS = ("ConditionCheck", "Put", "Delete", "Update")
Reason = tuple[str, str, dict[str, Any]] | tuple[None, None, None]
NO_REASON: Reason = (None, None, None)


@dataclass(frozen=True)
class _Action:
    kind: str
    request: dict[str, Any]
    table: str
    key: dict[str, Any]


def _actions(backend: DynamoDBBackend, entries: list[dict[str, Any]]) -> list[_Action]:
    if len(entries) > MAX_ACTIONS:
        raise TooManyTransactionsException()
    actions: list[_Action] = []
    seen: set[tuple[str, str]] = set()
    for entry in entries:
        if len(entry) != 1:
            raise TransactWriteSingleOpException
        kind, request = next(iter(entry.items()))
        if kind not in ACTIONS:
            raise MockValidationException(f"Unsupported transaction operation: {kind}")
        table = request["TableName"]
        if kind == "Put":
            schema = backend.get_table(table)
            attributes = request["Item"]
            key = {schema.hash_key_attr: attributes[schema.hash_key_attr]}
            if schema.range_key_attr is not None:
                key[schema.range_key_attr] = attributes[schema.range_key_attr]
        else:
            key = request["Key"]
        identity = (str(table), str(sorted(key.items())))
        if identity in seen:
            raise MultipleTransactionsException()
        seen.add(identity)
        actions.append(_Action(kind, request, table, key))
    return actions


def _check(backend: DynamoDBBackend, action: _Action) -> Reason:
    """Why `action`'s condition fails on the current state, or NO_REASON."""
    condition = action.request.get("ConditionExpression")
    if condition is None:
        return NO_REASON
    current = backend.get_item(action.table, action.key)
    holds = get_filter_expression(
        condition,
        action.request.get("ExpressionAttributeNames"),
        action.request.get("ExpressionAttributeValues"),
    ).expr(current)
    if holds:
        return NO_REASON
    wants_old = action.request.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD"
    old = current.to_json()["Attributes"] if wants_old and current is not None else {}
    return ("ConditionalCheckFailed", ConditionalCheckFailed().message, old)


def _write(backend: DynamoDBBackend, action: _Action) -> None:
    request = action.request
    if action.kind == "Put":
        backend.put_item(action.table, request["Item"])
    elif action.kind == "Delete":
        backend.delete_item(action.table, action.key)
    elif action.kind == "Update":
        backend.update_item(
            action.table,
            action.key,
            update_expression=request["UpdateExpression"],
            expression_attribute_names=request.get("ExpressionAttributeNames") or {},
            expression_attribute_values=request.get("ExpressionAttributeValues") or {},
        )


def _restore(backend: DynamoDBBackend, table: str, key: dict[str, Any], item: Item | None) -> None:
    if item is None:
        if backend.get_item(table, key) is not None:
            backend.delete_item(table, key)
    else:
        backend.put_item(table, item.to_json()["Attributes"])


def _stream_marks(backend: DynamoDBBackend, actions: list[_Action]) -> list[tuple[Any, int]]:
    """Each touched table's stream shard with its current length."""
    shards = {
        id(shard): shard
        for action in actions
        if (shard := backend.get_table(action.table).stream_shard)
    }
    return [(shard, len(shard.items)) for shard in shards.values()]


def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    """DynamoDB's TransactWriteItems on moto's tables, copying only the named items."""
    actions = _actions(self, transact_items)
    reasons = [_check(self, action) for action in actions]
    if any(code is not None for code, _, _ in reasons):
        raise TransactionCanceledException(reasons)
    journal: list[tuple[str, dict[str, Any], Item | None]] = []
    streams = _stream_marks(self, actions)
    try:
        for position, action in enumerate(actions):
            if action.kind == "ConditionCheck":
                continue
            journal.append(
                (action.table, action.key, copy.deepcopy(self.get_item(action.table, action.key)))
            )
            try:
                _write(self, action)
            except MockValidationException:
                raise
            except Exception as error:  # moto reports any other failure as the action's reason
                failed: list[Reason] = [NO_REASON] * len(actions)
                failed[position] = (type(error).__name__, str(error), {})
                raise TransactionCanceledException(failed) from error
    except Exception:
        for table, key, item in reversed(journal):
            _restore(self, table, key, item)
        for shard, length in streams:  # a cancelled transaction leaves no stream records
            del shard.items[length:]
        raise


def install() -> None:
    """Make every moto DynamoDB backend in this process use `transact_write_items`."""
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
