"""The embedded AWS's Query (creditml.devstack.queries) against moto's own: the same
answers (ranges, order, pages, local and global indexes, missing partitions), at a cost
that does not grow with the rest of the table."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from moto.dynamodb.models.table import Table

from creditml.devstack import queries
from tests.integration.conftest import bare_dynamodb, keyed_table

TABLE = "things"
IMPLEMENTATIONS = {"moto": queries._MOTO_QUERY, "devstack": queries.query}


@contextmanager
def moto_table(
    monkeypatch: pytest.MonkeyPatch, implementation: Callable[..., Any]
) -> Iterator[Any]:
    """A client on a fresh moto with a (pk, sk) table, an LSI on `n` and a GSI on `g`."""
    monkeypatch.setattr(Table, "query", implementation)
    with bare_dynamodb(monkeypatch) as client:
        client.create_table(
            **keyed_table(
                TABLE,
                attributes=[
                    {"AttributeName": "n", "AttributeType": "N"},
                    {"AttributeName": "g", "AttributeType": "S"},
                ],
                LocalSecondaryIndexes=[
                    {
                        "IndexName": "by_n",
                        "KeySchema": [
                            {"AttributeName": "pk", "KeyType": "HASH"},
                            {"AttributeName": "n", "KeyType": "RANGE"},
                        ],
                        "Projection": {"ProjectionType": "ALL"},
                    }
                ],
                GlobalSecondaryIndexes=[
                    {
                        "IndexName": "by_g",
                        "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                        "Projection": {"ProjectionType": "ALL"},
                    }
                ],
            )
        )
        for partition in ("a", "b", "c"):
            for n in range(30):
                client.put_item(
                    TableName=TABLE,
                    Item={
                        "pk": {"S": partition},
                        "sk": {"S": f"2026-11-{n + 1:02d}#m{n % 3}"},
                        "n": {"N": str((n * 7) % 30)},
                        "g": {"S": f"group-{n % 4}"},
                    },
                )
        yield client


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def dynamodb(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with moto_table(monkeypatch, IMPLEMENTATIONS[request.param]) as client:
        yield client


def pages(client: Any, **query: Any) -> list[list[tuple[str, str]]]:
    """Every page of a query, as (pk, sk) pairs."""
    found, start = [], None
    while True:
        extra: dict[str, Any] = {"ExclusiveStartKey": start} if start else {}
        page = client.query(TableName=TABLE, **query, **extra)
        found.append([(item["pk"]["S"], item["sk"]["S"]) for item in page["Items"]])
        start = page.get("LastEvaluatedKey")
        if not start:
            return found


def test_a_range_of_one_partition_in_pages(dynamodb: Any) -> None:
    found = pages(
        dynamodb,
        KeyConditionExpression="pk = :p AND sk BETWEEN :a AND :b",
        ExpressionAttributeValues={
            ":p": {"S": "b"},
            ":a": {"S": "2026-11-05"},
            ":b": {"S": "2026-11-20#\uffff"},
        },
        Limit=7,
    )
    flat = [pair for page in found for pair in page]
    assert flat == [("b", f"2026-11-{day:02d}#m{(day - 1) % 3}") for day in range(5, 21)]
    assert [len(page) for page in found][:2] == [7, 7]


def test_newest_first_with_a_filter(dynamodb: Any) -> None:
    found = pages(
        dynamodb,
        KeyConditionExpression="pk = :p",
        FilterExpression="g = :g",
        ExpressionAttributeValues={":p": {"S": "a"}, ":g": {"S": "group-1"}},
        ScanIndexForward=False,
    )
    sks = [sk for page in found for _, sk in page]
    assert sks == sorted(sks, reverse=True)
    assert len(sks) == len(range(1, 30, 4))


def test_a_missing_partition_is_empty(dynamodb: Any) -> None:
    answer = dynamodb.query(
        TableName=TABLE,
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": "nobody"}},
    )
    assert answer["Items"] == []
    assert answer["Count"] == 0


def test_a_local_index_orders_by_its_own_key(dynamodb: Any) -> None:
    answer = dynamodb.query(
        TableName=TABLE,
        IndexName="by_n",
        KeyConditionExpression="pk = :p AND n < :most",
        ExpressionAttributeValues={":p": {"S": "c"}, ":most": {"N": "10"}},
        ScanIndexForward=False,
    )
    assert [int(item["n"]["N"]) for item in answer["Items"]] == list(range(9, -1, -1))
    assert {item["pk"]["S"] for item in answer["Items"]} == {"c"}


def test_a_global_index_spans_partitions(dynamodb: Any) -> None:
    answer = dynamodb.query(
        TableName=TABLE,
        IndexName="by_g",
        KeyConditionExpression="g = :g",
        ExpressionAttributeValues={":g": {"S": "group-2"}},
    )
    assert {item["pk"]["S"] for item in answer["Items"]} == {"a", "b", "c"}
    assert len(answer["Items"]) == 3 * len(range(2, 30, 4))


def test_a_query_reads_its_partition_not_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's own sorts every item of the table for each Query; this one, the partition's."""
    with moto_table(monkeypatch, queries.query) as client:
        sorted_items: list[int] = []
        all_items = Table.all_items

        def counting(self: Table) -> Any:
            found = all_items(self)
            sorted_items.append(len(found))
            return found

        monkeypatch.setattr(Table, "all_items", counting)
        client.query(
            TableName=TABLE,
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": "a"}},
        )
    assert sorted_items
    assert max(sorted_items) == 30  # the partition, not the table's 90
