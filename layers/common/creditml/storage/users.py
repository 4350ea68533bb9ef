"""Users and their unique emails, in the users table.

Two items per user in one table, written in one transaction:
  pk = "USER#<id>"          the profile (email as entered, role, password hash)
  pk = "EMAIL#<canonical>"  a claim on the email, put with attribute_not_exists(pk)
The claim item makes emails unique under their canonical form (NFKC + case fold,
creditml.auth.emails) with a conditional write: two concurrent registrations of one email,
or of two visually identical spellings of it, cannot both succeed, which no read-then-write
can promise.

Claims stored before NFKC was applied are keyed by the case-folded email alone. For ASCII
addresses both keys are equal; for the few others whose key NFKC changes, login also reads
the old key (in the same BatchGetItem) and registration also checks that the old key is free.

Admins page through users (`UserRepository.page`) with a Scan filtered to the profiles: in
the table's own order, which DynamoDB leaves arbitrary (the order of the keys' hashes), but
stable, so following the cursors lists every user once. An admin's list needs no sort, and
finding one user is `find_by_email`.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import boto3
from pynamodb.attributes import UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import DoesNotExist, UpdateError
from pynamodb.models import Model

from creditml.auth.emails import canonical_email, legacy_email_key
from creditml.auth.roles import Role
from creditml.errors import EmailTaken, InvalidCursor, ServiceUnavailable, UserNotFound
from creditml.limits import LoginCounters, LoginKeys
from creditml.storage.dynamo import Transaction, TransactionCancelled, condition_failed
from creditml.storage.limits import login_counters
from creditml.storage.tables import bind_table
from creditml.users import User


class _UserRecord(Model):
    pk = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute(null=True)
    email = UnicodeAttribute(null=True)
    role = UnicodeAttribute(null=True)
    password_hash = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute(null=True)


_USER_PREFIX = "USER#"
_EMAIL_PREFIX = "EMAIL#"


def _user_key(user_id: str) -> str:
    return f"{_USER_PREFIX}{user_id}"


def _email_key(email: str) -> str:
    return f"{_EMAIL_PREFIX}{canonical_email(email)}"


def _legacy_email_key(email: str) -> str:
    return f"{_EMAIL_PREFIX}{legacy_email_key(email)}"


def _claim_keys(email: str) -> list[str]:
    """The keys an email's claim may have: its canonical key, then its pre-NFKC key when
    that differs."""
    keys = [_email_key(email)]
    legacy = _legacy_email_key(email)
    return keys if legacy in keys else [*keys, legacy]


# A page of users (UserRepository.page) holds 1 to USER_PAGE_MAX of them. Each user is two
# items (profile and email claim), so a Scan first evaluates twice as many items as users
# still wanted, then twice as many again on each further call (a run of claims: DynamoDB
# hashes keys, but the local stack keeps them sorted, every EMAIL# before every USER#);
# at most USER_PAGE_SCAN_ITEMS_MAX items per call and USER_PAGE_SCAN_CALLS calls per page,
# after which the page ends early, with a cursor.
USER_PAGE_MAX = 100
USER_PAGE_SCAN_CALLS = 8
USER_PAGE_SCAN_ITEMS_MAX = 1000
# DynamoDB's limit on a partition key; NFKC may stretch a 254-character email beyond it.
_KEY_MAX_BYTES = 2048
# A cursor is the url-safe base64 (unpadded) of "v1:<key>", the key the next page starts
# after: at most this long.
USER_CURSOR_MAX_LENGTH = -(-(len("v1:") + _KEY_MAX_BYTES) // 3) * 4
_CURSOR_ALPHABET = re.compile(r"^[A-Za-z0-9_-]+$")
# What a User needs of a profile (the password hash stays where it is).
_PROFILE_PROJECTION = "#pk, #user_id, #email, #role, #created_at"
_PROFILE_NAMES = {f"#{name}": name for name in ("pk", "user_id", "email", "role", "created_at")}


def encode_user_cursor(key: str) -> str:
    """The opaque cursor of a page that ends at the item keyed `key`."""
    return base64.urlsafe_b64encode(f"v1:{key}".encode()).decode().rstrip("=")


def decode_user_cursor(cursor: str) -> str:
    """The key an `encode_user_cursor` cursor names; InvalidCursor (422) for anything else:
    not url-safe base64 in its canonical unpadded form, another version, or a key of no
    users-table item kind."""
    if len(cursor) > USER_CURSOR_MAX_LENGTH or not _CURSOR_ALPHABET.match(cursor):
        raise InvalidCursor()
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidCursor() from exc
    version, _, key = text.partition(":")
    kind = next((p for p in (_USER_PREFIX, _EMAIL_PREFIX) if key.startswith(p)), None)
    if (
        version != "v1"
        or kind is None
        or key == kind
        or len(key.encode()) > _KEY_MAX_BYTES
        or encode_user_cursor(key) != cursor  # one spelling per cursor
    ):
        raise InvalidCursor()
    return key


def _to_user(record: _UserRecord) -> User:
    return User(
        id=str(record.user_id),
        email=str(record.email),
        role=Role(str(record.role)),
        created_at=record.created_at or datetime.now(UTC),
    )


class UserRepository:
    """Reads and writes users; emails are matched case-insensitively."""

    def __init__(self, table_name: str) -> None:
        self._record = bind_table(_UserRecord, table_name)

    def create(self, user: User, password_hash: str) -> None:
        """Store a new user and claim its email atomically; EmailTaken if already claimed."""
        record = self._record
        profile = record(
            _user_key(user.id),
            user_id=user.id,
            email=user.email,
            role=str(user.role),
            password_hash=password_hash,
            created_at=user.created_at,
        )
        claim = record(_email_key(user.email), user_id=user.id)
        tx = Transaction(record)
        tx.put("email", claim, condition=record.pk.does_not_exist(), return_old=False)
        tx.put("profile", profile, condition=record.pk.does_not_exist(), return_old=False)
        legacy = _legacy_email_key(user.email)
        if legacy != claim.pk:
            tx.check("legacy_email", record, legacy, condition=record.pk.does_not_exist())
        try:
            tx.commit()
        except TransactionCancelled as cancelled:
            if {"email", "legacy_email"} & set(cancelled.failed):
                raise EmailTaken() from cancelled
            raise

    def get(self, user_id: str) -> User:
        """The user with this id; UserNotFound otherwise."""
        return _to_user(self._get_record(user_id))

    def stored_role(self, user_id: str) -> Role:
        """The role on the user's item now (one consistent GetItem of just that attribute);
        UserNotFound when the user no longer exists."""
        try:
            record = self._record.get(
                _user_key(user_id), consistent_read=True, attributes_to_get=["role"]
            )
        except DoesNotExist as exc:
            raise UserNotFound() from exc
        return Role(str(record.role))

    def find_credentials(self, email: str) -> tuple[User, str] | None:
        """The user registered with `email` (any case, any compatibility form) and their
        password hash, or None. (A log-in reads the claim with its throttle counters
        instead: LoginLookup.)"""
        user_id = self._claimant(email)
        return None if user_id is None else self.credentials(user_id)

    def find_by_email(self, email: str) -> User | None:
        """The user registered with `email` (any case, any compatibility form), or None:
        the claim's GetItem, then the profile's."""
        user_id = self._claimant(email)
        if user_id is None:
            return None
        try:
            return self.get(user_id)
        except UserNotFound:
            return None

    def page(self, limit: int, cursor: str | None) -> tuple[list[User], str | None]:
        """Up to `limit` (1 to USER_PAGE_MAX) users after `cursor` (None: from the start),
        and the cursor of the next page, None at the end. A page may hold fewer than
        `limit` users and still have a cursor (its Scan calls ran out); following the
        cursors until None lists every user exactly once, in no particular order (the
        module's docstring). InvalidCursor for a cursor this method did not make."""
        if not 1 <= limit <= USER_PAGE_MAX:
            raise ValueError(f"a page holds 1 to {USER_PAGE_MAX} users, not {limit}")
        start = decode_user_cursor(cursor) if cursor is not None else None
        users: list[User] = []
        for call in range(USER_PAGE_SCAN_CALLS):
            wanted = limit - len(users)
            items, start = self._scan_profiles(
                start, min(USER_PAGE_SCAN_ITEMS_MAX, 2 * wanted << call)
            )
            users.extend(_to_user(_UserRecord.from_raw_data(item)) for item in items[:wanted])
            if len(items) >= wanted:
                # Full: the next page starts after its last user (any users this Scan found
                # beyond it are read again there).
                more = len(items) > wanted or start is not None
                return users, encode_user_cursor(items[wanted - 1]["pk"]["S"]) if more else None
            if start is None:
                return users, None
        # The Scan calls ran out before the table did (`start` is the key they stopped at).
        return users, None if start is None else encode_user_cursor(start)

    @cached_property
    def _dynamodb(self) -> Any:
        return boto3.client("dynamodb")

    def _scan_profiles(
        self, start: str | None, evaluated: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One Scan call over `evaluated` items after `start`: the profiles among them (just
        what a User needs), and the key the Scan stopped at (None at the table's end).
        Strongly consistent, so a page right after a role change shows the new role."""
        request: dict[str, Any] = {
            "TableName": self._record.Meta.table_name,
            "Limit": evaluated,
            "ConsistentRead": True,
            "FilterExpression": "begins_with(#pk, :profile)",
            "ExpressionAttributeValues": {":profile": {"S": _USER_PREFIX}},
            "ProjectionExpression": _PROFILE_PROJECTION,
            "ExpressionAttributeNames": _PROFILE_NAMES,
        }
        if start is not None:
            request["ExclusiveStartKey"] = {"pk": {"S": start}}
        response = self._dynamodb.scan(**request)
        last = response.get("LastEvaluatedKey")
        return list(response.get("Items", [])), None if last is None else str(last["pk"]["S"])

    def _claimant(self, email: str) -> str | None:
        """The id of the user who claimed `email` (its canonical key, then its pre-NFKC
        one), or None."""
        for key in _claim_keys(email):
            if len(key.encode()) > _KEY_MAX_BYTES:
                continue  # no item has it; DynamoDB would refuse the read (400, not a miss)
            try:
                claim = self._record.get(key, consistent_read=True, attributes_to_get=["user_id"])
            except DoesNotExist:
                continue
            return str(claim.user_id)
        return None

    def credentials(self, user_id: str) -> tuple[User, str] | None:
        """The user with this id and their password hash (one consistent GetItem), or None."""
        try:
            record = self._record.get(_user_key(user_id), consistent_read=True)
        except DoesNotExist:
            return None
        return _to_user(record), str(record.password_hash)

    def set_password_hash(self, user_id: str, password_hash: str) -> None:
        """Replace a user's password hash (used to upgrade hashing parameters on login)."""
        record = self._record(_user_key(user_id))
        record.update(
            actions=[self._record.password_hash.set(password_hash)],
            condition=self._record.pk.exists(),
        )

    def set_role(self, user_id: str, role: Role) -> User:
        """Change a user's role; UserNotFound if there is no such user."""
        record = self._record(_user_key(user_id))
        try:
            record.update(
                actions=[self._record.role.set(str(role))],
                condition=self._record.pk.exists(),
            )
        except UpdateError as exc:
            if condition_failed(exc):
                raise UserNotFound() from exc
            raise
        return _to_user(record)

    def _get_record(self, user_id: str) -> _UserRecord:
        try:
            record: _UserRecord = self._record.get(_user_key(user_id), consistent_read=True)
            return record
        except DoesNotExist as exc:
            raise UserNotFound() from exc


# A BatchGetItem's keys that DynamoDB leaves unprocessed (throttling, a response over its size
# limit) are asked for again, after 20, 40, 80 ms, then the request is given up (503).
BATCH_GET_ATTEMPTS = 4
BATCH_GET_BACKOFF_SECONDS = 0.02


class LoginLookup:
    """The reads of a log-in (creditml.auth.service.LoginReads).

    `find_login`: the email's claim (users table) and the attempt's throttle counters
    (limits table) in one BatchGetItem across both tables, strongly consistent, so
    throttling adds no call to a log-in; a claim stored under the pre-NFKC key is read in
    the same call. `credentials`: the user's item, one GetItem, read only once the throttle
    has let the attempt through. A successful log-in thus reads exactly as it did before
    throttling existed: two calls.
    """

    def __init__(self, users_table: str, limits_table: str) -> None:
        self._users = UserRepository(users_table)
        self._users_table = users_table
        self._limits_table = limits_table

    @cached_property
    def _dynamodb(self) -> Any:
        return boto3.client("dynamodb")

    def find_login(self, email: str, counter_keys: LoginKeys) -> tuple[str | None, LoginCounters]:
        """The id of the user who claimed `email` (None when nobody did) and the counters
        at `counter_keys`."""
        claim_keys = _claim_keys(email)
        found = self._batch_get(
            {
                self._users_table: claim_keys,
                self._limits_table: [counter_keys.email, counter_keys.ip],
            }
        )
        claims: dict[str, str] = {}
        for raw in found[self._users_table]:
            claim = _UserRecord.from_raw_data(raw)
            claims[str(claim.pk)] = str(claim.user_id)
        user_id = next((claims[key] for key in claim_keys if key in claims), None)
        return user_id, login_counters(found[self._limits_table], counter_keys)

    def credentials(self, user_id: str) -> tuple[User, str] | None:
        """The user and their password hash (one consistent GetItem), or None."""
        return self._users.credentials(user_id)

    def _batch_get(self, keys: dict[str, list[str]]) -> dict[str, list[dict[str, Any]]]:
        """The items with these `pk`s, per table: one BatchGetItem, repeated only for the
        keys DynamoDB left unprocessed; ServiceUnavailable when some still are after
        BATCH_GET_ATTEMPTS calls."""
        found: dict[str, list[dict[str, Any]]] = {table: [] for table in keys}
        request: dict[str, Any] = {
            table: {"Keys": [{"pk": {"S": key}} for key in table_keys], "ConsistentRead": True}
            for table, table_keys in keys.items()
        }
        for attempt in range(BATCH_GET_ATTEMPTS):
            if attempt:
                time.sleep(BATCH_GET_BACKOFF_SECONDS * 2 ** (attempt - 1))
            response = self._dynamodb.batch_get_item(RequestItems=request)
            for table, items in response.get("Responses", {}).items():
                found[table].extend(items)
            request = response.get("UnprocessedKeys") or {}
            if not request:
                return found
        raise ServiceUnavailable()
