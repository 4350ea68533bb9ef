"""Binding record classes to the tables named in settings."""

from __future__ import annotations

from functools import cache
from typing import cast

from pynamodb.models import Model

from creditml.storage.clients import pool_connections


@cache
def bind_table[R: Model](record: type[R], table_name: str) -> type[R]:
    """A subclass of `record` that reads and writes `table_name`.

    Record classes are declared without a table; the name comes from settings at first use,
    so nothing reads the environment at import time and tests can point at their own tables.
    """
    meta = type(
        "Meta",
        (),
        {
            "table_name": table_name,
            "max_retry_attempts": 3,
            "max_pool_connections": pool_connections(),
        },
    )
    bound = type(record.__name__, (record,), {"Meta": meta, "__module__": record.__module__})
    return cast(type[R], bound)
