"""Email uniqueness rests on a DynamoDB conditional write, not on a read."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest

from creditml.auth.roles import Role
from creditml.errors import EmailTaken, UserNotFound
from creditml.settings import get_settings
from creditml.storage.users import UserRepository
from creditml.users import User


def _user(user_id: str, email: str) -> User:
    return User(id=user_id, email=email, role=Role.USER, created_at=datetime.now(UTC))


def _items(table: str) -> list[dict[str, object]]:
    items: list[dict[str, object]] = boto3.client("dynamodb").scan(TableName=table)["Items"]
    return items


@pytest.mark.usefixtures("aws")
def test_second_claim_of_an_email_fails_and_writes_nothing() -> None:
    table = get_settings().users_table
    users = UserRepository(table)
    users.create(_user("u1", "Pat@Example.com"), "hash1")
    with pytest.raises(EmailTaken):
        users.create(_user("u2", "pat@example.COM"), "hash2")
    # Two items for the first user; no orphan profile for the second.
    keys = sorted(str(item["pk"]["S"]) for item in _items(table))  # type: ignore[index]
    assert keys == ["EMAIL#pat@example.com", "USER#u1"]


@pytest.mark.usefixtures("aws")
def test_a_claim_alone_blocks_registration_without_any_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an email claim written by someone else, and a repository that is not allowed to read
    table = get_settings().users_table
    boto3.client("dynamodb").put_item(
        TableName=table, Item={"pk": {"S": "EMAIL#race@example.com"}, "user_id": {"S": "x"}}
    )
    users = UserRepository(table)

    def no_reads(*args: object, **kwargs: object) -> None:
        raise AssertionError("uniqueness must not depend on a read")

    monkeypatch.setattr(users._record, "get", no_reads)
    monkeypatch.setattr(users._record, "query", no_reads)
    # When registering the same email, Then the conditional write alone refuses it
    with pytest.raises(EmailTaken):
        users.create(_user("u3", "RACE@example.com"), "hash")


@pytest.mark.usefixtures("aws")
def test_set_role_of_unknown_user_creates_nothing() -> None:
    table = get_settings().users_table
    with pytest.raises(UserNotFound):
        UserRepository(table).set_role("ghost", Role.ADMIN)
    assert _items(table) == []
