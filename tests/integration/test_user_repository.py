"""Email uniqueness rests on a DynamoDB conditional write, not on a read; a log-in reads the
email's claim and its throttle counters in one call."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from creditml.auth.roles import Role
from creditml.errors import EmailTaken, InvalidCursor, ServiceUnavailable, UserNotFound
from creditml.limits import EmailFailures, LoginCounters, LoginKeys
from creditml.settings import get_settings
from creditml.storage import users as users_module
from creditml.storage.users import (
    BATCH_GET_ATTEMPTS,
    USER_PAGE_MAX,
    USER_PAGE_SCAN_CALLS,
    LoginLookup,
    UserRepository,
    decode_user_cursor,
    encode_user_cursor,
)
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


# ---- Pages of users for admins: a Scan of the profiles, with opaque cursors ----------------


def _b64(text: bytes) -> str:
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


def _store_users(count: int) -> tuple[UserRepository, dict[str, User]]:
    """`count` users (each a profile and an email claim), the first of them a publisher."""
    users = UserRepository(get_settings().users_table)
    stored: dict[str, User] = {}
    for number in range(count):
        user = _user(f"u{number:03}", f"Person{number}@Example.com")
        users.create(user, f"hash{number}")
        stored[user.id] = user
    users.set_role("u000", Role.PUBLISHER)
    stored["u000"] = stored["u000"].model_copy(update={"role": Role.PUBLISHER})
    return users, stored


def _every_page(users: UserRepository, limit: int) -> list[list[User]]:
    pages: list[list[User]] = []
    cursor: str | None = None
    while True:
        page, cursor = users.page(limit, cursor)
        pages.append(page)
        if cursor is None:
            return pages
        assert len(pages) < 100, "the cursors never end"


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize("limit", [1, 3, 5, 23, USER_PAGE_MAX])
def test_pages_list_every_user_exactly_once_and_respect_the_limit(limit: int) -> None:
    # Given 23 users, and a claim stored before NFKC (an item of another kind, no profile)
    users, stored = _store_users(23)
    boto3.client("dynamodb").put_item(
        TableName=get_settings().users_table,
        Item={"pk": {"S": "EMAIL#legacy@example.com"}, "user_id": {"S": "u001"}},
    )
    # When following the cursors from the start
    pages = _every_page(users, limit)
    # Then each user comes once, as stored (role included), and no page is over the limit
    listed = [user.id for page in pages for user in page]
    assert sorted(listed) == sorted(stored)
    assert len(listed) == len(set(listed))
    assert all(len(page) <= limit for page in pages)
    assert {user.id: user for page in pages for user in page} == stored
    # Pages are full but the last; a last page ending with the table has no cursor after it
    assert all(len(page) == limit for page in pages[:-1])


@pytest.mark.usefixtures("aws")
def test_an_empty_table_is_one_empty_page() -> None:
    assert UserRepository(get_settings().users_table).page(10, None) == ([], None)


@pytest.mark.usefixtures("aws")
def test_a_page_reads_profiles_only_with_what_a_user_needs() -> None:
    users, _ = _store_users(4)
    with aws_calls() as calls:
        page, cursor = users.page(10, None)
    assert (len(page), cursor) == (4, None)
    names = {name for name, _ in calls}
    assert names == {"dynamodb:Scan"}
    for _, params in calls:
        assert params["ConsistentRead"] is True  # a role just changed shows at once
        projected = {
            params["ExpressionAttributeNames"][name]
            for name in params["ProjectionExpression"].split(", ")
        }
        assert projected == {"pk", "user_id", "email", "role", "created_at"}
    # The projection reaches DynamoDB: the stored items do hold a password hash
    assert any("password_hash" in item for item in _items(get_settings().users_table))


@pytest.mark.usefixtures("aws")
def test_a_page_stops_after_its_scan_calls_and_its_cursor_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given 12 users: the embedded DynamoDB scans keys in order, so all 12 claims come first
    users, stored = _store_users(12)
    # When a page may make one Scan call (of 2 x 5 items, claims only)
    monkeypatch.setattr(users_module, "USER_PAGE_SCAN_CALLS", 1)
    with aws_calls() as calls:
        page, cursor = users.page(5, None)
    # Then that page is empty but not the end, and its cursor goes on from where it stopped
    assert [name for name, _ in calls] == ["dynamodb:Scan"]
    assert calls[0][1]["Limit"] == 10
    assert (page, cursor is not None) == ([], True)
    listed = [user.id for page in _every_page(users, 5) for user in page]
    assert sorted(listed) == sorted(stored)
    monkeypatch.undo()
    # And with the real bound, every Scan call evaluates more items than the one before
    with aws_calls() as calls:
        page, cursor = users.page(5, None)
    limits = [params["Limit"] for _, params in calls]
    assert len(page) == 5
    assert cursor is not None
    assert limits == sorted(limits)
    assert len(limits) <= USER_PAGE_SCAN_CALLS


@pytest.mark.usefixtures("aws")
def test_a_cursor_at_a_deleted_user_still_goes_on() -> None:
    users, stored = _store_users(6)
    first, cursor = users.page(2, None)
    assert cursor is not None
    boto3.client("dynamodb").delete_item(
        TableName=get_settings().users_table, Key={"pk": {"S": decode_user_cursor(cursor)}}
    )
    rest = [user.id for user in users.page(USER_PAGE_MAX, cursor)[0]]
    assert sorted([user.id for user in first] + rest) == sorted(stored)


@pytest.mark.parametrize(
    "key", ["USER#u1", "EMAIL#pat@example.com", "EMAIL#caf\u00e9@x.org", "EMAIL#" + "\u00e9" * 1021]
)
def test_cursors_round_trip_and_are_url_safe(key: str) -> None:
    cursor = encode_user_cursor(key)
    assert decode_user_cursor(cursor) == key
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


MALFORMED_CURSORS = [
    "",
    "!!!!",
    "a",  # one base64 character decodes to no byte
    encode_user_cursor("USER#u1") + "=",  # padded: another spelling of a valid cursor
    encode_user_cursor("USER#u1") + " ",
    _b64(b"v2:USER#u1"),
    _b64(b"USER#u1"),
    _b64(b"v1:SESSION#u1"),
    _b64(b"v1:USER#"),
    _b64(b"v1:EMAIL#"),
    _b64(b"v1:\xff\xfe"),
    _b64(b"v1:USER#" + b"x" * 2044),  # a key of 2049 bytes: over DynamoDB's limit
    "A" * 5000,
]


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize("cursor", MALFORMED_CURSORS)
def test_a_malformed_cursor_is_invalid_cursor_and_reads_nothing(cursor: str) -> None:
    users = UserRepository(get_settings().users_table)
    with aws_calls() as calls, pytest.raises(InvalidCursor) as raised:
        users.page(10, cursor)
    assert (raised.value.status, raised.value.code) == (422, "invalid_cursor")
    assert calls == []


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize("limit", [0, -1, USER_PAGE_MAX + 1])
def test_a_limit_out_of_range_is_refused(limit: int) -> None:
    with pytest.raises(ValueError, match="a page holds"):
        UserRepository(get_settings().users_table).page(limit, None)


@pytest.mark.usefixtures("aws")
def test_find_by_email_matches_any_case_and_form() -> None:
    users, stored = _store_users(3)
    assert users.find_by_email("PERSON2@example.COM") == stored["u002"]
    assert users.find_by_email(fullwidth("person1@example") + ".com") == stored["u001"]
    assert users.find_by_email("nobody@example.com") is None
    # A claim whose profile is gone (never written by this code) finds nobody
    boto3.client("dynamodb").put_item(
        TableName=get_settings().users_table,
        Item={"pk": {"S": "EMAIL#orphan@example.com"}, "user_id": {"S": "gone"}},
    )
    assert users.find_by_email("orphan@example.com") is None
    # An address NFKC stretches past DynamoDB's 2048-byte key limit (which DynamoDB refuses
    # to read, 400; the embedded one does not check) is nobody's; only its pre-NFKC key is read
    stretched = "\ufdfa" * 64 + "@" + "\ufdfa" * 180 + ".com"
    with aws_calls() as calls:
        assert users.find_by_email(stretched) is None
    keys = [params["Key"]["pk"]["S"] for _, params in calls]
    assert keys == [f"EMAIL#{stretched.casefold()}"]
    assert len(keys[0].encode()) <= 2048
