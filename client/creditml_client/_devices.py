"""The device this machine uses for downloads, per API base URL and user.

Under the config folder:

- ``keys/<hash of the public key>.pem``: the device's X25519 private key (PKCS#8 PEM,
  unencrypted, mode 0600). It never leaves this machine.
- ``devices/<hash of base URL and user id>.json`` (mode 0600): which device is *the* device
  for that API and user: ``{base_url, user_id, device_id, name, public_key, key_file,
  fingerprint}``, ``fingerprint`` being the one registered.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from creditml_client.errors import DeviceNotRegistered
from creditml_client.paths import write_private


@dataclass(frozen=True)
class DeviceRecord:
    """A registered device as remembered on this machine."""

    base_url: str
    user_id: str
    device_id: str
    name: str
    public_key: str
    key_file: str
    fingerprint: str


class DeviceStore:
    """Device keys and the remembered device of each (base URL, user)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _record_path(self, base_url: str, user_id: str) -> Path:
        name = hashlib.sha256(f"{base_url.rstrip('/')}\n{user_id}".encode()).hexdigest()[:32]
        return self.root / "devices" / f"{name}.json"

    def new_key(self) -> tuple[X25519PrivateKey, Path]:
        """A fresh private key, already written (0600) to its own file."""
        key = X25519PrivateKey.generate()
        public = key.public_key().public_bytes_raw()
        path = self.root / "keys" / f"{hashlib.sha256(public).hexdigest()[:32]}.pem"
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private(path, pem)
        return key, path

    def load(self, base_url: str, user_id: str) -> DeviceRecord | None:
        """The remembered device, or None."""
        try:
            data = json.loads(self._record_path(base_url, user_id).read_text("utf-8"))
            return DeviceRecord(**data)
        except (OSError, ValueError, TypeError):
            return None

    def save(self, record: DeviceRecord) -> None:
        """Remember `record` as the device; the key of the device it replaces is deleted
        (that device cannot be used from here any more)."""
        previous = self.load(record.base_url, record.user_id)
        text = json.dumps(asdict(record), indent=2, sort_keys=True)
        write_private(self._record_path(record.base_url, record.user_id), text.encode())
        if previous is not None and previous.key_file != record.key_file:
            with contextlib.suppress(OSError):
                Path(previous.key_file).unlink()

    def forget(self, base_url: str, user_id: str) -> None:
        """Forget the remembered device and delete its private key."""
        previous = self.load(base_url, user_id)
        if previous is None:
            return
        with contextlib.suppress(OSError):
            self._record_path(base_url, user_id).unlink()
        with contextlib.suppress(OSError):
            Path(previous.key_file).unlink()

    @staticmethod
    def private_key(record: DeviceRecord) -> X25519PrivateKey:
        """The device's private key; DeviceNotRegistered when its file is gone or bad."""
        try:
            key = serialization.load_pem_private_key(
                Path(record.key_file).read_bytes(), password=None
            )
        except (OSError, ValueError) as exc:
            raise DeviceNotRegistered(
                f"the private key of device {record.device_id} ({record.key_file}) cannot be "
                "read: register this device again"
            ) from exc
        if not isinstance(key, X25519PrivateKey):
            raise DeviceNotRegistered(f"{record.key_file} does not hold an X25519 key")
        return key
