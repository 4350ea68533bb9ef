"""Refresh-token sessions: one-time tokens grouped in families, for rotation with reuse detection.

  pk = "FAMILY#<id>"   one login session: owner, revoked flag, expiry (TTL); while live also
                      lookup_key = "LIVE#<user id>", lookup_time = start (removed on
                      revocation), so the `lookups` index lists a user's live sessions
  pk = "TOKEN#<jti>"   one refresh token: family, used_at once spent, expiry (TTL)
  pk = "REVOKED#<id>"  a revoked family's marker: lookup_key = "REVOKED" (one fixed partition
                      of the index), lookup_time = revoked_at (epoch seconds); TTL =
                      revoked_at + the access-token lifetime (+ skew), after which no access
                      token of the family can still be valid

One sparse, overloaded, KEYS_ONLY index serves both lists: DynamoDB (and CloudFormation)
add one index per table update, and two lists of two shapes do not need two.

Rotation is one transaction: spend the old token (condition: exists and not yet spent), check
the family is not revoked, and put the new token. A token presented twice fails the first
condition; the caller then revokes the whole family, which also kills whatever token the
first use produced (OAuth 2.0 Security BCP, refresh token rotation).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

from pynamodb.attributes import (
    BooleanAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
)
from pynamodb.indexes import GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

from creditml.auth.sessions import RotationOutcome
from creditml.auth.tokens import RefreshClaims
from creditml.storage.dynamo import Transaction, TransactionCancelled
from creditml.storage.tables import bind_table

# The index partition of revocation markers. Revocations are rare (a logout, a role change,
# a detected reuse): far below the 1,000 writes/s one partition takes.
_REVOKED_LIST = "REVOKED"
_FAMILY = "FAMILY#"
_REVOKED = "REVOKED#"


def _live_list(user_id: str) -> str:
    return f"LIVE#{user_id}"


class _Lookups(GlobalSecondaryIndex["_SessionRecord"]):  # type: ignore[no-untyped-call]
    class Meta:
        index_name = "lookups"
        projection = KeysOnlyProjection()

    lookup_key = UnicodeAttribute(hash_key=True)
    lookup_time = NumberAttribute(range_key=True)


class _SessionRecord(Model):
    pk = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute()
    family_id = UnicodeAttribute(null=True)
    revoked = BooleanAttribute(null=True)
    used_at = UnicodeAttribute(null=True)
    lookup_key = UnicodeAttribute(null=True)
    lookup_time = NumberAttribute(null=True)
    expires_at = TTLAttribute()

    lookups = _Lookups()


def _family_key(family_id: str) -> str:
    return f"{_FAMILY}{family_id}"


def _token_key(token_id: str) -> str:
    return f"TOKEN#{token_id}"


class SessionRepository:
    """Stores refresh-token families, their one-time tokens and recent revocations."""

    def __init__(self, table_name: str, revocation_retention_seconds: int) -> None:
        """`revocation_retention_seconds`: how long a revocation marker must be listed, i.e.
        the access-token lifetime plus clock skew."""
        self._record = bind_table(_SessionRecord, table_name)
        self._retention = revocation_retention_seconds

    def start(self, first: RefreshClaims, family_expires_at: int) -> None:
        """Open a new session family holding its first refresh token."""
        record = self._record
        family = record(
            _family_key(first.family_id),
            user_id=first.user_id,
            lookup_key=_live_list(first.user_id),
            lookup_time=int(time.time()),
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

    def revoke(self, family_id: str, user_id: str) -> bool:
        """Revoke `user_id`'s session family: none of its refresh tokens will rotate again,
        and a marker lists it among recent revocations so that containers refuse its
        access tokens. One transaction. False when there is no such live family (unknown,
        expired, another user's, or revoked already)."""
        record = self._record
        now = int(time.time())
        family = record(_family_key(family_id), user_id=user_id)
        marker = record(
            f"{_REVOKED}{family_id}",
            user_id=user_id,
            family_id=family_id,
            lookup_key=_REVOKED_LIST,
            lookup_time=now,
            expires_at=datetime.fromtimestamp(now + self._retention, UTC),
        )
        tx = Transaction(record)
        tx.put("marker", marker, condition=record.pk.does_not_exist(), return_old=False)
        tx.update(
            "family",
            family,
            actions=[
                record.revoked.set(True),
                record.lookup_key.remove(),
                record.lookup_time.remove(),
            ],
            condition=record.pk.exists()
            & (record.revoked == False)  # noqa: E712 - a DynamoDB condition, not a test
            & (record.user_id == user_id),
        )
        try:
            tx.commit()
        except TransactionCancelled as cancelled:
            if cancelled.failed:
                return False
            raise
        return True

    def is_live(self, claims: RefreshClaims) -> bool:
        """Whether the session a refresh token names is live and the token itself unspent:
        the family exists, is the token's user's, is not revoked and has not expired (TTL
        deletion lags by up to days), and the token is stored in that family and was never
        rotated. The web UI's check of its session cookie on every request: one strongly
        consistent BatchGetItem, authoritative (no revocation-list delay)."""
        family_key, token_key = _family_key(claims.family_id), _token_key(claims.token_id)
        found = {
            str(item.pk): item
            for item in self._record.batch_get([family_key, token_key], consistent_read=True)
        }
        family, token = found.get(family_key), found.get(token_key)
        if family is None or token is None:
            return False
        return (
            family.revoked is False
            and family.user_id == claims.user_id
            and family.expires_at > datetime.now(UTC)
            and token.family_id == claims.family_id
            and token.used_at is None
        )

    def live_families(self, user_id: str) -> list[str]:
        """Ids of the user's families not revoked (expired ones may be among them until
        their TTL deletes them; revoking those is harmless)."""
        keys = self._record.lookups.query(_live_list(user_id))
        return [str(item.pk).removeprefix(_FAMILY) for item in keys]

    def revoked_since(self, since: int) -> Iterator[tuple[str, int]]:
        """(family id, revoked_at) of every family revoked at or after `since` (epoch
        seconds): one Query of the lookups index (more pages only past 1 MB)."""
        found = self._record.lookups.query(_REVOKED_LIST, self._record.lookup_time >= since)
        for item in found:
            yield str(item.pk).removeprefix(_REVOKED), int(item.lookup_time or 0)

    def _token(self, claims: RefreshClaims) -> _SessionRecord:
        record: _SessionRecord = self._record(
            _token_key(claims.token_id),
            user_id=claims.user_id,
            family_id=claims.family_id,
            expires_at=datetime.fromtimestamp(claims.expires_at, UTC),
        )
        return record
