"""Email uniqueness rests on a DynamoDB conditional write, not on a read; a log-in reads the
email's claim and its throttle counters in one call."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from creditml.auth.roles import Role
from creditml.errors import EmailTaken, ServiceUnavailable, UserNotFound
from creditml.limits import EmailFailures, LoginCounters, LoginKeys
from creditml.settings import get_settings
from creditml.storage.users import BATCH_GET_ATTEMPTS, LoginLookup, UserRepository
from creditml.users import User
from tests.integration.test_limits import aws_calls
from tests.text_forms import fullwidth


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


# Each pair looks alike (or is the same address in another Unicode form).
LOOK_ALIKES = [
    ("bob@example.com", fullwidth("bob@example") + ".com"),  # fullwidth letters
    ("office@example.com", "o\ufb03ce@example.com"),  # the "ffi" ligature
    ("kim@example.com", "\u212aim@example.com"),  # KELVIN SIGN
    ("strasse@example.com", "STRA\u1e9eE@example.com"),  # capital sharp s folds to "ss"
    ("cafe\u0301@example.com", "café@example.com"),  # decomposed vs precomposed é
]


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize(("first", "second"), LOOK_ALIKES)
def test_visually_identical_emails_cannot_register_twice(first: str, second: str) -> None:
    users = UserRepository(get_settings().users_table)
    users.create(_user("u1", first), "hash1")
    with pytest.raises(EmailTaken):
        users.create(_user("u2", second), "hash2")
    found = users.find_credentials(second)
    assert found is not None
    assert found[0].id == "u1"


@pytest.mark.usefixtures("aws")
def test_claims_stored_before_nfkc_still_log_in_and_stay_unique() -> None:
    # Given a user registered before NFKC, whose claim is keyed by casefold() alone.
    table = get_settings().users_table
    users = UserRepository(table)
    legacy = fullwidth("bob") + "@example.com"
    client = boto3.client("dynamodb")
    client.put_item(
        TableName=table,
        Item={"pk": {"S": f"EMAIL#{legacy.casefold()}"}, "user_id": {"S": "old"}},
    )
    client.put_item(
        TableName=table,
        Item={
            "pk": {"S": "USER#old"},
            "user_id": {"S": "old"},
            "email": {"S": legacy},
            "role": {"S": "user"},
            "password_hash": {"S": "hash-old"},
        },
    )
    # Then the same spelling still finds them, and cannot register again.
    found = users.find_credentials(legacy)
    assert found is not None
    assert found[0].id == "old"
    with pytest.raises(EmailTaken):
        users.create(_user("u2", legacy), "hash2")


# ---- The reads of a log-in: the claim and the throttle counters in one call -----------------


def _lookup() -> LoginLookup:
    settings = get_settings()
    return LoginLookup(settings.users_table, settings.limits_table)


KEYS = LoginKeys(email="login:email:test", ip="login:ip:192.0.2.1:1", now=1000.0)


@pytest.mark.usefixtures("aws")
def test_a_login_reads_the_claim_and_both_counters_in_one_call() -> None:
    UserRepository(get_settings().users_table).create(_user("u1", "Pat@Example.com"), "hash1")
    client = boto3.client("dynamodb")
    limits = get_settings().limits_table
    for key, failures in ((KEYS.email, 3), (KEYS.ip, 7)):
        client.put_item(
            TableName=limits,
            Item={"pk": {"S": key}, "failures": {"N": str(failures)}, "started": {"N": "900"}},
        )
    lookup = _lookup()
    with aws_calls() as calls:
        user_id, counters = lookup.find_login("pat@EXAMPLE.com", KEYS)
        unknown = lookup.find_login("nobody@example.com", KEYS)
    assert [name for name, _ in calls] == ["dynamodb:BatchGetItem"] * 2
    assert user_id == "u1"
    assert (counters.email.failures, counters.email.started, counters.ip_failures) == (3, 900, 7)
    assert unknown == (None, counters)  # unknown emails have counters like known ones
    other = LoginKeys(email="login:email:other", ip="login:ip:192.0.2.2:1", now=1000.0)
    assert lookup.find_login("pat@example.com", other) == ("u1", LoginCounters(EmailFailures(), 0))


@pytest.mark.usefixtures("aws")
def test_a_claim_stored_before_nfkc_costs_a_login_no_extra_call() -> None:
    table = get_settings().users_table
    legacy = fullwidth("bob") + "@example.com"
    boto3.client("dynamodb").put_item(
        TableName=table, Item={"pk": {"S": f"EMAIL#{legacy.casefold()}"}, "user_id": {"S": "old"}}
    )
    with aws_calls() as calls:
        user_id, _ = _lookup().find_login(legacy, KEYS)
    assert user_id == "old"
    ((name, params),) = calls
    assert name == "dynamodb:BatchGetItem"
    assert len(params["RequestItems"][table]["Keys"]) == 2  # the canonical and the old key


class Unprocessing:
    """A DynamoDB client that leaves a BatchGetItem's limits-table keys unprocessed on its
    first `stubborn` calls (as DynamoDB does when throttled), then answers."""

    def __init__(self, stubborn: int) -> None:
        self._real = boto3.client("dynamodb")
        self._stubborn = stubborn
        self.calls = 0

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        limits = get_settings().limits_table
        if self.calls > self._stubborn or limits not in RequestItems:
            return dict(self._real.batch_get_item(RequestItems=RequestItems))
        rest = {table: read for table, read in RequestItems.items() if table != limits}
        answer = self._real.batch_get_item(RequestItems=rest) if rest else {"Responses": {}}
        return {"Responses": answer["Responses"], "UnprocessedKeys": {limits: RequestItems[limits]}}


@pytest.mark.usefixtures("aws")
def test_unprocessed_keys_are_asked_again_then_given_up_as_503() -> None:
    UserRepository(get_settings().users_table).create(_user("u1", "pat@example.com"), "hash1")
    boto3.client("dynamodb").put_item(
        TableName=get_settings().limits_table,
        Item={"pk": {"S": KEYS.ip}, "failures": {"N": "4"}},
    )
    lookup = _lookup()
    lookup._dynamodb = Unprocessing(stubborn=2)
    user_id, counters = lookup.find_login("pat@example.com", KEYS)
    assert (user_id, counters.ip_failures, lookup._dynamodb.calls) == ("u1", 4, 3)
    # DynamoDB that never gets to the keys: a bounded number of calls, then 503
    lookup._dynamodb = Unprocessing(stubborn=BATCH_GET_ATTEMPTS)
    with pytest.raises(ServiceUnavailable):
        lookup.find_login("pat@example.com", KEYS)
    assert lookup._dynamodb.calls == BATCH_GET_ATTEMPTS
