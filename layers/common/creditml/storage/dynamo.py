"""The one adapter over pynamodb's transaction and condition-failure shapes.

Repositories name each item they add to a transaction ("entry", "account", …) and read a
cancellation by those names: nothing decodes DynamoDB's positional `CancellationReasons`
or string-matches error codes anywhere else, and no private pynamodb API is used outside
this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from pynamodb.exceptions import PynamoDBException, TransactWriteError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from creditml.errors import ServiceUnavailable
from creditml.storage.clients import transient_failure

_ALL_OLD = "ALL_OLD"
_CONDITION_FAILED = "ConditionalCheckFailed"
_CONFLICT = "TransactionConflict"


class TransactionCancelled(Exception):
    """DynamoDB cancelled a transaction: which named items failed their condition (with
    the item as it was, when the put or update asked for it) and whether a concurrent
    transaction on one of its items was the cause."""

    def __init__(self, failed: Mapping[str, dict[str, Any] | None], conflict: bool) -> None:
        super().__init__(f"transaction cancelled: failed={sorted(failed)} conflict={conflict}")
        self.failed = dict(failed)
        self.conflict = conflict


@dataclass
class Transaction:
    """A TransactWriteItems built item by item, each item under a label.

    pynamodb sends condition checks, then deletes, then puts, then updates, whatever order
    they were added in; the labels are kept in that same order so a cancellation's
    reasons line up with them.
    """

    record: type[Model]
    _steps: dict[str, list[tuple[str, Callable[[TransactWrite], None]]]] = field(
        default_factory=lambda: {"check": [], "delete": [], "put": [], "update": []}
    )

    def check(
        self,
        label: str,
        record: type[Model],
        hash_key: Any,
        range_key: Any = None,
        *,
        condition: Condition,
    ) -> None:
        """Add a ConditionCheck on another item (any table of the same account/region)."""
        self._add(
            "check",
            label,
            lambda tx: tx.condition_check(record, hash_key, range_key, condition=condition),
        )

    def put(self, label: str, item: Model, *, condition: Condition, return_old: bool) -> None:
        """Add a conditional put; `return_old` returns the existing item when it fails."""
        values = _ALL_OLD if return_old else None
        self._add("put", label, lambda tx: tx.save(item, condition=condition, return_values=values))

    def update(
        self,
        label: str,
        item: Model,
        *,
        actions: list[Action],
        condition: Condition | None,
        return_old: bool = False,
    ) -> None:
        """Add a conditional update; `return_old` returns the item as it was when it fails."""
        values = _ALL_OLD if return_old else None
        self._add(
            "update",
            label,
            lambda tx: tx.update(item, actions=actions, condition=condition, return_values=values),
        )

    def delete(self, label: str, item: Model, *, condition: Condition | None) -> None:
        """Add a (conditional) delete."""
        self._add("delete", label, lambda tx: tx.delete(item, condition=condition))

    def _add(self, kind: str, label: str, step: Callable[[TransactWrite], None]) -> None:
        if label in self.labels:
            raise ValueError(f"label {label!r} used twice in one transaction")
        self._steps[kind].append((label, step))

    @property
    def labels(self) -> list[str]:
        """The items' labels in the order DynamoDB receives (and reports) them."""
        return [
            label for kind in ("check", "delete", "put", "update") for label, _ in self._steps[kind]
        ]

    def commit(self) -> None:
        """Write every item or none; TransactionCancelled names the items that stopped it,
        ServiceUnavailable says a transient failure (throttling, an AWS-side error, a lost
        reply) stopped it or hid its outcome."""
        labels = self.labels
        try:
            # The record's own connection carries its table's region and endpoint settings.
            with TransactWrite(connection=self.record._get_connection().connection) as tx:
                for kind in ("check", "delete", "put", "update"):
                    for _, step in self._steps[kind]:
                        step(tx)
        except TransactWriteError as exc:
            if _error_code(exc) != "TransactionCanceledException":
                if transient_failure(exc):
                    # Throttled, failed on AWS's side, or the reply was lost (the write may
                    # have happened): the same request may be retried with its key.
                    raise ServiceUnavailable() from exc
                raise
            reasons = exc.cancellation_reasons
            failed = {
                label: reason.raw_item
                for label, reason in zip(labels, reasons, strict=False)
                if reason is not None and reason.code == _CONDITION_FAILED
            }
            conflict = any(reason is not None and reason.code == _CONFLICT for reason in reasons)
            raise TransactionCancelled(failed, conflict) from exc


def _error_code(error: PynamoDBException) -> str | None:
    """The AWS error code behind a pynamodb error; None when there is none (a timeout or a
    broken connection, whose `response` is None: pynamodb's `cause_response_code` raises
    AttributeError on those)."""
    cause = error.cause
    if isinstance(cause, ClientError):
        code = cause.response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


def condition_failed(error: PynamoDBException) -> bool:
    """Whether a single-item write failed only because its condition did not hold."""
    return _error_code(error) == "ConditionalCheckFailedException"
