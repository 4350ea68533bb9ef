"""Users and their unique emails, in the users table.

Two items per user in one table, written in one transaction:
  pk = "USER#<id>"          the profile (email as entered, role, password hash)
  pk = "EMAIL#<lowercased>" a claim on the email, put with attribute_not_exists(pk)
The claim item makes emails unique case-insensitively with a conditional write: two
concurrent registrations of one email cannot both succeed, which no read-then-write can promise.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pynamodb.attributes import UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import DoesNotExist, UpdateError
from pynamodb.models import Model

from creditml.auth.roles import Role
from creditml.errors import EmailTaken, UserNotFound
from creditml.storage.dynamo import Transaction, TransactionCancelled, condition_failed
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
    return f"EMAIL#{email.casefold()}"


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
        try:
            tx.commit()
        except TransactionCancelled as cancelled:
            if "email" in cancelled.failed:
                raise EmailTaken() from cancelled
            raise

    def get(self, user_id: str) -> User:
        """The user with this id; UserNotFound otherwise."""
        return _to_user(self._get_record(user_id))

    def find_credentials(self, email: str) -> tuple[User, str] | None:
        """The user registered with `email` (any case) and their password hash, or None."""
        try:
            claim = self._record.get(_email_key(email), consistent_read=True)
            record = self._record.get(_user_key(str(claim.user_id)), consistent_read=True)
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
