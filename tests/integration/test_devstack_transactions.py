"""The embedded AWS's TransactWriteItems (creditml.devstack.transactions) against moto's own:
the same outcomes, item for item, at a cost that does not grow with the tables."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.dynamodb.models import DynamoDBBackend

from creditml.devstack import transactions
from creditml.devstack.aws import REGION
from tests.integration.conftest import bare_dynamodb, keyed_table

TABLE = "things"
MOTO_OWN = DynamoDBBackend.transact_write_items
IMPLEMENTATIONS = {"moto": MOTO_OWN, "devstack": transactions.transact_write_items}


@contextmanager
def moto_table(
    monkeypatch: pytest.MonkeyPatch, implementation: Callable[..., None]
) -> Iterator[Any]:
    """A client on a fresh moto with a (pk, sk) table, transactions by `implementation`."""
    monkeypatch.setattr(DynamoDBBackend, "transact_write_items", implementation)
    with bare_dynamodb(monkeypatch) as client:
        client.create_table(**keyed_table(TABLE))
        yield client


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def dynamodb(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with moto_table(monkeypatch, IMPLEMENTATIONS[request.param]) as client:
        yield client


def key(pk: str, sk: str = "x") -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def put(pk: str, **attributes: Any) -> dict[str, Any]:
    return {"Put": {"TableName": TABLE, "Item": key(pk) | attributes}}


def everything(client: Any) -> dict[str, dict[str, Any]]:
    items = client.scan(TableName=TABLE)["Items"]
    return {item["pk"]["S"]: item for item in items}


def cancellation(call: Callable[[], Any]) -> tuple[str, list[dict[str, Any]]]:
    with pytest.raises(ClientError) as raised:
        call()
    error = raised.value.response
    return error["Error"]["Code"], error.get("CancellationReasons", [])


def failing_update() -> dict[str, Any]:
    """An update whose condition holds but which fails when written: a number added to a
    string."""
    return {
        "Update": {
            "TableName": TABLE,
            "Key": key("account"),
            "UpdateExpression": "SET balance = balance + :one",
            "ExpressionAttributeValues": {":one": {"S": "one"}},
        }
    }


def seed(client: Any) -> None:
    client.transact_write_items(
        TransactItems=[
            put("account", balance={"N": "10"}, seq={"N": "1"}),
            put("claim", owner={"S": "someone"}),
        ]
    )


def test_a_transaction_applies_every_kind_of_action(dynamodb: Any) -> None:
    seed(dynamodb)
    dynamodb.transact_write_items(
        TransactItems=[
            {
                "Update": {
                    "TableName": TABLE,
                    "Key": key("account"),
                    "UpdateExpression": "SET balance = balance - :price, seq = seq + :one",
                    "ConditionExpression": "balance >= :price",
                    "ExpressionAttributeValues": {":price": {"N": "4"}, ":one": {"N": "1"}},
                }
            },
            put("entry", amount={"N": "-4"}),
            {"Delete": {"TableName": TABLE, "Key": key("claim")}},
            {
                "ConditionCheck": {
                    "TableName": TABLE,
                    "Key": key("missing"),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
        ]
    )
    items = everything(dynamodb)
    assert sorted(items) == ["account", "entry"]
    assert items["account"]["balance"] == {"N": "6"}
    assert items["account"]["seq"] == {"N": "2"}
    assert items["entry"]["amount"] == {"N": "-4"}


def test_a_failed_condition_writes_nothing_and_gives_reasons_in_order(dynamodb: Any) -> None:
    seed(dynamodb)
    before = everything(dynamodb)
    code, reasons = cancellation(
        lambda: dynamodb.transact_write_items(
            TransactItems=[
                put("entry", amount={"N": "-40"}),
                {
                    "Update": {
                        "TableName": TABLE,
                        "Key": key("account"),
                        "UpdateExpression": "SET balance = balance - :price",
                        "ConditionExpression": "balance >= :price",
                        "ExpressionAttributeValues": {":price": {"N": "40"}},
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                },
                {"Delete": {"TableName": TABLE, "Key": key("claim")}},
            ]
        )
    )
    assert code == "TransactionCanceledException"
    assert [reason["Code"] for reason in reasons] == ["None", "ConditionalCheckFailed", "None"]
    assert reasons[1]["Item"]["balance"] == {"N": "10"}
    assert everything(dynamodb) == before


def test_without_all_old_a_failed_condition_returns_no_item(dynamodb: Any) -> None:
    seed(dynamodb)
    _, reasons = cancellation(
        lambda: dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": key("claim") | {"owner": {"S": "me"}},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            ]
        )
    )
    assert reasons[0]["Code"] == "ConditionalCheckFailed"
    assert "Item" not in reasons[0]
    assert everything(dynamodb)["claim"]["owner"] == {"S": "someone"}


def test_a_write_that_cannot_apply_undoes_the_ones_before_it(dynamodb: Any) -> None:
    seed(dynamodb)
    before = everything(dynamodb)
    with pytest.raises(ClientError) as raised:
        dynamodb.transact_write_items(
            TransactItems=[
                put("entry", amount={"N": "-4"}),
                put("claim", owner={"S": "someone else"}),
                failing_update(),
            ]
        )
    assert raised.value.response["Error"]["Code"] in {
        "ValidationException",
        "TransactionCanceledException",
    }
    assert everything(dynamodb) == before


@pytest.mark.parametrize(
    "entries",
    [
        pytest.param([put("a"), put("a", other={"S": "1"})], id="one-item-twice"),
        pytest.param([put(f"item-{n}") for n in range(101)], id="over-100-actions"),
    ],
)
def test_invalid_transactions_are_refused_whole(dynamodb: Any, entries: list[Any]) -> None:
    with pytest.raises(ClientError) as raised:
        dynamodb.transact_write_items(TransactItems=entries)
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert everything(dynamodb) == {}


def test_a_transaction_copies_what_it_names_not_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """moto's own deep-copies every table a transaction touches (the local stack's memory
    climbed and its transactions slowed as the ledger grew); this one copies its items."""
    with moto_table(monkeypatch, transactions.transact_write_items) as client:
        for batch in range(40):
            client.batch_write_item(
                RequestItems={
                    TABLE: [
                        {"PutRequest": {"Item": key(f"filler-{batch}-{n}") | {"v": {"N": "1"}}}}
                        for n in range(25)
                    ]
                }
            )
        copies = 0
        real_deepcopy = copy.deepcopy

        def counting(value: Any, memo: Any = None, *rest: Any) -> Any:
            nonlocal copies
            copies += 1
            return real_deepcopy(value, memo, *rest)

        monkeypatch.setattr(copy, "deepcopy", counting)
        client.transact_write_items(TransactItems=[put("entry"), put("account")])
        monkeypatch.setattr(copy, "deepcopy", real_deepcopy)
    # 1,000 items stored; copying the table would copy thousands of objects.
    assert 0 < copies < 100


def stream_records(client: Any) -> list[dict[str, Any]]:
    # botocore's endpoint rules send ARN calls to an account endpoint moto's in-process mock
    # routes to DynamoDB; the regional endpoint reaches its streams backend.
    streams = boto3.client(
        "dynamodbstreams",
        region_name=REGION,
        endpoint_url=f"https://streams.dynamodb.{REGION}.amazonaws.com",
    )
    arn = client.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records: list[dict[str, Any]] = streams.get_records(ShardIterator=iterator)["Records"]
    return records


def test_a_cancelled_transaction_leaves_nothing_on_the_stream(dynamodb: Any) -> None:
    dynamodb.update_table(
        TableName=TABLE,
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )
    seed(dynamodb)
    with pytest.raises(ClientError):
        dynamodb.transact_write_items(
            TransactItems=[
                put("entry", amount={"N": "-4"}),
                failing_update(),
            ]
        )
    inserted = [record["dynamodb"]["Keys"]["pk"]["S"] for record in stream_records(dynamodb)]
    assert inserted == ["account", "claim"]
