"""API keys (creditml.auth.api_keys), in the API keys table, keyed (pk, sk):

  pk = "KEY#<sha256 of the key>", sk = "LOOKUP"   who owns the key: what a request
                                                  presenting it reads (one GetItem)
  pk = "USER#<user id>", sk = "KEY#<key id>"      the owner's listing: name, created_at,
                                                  last_used_day, and the hash (to revoke)
  pk = "USER#<user id>", sk = "COUNT"             how many keys the user has (`live`)

A key's two items are written and deleted together, with the count, in one transaction: a
key can never be listed without working or work without being listed, and the count caps
the keys a user has exactly, which no read-then-write (nor a Query of an eventually
consistent index) could promise. Listing is a strongly consistent Query of the user's
partition, so a key shows right after it is made and is gone right after it is revoked.
"""

from __future__ import annotations

from datetime import date

from pynamodb.attributes import NumberAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import DoesNotExist, UpdateError
from pynamodb.models import Model

from creditml.auth.api_keys import ApiKey, KeyOwner
from creditml.errors import ApiKeyNotFound, TooManyApiKeys
from creditml.storage.dynamo import Transaction, TransactionCancelled, condition_failed
from creditml.storage.tables import bind_table

_LOOKUP = "LOOKUP"
_COUNT = "COUNT"
_LISTING_PREFIX = "KEY#"


class _ApiKeyRecord(Model):
    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    user_id = UnicodeAttribute(null=True)
    key_id = UnicodeAttribute(null=True)
    name = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute(null=True)
    key_hash = UnicodeAttribute(null=True)
    last_used_day = UnicodeAttribute(null=True)
    live = NumberAttribute(null=True)


def _lookup_key(hashed: str) -> str:
    return f"KEY#{hashed}"


def _user_key(user_id: str) -> str:
    return f"USER#{user_id}"


def _listing_key(key_id: str) -> str:
    return f"{_LISTING_PREFIX}{key_id}"


def _to_key(record: _ApiKeyRecord) -> ApiKey:
    day = record.last_used_day
    return ApiKey(
        id=str(record.key_id),
        name=str(record.name),
        created_at=record.created_at,
        last_used_day=date.fromisoformat(day) if day else None,
    )


class ApiKeyRepository:
    """Stores API keys by the hash of their secret (creditml.auth.api_keys.ApiKeyStore)."""

    def __init__(self, table_name: str) -> None:
        self._record = bind_table(_ApiKeyRecord, table_name)

    def create(self, user_id: str, key: ApiKey, hashed: str, maximum: int) -> None:
        """Store `key` under `hashed` with its listing, and count it; TooManyApiKeys (nothing
        written) when the user already has `maximum` keys."""
        record = self._record
        lookup = record(_lookup_key(hashed), _LOOKUP, user_id=user_id, key_id=key.id)
        listing = record(
            _user_key(user_id),
            _listing_key(key.id),
            key_id=key.id,
            name=key.name,
            created_at=key.created_at,
            key_hash=hashed,
        )
        tx = Transaction(record)
        tx.put("lookup", lookup, condition=record.pk.does_not_exist(), return_old=False)
        tx.put("listing", listing, condition=record.pk.does_not_exist(), return_old=False)
        tx.update(
            "count",
            record(_user_key(user_id), _COUNT),
            actions=[record.live.add(1)],
            condition=record.live.does_not_exist() | (record.live < maximum),
        )
        try:
            tx.commit()
        except TransactionCancelled as cancelled:
            if "count" in cancelled.failed:
                raise TooManyApiKeys(maximum) from cancelled
            raise

    def keys_of(self, user_id: str) -> list[ApiKey]:
        """The user's keys, newest first (one strongly consistent Query; at most the cap)."""
        records = self._record.query(
            _user_key(user_id),
            self._record.sk.startswith(_LISTING_PREFIX),
            consistent_read=True,
        )
        keys = [_to_key(record) for record in records]
        return sorted(keys, key=lambda key: (key.created_at, key.id), reverse=True)

    def revoke(self, user_id: str, key_id: str) -> None:
        """Delete the user's key `key_id`, its lookup and its count; ApiKeyNotFound when the
        user has no such key (another user's key included: it is not in this partition)."""
        record = self._record
        try:
            listing = record.get(_user_key(user_id), _listing_key(key_id), consistent_read=True)
        except DoesNotExist as exc:
            raise ApiKeyNotFound() from exc
        tx = Transaction(record)
        tx.delete("listing", listing, condition=record.pk.exists())
        tx.delete("lookup", record(_lookup_key(str(listing.key_hash)), _LOOKUP), condition=None)
        tx.update(
            "count",
            record(_user_key(user_id), _COUNT),
            actions=[record.live.add(-1)],
            condition=record.live > 0,
        )
        try:
            tx.commit()
        except TransactionCancelled as cancelled:
            if "listing" in cancelled.failed:  # revoked concurrently
                raise ApiKeyNotFound() from cancelled
            raise

    def owner_of(self, hashed: str) -> KeyOwner | None:
        """Who owns the key with this hash (one strongly consistent GetItem), or None."""
        try:
            found = self._record.get(
                _lookup_key(hashed),
                _LOOKUP,
                consistent_read=True,
                attributes_to_get=["user_id", "key_id"],
            )
        except DoesNotExist:
            return None
        return KeyOwner(key_id=str(found.key_id), user_id=str(found.user_id))

    def mark_used(self, user_id: str, key_id: str, day: date) -> None:
        """Set the key's last_used_day to `day` (one UpdateItem) unless it is already that
        day or later, or the key is gone: both leave the item as it is."""
        record = self._record
        listing = record(_user_key(user_id), _listing_key(key_id))
        stamp = day.isoformat()
        try:
            listing.update(
                actions=[record.last_used_day.set(stamp)],
                condition=record.pk.exists()
                & (record.last_used_day.does_not_exist() | (record.last_used_day < stamp)),
            )
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
