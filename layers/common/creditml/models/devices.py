"""Devices: the machines a user downloads models to. Each is registered with its X25519
public key (the private key never leaves it) and the fingerprint of its hardware, both of
which every download is sealed to (creditml.models.device_seal)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from creditml.auth.tokens import AccessClaims
from creditml.errors import DeviceNotFound, InvalidParameter, TooManyDevices
from creditml.models.device_seal import decode_public_key

# The hex SHA-256 of the device's hardware facts, as the client computes it.
FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
MAX_DEVICES_PER_USER = 20


@dataclass(frozen=True)
class Device:
    id: str
    user_id: str
    name: str
    public_key: str  # base64 of the raw 32-byte X25519 public key
    fingerprint: str
    created_at: datetime


class DeviceStore(Protocol):
    def add(self, device: Device, maximum: int) -> bool:
        """Store a new device unless the user already has `maximum`; False then."""
        ...

    def get(self, user_id: str, device_id: str) -> Device | None: ...

    def of_user(self, user_id: str) -> list[Device]: ...

    def delete(self, user_id: str, device_id: str) -> bool:
        """Remove one of the user's devices; False when there was none."""
        ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


class DeviceService:
    """Register, list and delete the caller's devices. A device belongs to one user: every
    other user's device is, for the caller, one that does not exist (404)."""

    def __init__(
        self,
        devices: DeviceStore,
        max_devices: int = MAX_DEVICES_PER_USER,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._devices = devices
        self._max_devices = max_devices
        self._clock = clock

    def register(
        self, caller: AccessClaims, name: str, public_key: str, fingerprint: str
    ) -> Device:
        """A new device of the caller's: InvalidParameter (422) for a key that is not a
        base64 X25519 public key or a fingerprint that is not 64 lowercase hex digits;
        TooManyDevices (409) at the per-user cap."""
        try:
            decode_public_key(public_key)
        except ValueError as exc:
            raise InvalidParameter(
                "public_key", "must be a base64 X25519 public key (32 bytes)"
            ) from exc
        if not FINGERPRINT.match(fingerprint):
            raise InvalidParameter("fingerprint", "must be 64 lowercase hex digits (SHA-256)")
        device = Device(
            id=str(uuid.uuid4()),
            user_id=caller.user_id,
            name=name,
            public_key=public_key,
            fingerprint=fingerprint,
            created_at=self._clock(),
        )
        if not self._devices.add(device, self._max_devices):
            raise TooManyDevices(self._max_devices)
        return device

    def listed(self, caller: AccessClaims) -> list[Device]:
        """The caller's devices, oldest first."""
        return sorted(self._devices.of_user(caller.user_id), key=lambda d: d.created_at)

    def delete(self, caller: AccessClaims, device_id: str) -> None:
        if not self._devices.delete(caller.user_id, device_id):
            raise DeviceNotFound()

    def owned(self, caller: AccessClaims, device_id: str) -> Device:
        """One of the caller's devices; DeviceNotFound for anyone else's or an unknown id."""
        device = self._devices.get(caller.user_id, device_id)
        if device is None:
            raise DeviceNotFound()
        return device
