"""Devices in the devices table (pk `user_id`, sk `device_id`): one partition per user, so
listing a user's devices is one query and nobody can address another user's device."""

from __future__ import annotations

from datetime import datetime

from pynamodb.attributes import UnicodeAttribute
from pynamodb.exceptions import DeleteError, DoesNotExist, PutError
from pynamodb.models import Model

from creditml.models.devices import Device
from creditml.storage.dynamo import condition_failed
from creditml.storage.tables import bind_table


class _DeviceItem(Model):
    user_id = UnicodeAttribute(hash_key=True)
    device_id = UnicodeAttribute(range_key=True)
    name = UnicodeAttribute()
    public_key = UnicodeAttribute()
    fingerprint = UnicodeAttribute()
    created_at = UnicodeAttribute()


def _device(item: _DeviceItem) -> Device:
    return Device(
        id=str(item.device_id),
        user_id=str(item.user_id),
        name=str(item.name),
        public_key=str(item.public_key),
        fingerprint=str(item.fingerprint),
        created_at=datetime.fromisoformat(str(item.created_at)),
    )


class DeviceRepository:
    """Reads and writes users' devices."""

    def __init__(self, table_name: str) -> None:
        self._item = bind_table(_DeviceItem, table_name)

    def add(self, device: Device, maximum: int) -> bool:
        """Store `device` unless its user already has `maximum` devices (False then). The
        count is read first: two registrations racing at the cap may both pass, which a
        cap against clutter (not a security bound) tolerates."""
        item = self._item
        held = item.count(device.user_id, consistent_read=True, limit=maximum)
        if held >= maximum:
            return False
        record = item(
            device.user_id,
            device.id,
            name=device.name,
            public_key=device.public_key,
            fingerprint=device.fingerprint,
            created_at=device.created_at.isoformat(timespec="milliseconds"),
        )
        try:
            record.save(condition=item.device_id.does_not_exist())
        except PutError as exc:  # a random id taken: never in practice, never overwrite
            if condition_failed(exc):
                raise RuntimeError("device id collision") from exc
            raise
        return True

    def get(self, user_id: str, device_id: str) -> Device | None:
        try:
            return _device(self._item.get(user_id, device_id, consistent_read=True))
        except DoesNotExist:
            return None

    def of_user(self, user_id: str) -> list[Device]:
        return [_device(item) for item in self._item.query(user_id, consistent_read=True)]

    def delete(self, user_id: str, device_id: str) -> bool:
        item = self._item
        try:
            item(user_id, device_id).delete(condition=item.device_id.exists())
        except DeleteError as exc:
            if condition_failed(exc):
                return False
            raise
        return True
