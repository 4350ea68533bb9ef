"""Seal a model download to one device, and open it there.

A download hands a device two things: the version's big part (ciphertext, from S3, cached on
the device by its SHA-256) and a `sealed` object holding everything else needed to decrypt
it (the small part, the version's data key, nonce and digest), encrypted to the device:

    shared = X25519(ephemeral private key, device public key)
    info   = "creditml-download/v1|<model id>|<version>|<device id>|<fingerprint>"
    key    = HKDF-SHA256(shared, salt = ephemeral public || device public, info)
    sealed = AES-256-GCM(key, random nonce, secret, associated data = info)

`fingerprint` is the hex SHA-256 of the device's hardware facts as registered. The device
derives the key with the fingerprint it computes now, so the sealed object opens only with
that device's private key, on hardware that still matches, for that model and version. Neither
it nor the big part alone reveals a byte of the model (the all-or-nothing transform of
creditml.models.crypto), and the data key never leaves the seal.

This module is shared with the Python client: scripts/sync_client_shared.py copies it into
client/creditml_client/_shared/ (a test fails when the copies differ).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from creditml.models.crypto import SealedModel, unseal

SCHEME = "X25519-HKDF-SHA256-AES256GCM"
PUBLIC_KEY_BYTES = 32
_NONCE_BYTES = 12
_FORMAT = "creditml-download-secret/v1"


class SealError(Exception):
    """The sealed object cannot be opened here: another device, other hardware, another
    model or version, or it was altered."""


@dataclass(frozen=True)
class DeviceBinding:
    """What a sealed download is bound to (all of it enters the key derivation)."""

    model_id: str
    version: int
    device_id: str
    fingerprint: str  # hex SHA-256 of the device's hardware facts

    def info(self) -> bytes:
        fields = (self.model_id, str(self.version), self.device_id, self.fingerprint)
        if any("|" in field for field in fields):
            raise ValueError("binding fields may not contain '|'")
        return ("creditml-download/v1|" + "|".join(fields)).encode()


@dataclass(frozen=True)
class DownloadSecret:
    """Everything but the big part that decrypting a version takes."""

    small: bytes
    data_key: bytes
    nonce: bytes
    digest: str  # SHA-256 of the model file, hex
    big_sha256: str  # SHA-256 of the big part's bytes as stored, hex
    big_size: int

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "format": _FORMAT,
                "small": _b64(self.small),
                "data_key": _b64(self.data_key),
                "nonce": _b64(self.nonce),
                "digest": self.digest,
                "big_sha256": self.big_sha256,
                "big_size": self.big_size,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> DownloadSecret:
        try:
            fields: dict[str, Any] = json.loads(data)
            if fields.get("format") != _FORMAT:
                raise SealError("unknown download secret format")
            return cls(
                small=_unb64(fields["small"]),
                data_key=_unb64(fields["data_key"]),
                nonce=_unb64(fields["nonce"]),
                digest=str(fields["digest"]),
                big_sha256=str(fields["big_sha256"]),
                big_size=int(fields["big_size"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise SealError("the download secret is malformed") from exc


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, AttributeError) as exc:
        raise ValueError("not base64") from exc


def encode_public_key(raw: bytes) -> str:
    """A device's raw 32-byte X25519 public key as the API carries it (base64)."""
    return _b64(raw)


def decode_public_key(text: str) -> bytes:
    """The raw 32 bytes of a base64 X25519 public key; ValueError when it is not one, or is
    one of the low-order points (all zeros, …) that no key agreement can use: registering
    such a device would make every download to it fail after the request got that far."""
    raw = _unb64(text)
    if len(raw) != PUBLIC_KEY_BYTES:
        raise ValueError(f"an X25519 public key is {PUBLIC_KEY_BYTES} bytes")
    # A trial agreement: the library refuses the shared secret a low-order point gives.
    X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(raw))
    return raw


def _key(shared: bytes, salt: bytes, binding: DeviceBinding) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=binding.info()).derive(shared)


def seal_for_device(
    secret: DownloadSecret, device_public_key: bytes, binding: DeviceBinding
) -> dict[str, str]:
    """The `sealed` object of a download: `secret` encrypted to one device (see above)."""
    device = X25519PublicKey.from_public_bytes(device_public_key)
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes_raw()
    key = _key(ephemeral.exchange(device), ephemeral_public + device_public_key, binding)
    nonce = os.urandom(_NONCE_BYTES)
    ciphertext = AESGCM(key).encrypt(nonce, secret.to_bytes(), binding.info())
    return {
        "scheme": SCHEME,
        "ephemeral_public_key": _b64(ephemeral_public),
        "nonce": _b64(nonce),
        "ciphertext": _b64(ciphertext),
    }


def open_for_device(
    sealed: Mapping[str, str], device_private_key: X25519PrivateKey, binding: DeviceBinding
) -> DownloadSecret:
    """The secret inside a `sealed` object; SealError when it was not sealed to this
    device, this hardware, this model and version, or it was altered."""
    try:
        if sealed["scheme"] != SCHEME:
            raise SealError(f"unknown seal scheme: {sealed['scheme']!r}")
        ephemeral_public = decode_public_key(sealed["ephemeral_public_key"])
        nonce, ciphertext = _unb64(sealed["nonce"]), _unb64(sealed["ciphertext"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SealError("the sealed object is malformed") from exc
    device_public = device_private_key.public_key().public_bytes_raw()
    shared = device_private_key.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
    key = _key(shared, ephemeral_public + device_public, binding)
    try:
        plaintext = AESGCM(key).decrypt(nonce, ciphertext, binding.info())
    except (InvalidTag, ValueError) as exc:
        raise SealError(
            "the download does not open on this device (another device's key, changed "
            "hardware, another model or version, or altered bytes)"
        ) from exc
    return DownloadSecret.from_bytes(plaintext)


class _KnownKey:
    """The data key itself, as `unseal` asks a key source for it (no KMS on a device)."""

    def __init__(self, data_key: bytes) -> None:
        self._data_key = data_key

    def generate(self, context: dict[str, str]) -> tuple[bytes, bytes]:
        raise NotImplementedError("a device only decrypts")

    def unwrap(self, wrapped: bytes, context: dict[str, str]) -> bytes:
        return self._data_key


def assemble(secret: DownloadSecret, big: bytes, model_id: str, version: int) -> bytes:
    """The model file from the opened secret and the big part (checked against the
    SHA-256 the server sent first); ModelIntegrityError when the parts do not authenticate."""
    if len(big) != secret.big_size or hashlib.sha256(big).hexdigest() != secret.big_sha256:
        raise SealError("the big part is not the one this download was sealed for")
    parts = SealedModel(secret.small, big, secret.nonce, b"", secret.digest)
    return unseal(parts, model_id, version, _KnownKey(secret.data_key))
