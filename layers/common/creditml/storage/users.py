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
"""

from __future__ import annotations

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
from creditml.errors import EmailTaken, ServiceUnavailable, UserNotFound
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


def _user_key(user_id: str) -> str:
    return f"USER#{user_id}"


def _email_key(email: str) -> str:
    return f"EMAIL#{canonical_email(email)}"


def _legacy_email_key(email: str) -> str:
    return f"EMAIL#{legacy_email_key(email)}"


def _claim_keys(email: str) -> list[str]:
    """The keys an email's claim may have: its canonical key, then its pre-NFKC key when
    that differs."""
    keys = [_email_key(email)]
    legacy = _legacy_email_key(email)
    return keys if legacy in keys else [*keys, legacy]


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
        for key in _claim_keys(email):
            try:
                claim = self._record.get(key, consistent_read=True)
            except DoesNotExist:
                continue
            return self.credentials(str(claim.user_id))
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
