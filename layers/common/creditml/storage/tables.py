"""Helpers shared by the DynamoDB repositories."""

from __future__ import annotations

from functools import cache
from typing import TypeVar, cast

from pynamodb.exceptions import TransactWriteError
from pynamodb.models import Model

R = TypeVar("R", bound=Model)


@cache
def bind_table[R: Model](record: type[R], table_name: str) -> type[R]:
    """A subclass of `record` that reads and writes `table_name`.

    Record classes are declared without a table; the name comes from settings at first use,
    so nothing reads the environment at import time and tests can point at their own tables.
    """
    meta = type("Meta", (), {"table_name": table_name, "max_retry_attempts": 3})
    bound = type(record.__name__, (record,), {"Meta": meta, "__module__": record.__module__})
    return cast(type[R], bound)


def failed_conditions(error: TransactWriteError) -> list[bool]:
    """Which items of a cancelled transaction failed their condition, in request order
    (pynamodb orders items: condition checks, deletes, puts, updates)."""
    return [
        reason is not None and reason.code == "ConditionalCheckFailed"
        for reason in error.cancellation_reasons
    ]
