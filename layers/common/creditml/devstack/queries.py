"""Query for the embedded AWS at a cost proportional to the partition read.

moto (5.2) answers a Query by sorting every item of the table and keeping those of the
asked partition, so each Query costs O(n log n) in the table's size: a user's 150 usage
counters took 300-900 ms to read once the table held 10,000 other items, and every ledger
page, model lookup and revocation check of the local stack slowed as its tables grew.

`install()` wraps moto's `Table.query`: a Query on the table or on a local secondary index
(which shares the table's partitions) runs over the asked partition alone. Global secondary
indexes, whose partitions are other attributes, keep moto's own path. The embedded server
lets one request at a time into moto (creditml.devstack.aws), so narrowing the table's
item map for the length of one call is invisible to any other; tests/integration/
test_devstack_queries.py holds both paths to the same answers.
"""

from __future__ import annotations

from typing import Any

from moto.dynamodb.models.table import Table

_MOTO_QUERY = Table.query


def query(
    self: Table,
    hash_key: Any,
    range_comparison: Any,
    range_objs: Any,
    limit: Any,
    exclusive_start_key: Any,
    scan_index_forward: Any,
    projection_expressions: Any,
    index_name: str | None = None,
    *rest: Any,
    **kwargs: Any,
) -> Any:
    """moto's Query, over the asked partition only where that gives the same answer."""
    arguments = (
        hash_key,
        range_comparison,
        range_objs,
        limit,
        exclusive_start_key,
        scan_index_forward,
        projection_expressions,
        index_name,
        *rest,
    )
    local = index_name is None or any(index.name == index_name for index in self.indexes or [])
    if not local or hash_key is None:
        return _MOTO_QUERY(self, *arguments, **kwargs)
    everything = self.items
    narrowed = type(everything)(everything.default_factory)
    if hash_key in everything:
        narrowed[hash_key] = everything[hash_key]
    self.items = narrowed
    try:
        return _MOTO_QUERY(self, *arguments, **kwargs)
    finally:
        self.items = everything


def install() -> None:
    """Make every moto DynamoDB table in this process use `query` (idempotent)."""
    Table.query = query  # type: ignore[method-assign]
