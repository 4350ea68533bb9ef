"""Refresh-token sessions: one-time tokens grouped in families, for rotation with reuse detection.

  pk = "FAMILY#<id>"  one login session: owner, revoked flag, expiry (TTL)
  pk = "TOKEN#<jti>"  one refresh token: family, used_at once spent, expiry (TTL)

Rotation is one transaction: spend the old token (condition: exists and not yet spent), check
the family is not revoked, and put the new token. A token presented twice fails the first
condition; the caller then revokes the whole family, which also kills whatever token the
first use produced (OAuth 2.0 Security BCP, refresh token rotation).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from enum import Enum

from pynamodb.attributes import BooleanAttribute, TTLAttribute, UnicodeAttribute
from pynamodb.exceptions import TransactWriteError, UpdateError
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from creditml.auth.tokens import RefreshClaims
from creditml.storage.tables import bind_table, failed_conditions


class _SessionRecord(Model):
    pk = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute()
    family_id = UnicodeAttribute(null=True)
    revoked = BooleanAttribute(null=True)
    used_at = UnicodeAttribute(null=True)
    expires_at = TTLAttribute()


class RotationOutcome(Enum):
    ROTATED = "rotated"
    REUSED = "reused"  # the old token was already spent (or never issued)
    REVOKED = "revoked"  # the family was revoked earlier


def _family_key(family_id: str) -> str:
    return f"FAMILY#{family_id}"


def _token_key(token_id: str) -> str:
    return f"TOKEN#{token_id}"


class SessionRepository:
    """Stores refresh-token families and their one-time tokens."""

    def __init__(self, table_name: str) -> None:
        self._record = bind_table(_SessionRecord, table_name)

    def start(self, first: RefreshClaims, family_expires_at: int) -> None:
        """Open a new session family holding its first refresh token."""
        record = self._record
        family = record(
            _family_key(first.family_id),
            user_id=first.user_id,
            revoked=False,
            expires_at=datetime.fromtimestamp(family_expires_at, UTC),
        )
        token = self._token(first)
        with TransactWrite(connection=record._get_connection().connection) as tx:
            tx.save(family, condition=record.pk.does_not_exist())
            tx.save(token, condition=record.pk.does_not_exist())

    def rotate(self, old: RefreshClaims, new: RefreshClaims) -> RotationOutcome:
        """Spend `old` and store `new` atomically, unless `old` was spent or its family revoked."""
        record = self._record
        spent = record(_token_key(old.token_id), user_id=old.user_id)
        now = str(int(time.time()))
        try:
            with TransactWrite(connection=record._get_connection().connection) as tx:
                tx.condition_check(
                    record,
                    _family_key(old.family_id),
                    condition=record.pk.exists()
                    & (record.revoked == False)  # noqa: E712 - a DynamoDB condition, not a test
                    & (record.user_id == old.user_id),
                )
                tx.save(self._token(new), condition=record.pk.does_not_exist())
                tx.update(
                    spent,
                    actions=[record.used_at.set(now)],
                    condition=record.pk.exists()
                    & record.used_at.does_not_exist()
                    & (record.family_id == old.family_id),
                )
        except TransactWriteError as exc:
            failed = failed_conditions(exc)
            if len(failed) == 3 and failed[2]:
                return RotationOutcome.REUSED
            if failed and failed[0]:
                return RotationOutcome.REVOKED
            if any(
                r is not None and r.code == "TransactionConflict" for r in exc.cancellation_reasons
            ):
                # Two presentations of one refresh token at the same moment: that is reuse.
                return RotationOutcome.REUSED
            raise
        return RotationOutcome.ROTATED

    def revoke(self, family_id: str) -> None:
        """Revoke a session family: none of its refresh tokens will rotate again."""
        try:
            self._record(_family_key(family_id)).update(
                actions=[self._record.revoked.set(True)],
                condition=self._record.pk.exists(),
            )
        except UpdateError as exc:
            # A family that does not exist has nothing left to revoke.
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise

    def _token(self, claims: RefreshClaims) -> _SessionRecord:
        record: _SessionRecord = self._record(
            _token_key(claims.token_id),
            user_id=claims.user_id,
            family_id=claims.family_id,
            expires_at=datetime.fromtimestamp(claims.expires_at, UTC),
        )
        return record
