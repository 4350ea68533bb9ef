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

from pynamodb.attributes import BooleanAttribute, TTLAttribute, UnicodeAttribute
from pynamodb.exceptions import UpdateError
from pynamodb.models import Model

from creditml.auth.sessions import RotationOutcome
from creditml.auth.tokens import RefreshClaims
from creditml.storage.dynamo import Transaction, TransactionCancelled, condition_failed
from creditml.storage.tables import bind_table


class _SessionRecord(Model):
    pk = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute()
    family_id = UnicodeAttribute(null=True)
    revoked = BooleanAttribute(null=True)
    used_at = UnicodeAttribute(null=True)
    expires_at = TTLAttribute()


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
        tx = Transaction(record)
        tx.put("family", family, condition=record.pk.does_not_exist(), return_old=False)
        tx.put("token", self._token(first), condition=record.pk.does_not_exist(), return_old=False)
        tx.commit()

    def rotate(self, old: RefreshClaims, new: RefreshClaims) -> RotationOutcome:
        """Spend `old` and store `new` atomically, unless `old` was spent or its family revoked."""
        record = self._record
        spent = record(_token_key(old.token_id), user_id=old.user_id)
        tx = Transaction(record)
        tx.check(
            "family",
            record,
            _family_key(old.family_id),
            condition=record.pk.exists()
            & (record.revoked == False)  # noqa: E712 - a DynamoDB condition, not a test
            & (record.user_id == old.user_id),
        )
        tx.put(
            "new_token", self._token(new), condition=record.pk.does_not_exist(), return_old=False
        )
        tx.update(
            "old_token",
            spent,
            actions=[record.used_at.set(str(int(time.time())))],
            condition=record.pk.exists()
            & record.used_at.does_not_exist()
            & (record.family_id == old.family_id),
        )
        try:
            tx.commit()
        except TransactionCancelled as cancelled:
            if "old_token" in cancelled.failed:
                return RotationOutcome.REUSED
            if "family" in cancelled.failed:
                return RotationOutcome.REVOKED
            if cancelled.conflict:
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
            if not condition_failed(exc):
                raise

    def _token(self, claims: RefreshClaims) -> _SessionRecord:
        record: _SessionRecord = self._record(
            _token_key(claims.token_id),
            user_id=claims.user_id,
            family_id=claims.family_id,
            expires_at=datetime.fromtimestamp(claims.expires_at, UTC),
        )
        return record
