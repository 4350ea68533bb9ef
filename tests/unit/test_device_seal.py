"""The device seal: a download opens only with the device's key, on the registered hardware,
for its model and version; the big part must be the one it was sealed for."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from creditml.models.crypto import ModelIntegrityError, seal
from creditml.models.device_seal import (
    SCHEME,
    DeviceBinding,
    DownloadSecret,
    SealError,
    assemble,
    decode_public_key,
    encode_public_key,
    open_for_device,
    seal_for_device,
)

pytestmark = pytest.mark.unit

MODEL_ID = "5f0b8a4e-57a2-4bb4-9d4e-0d5f3c1b2a11"
FINGERPRINT = hashlib.sha256(b"machine-id|x86_64|cpu").hexdigest()


class _LocalKeys:
    """A data key source without KMS: the test keeps the plaintext key."""

    def __init__(self) -> None:
        self.key = os.urandom(32)

    def generate(self, context: dict[str, str]) -> tuple[bytes, bytes]:
        return self.key, b"wrapped:" + context["model_id"].encode()

    def unwrap(self, wrapped: bytes, context: dict[str, str]) -> bytes:
        return self.key


def _download(
    plaintext: bytes, device: X25519PrivateKey, binding: DeviceBinding
) -> tuple[dict[str, str], bytes]:
    keys = _LocalKeys()
    parts = seal(plaintext, binding.model_id, binding.version, keys, small_size_kb=1)
    secret = DownloadSecret(
        small=parts.small,
        data_key=keys.key,
        nonce=parts.nonce,
        digest=parts.digest,
        big_sha256=hashlib.sha256(parts.big).hexdigest(),
        big_size=len(parts.big),
    )
    public = device.public_key().public_bytes_raw()
    return seal_for_device(secret, public, binding), parts.big


@pytest.fixture
def device() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


@pytest.fixture
def binding() -> DeviceBinding:
    return DeviceBinding(MODEL_ID, 3, "device-1", FINGERPRINT)


def test_the_device_gets_the_model_file_back(
    device: X25519PrivateKey, binding: DeviceBinding
) -> None:
    plaintext = os.urandom(20_000)
    sealed, big = _download(plaintext, device, binding)
    assert sealed["scheme"] == SCHEME
    secret = open_for_device(sealed, device, binding)
    assert assemble(secret, big, MODEL_ID, 3) == plaintext


def test_the_sealed_object_holds_no_key_or_part_in_the_clear(
    device: X25519PrivateKey, binding: DeviceBinding
) -> None:
    plaintext = os.urandom(20_000)
    sealed, _ = _download(plaintext, device, binding)
    secret = open_for_device(sealed, device, binding)
    blob = base64.b64decode(sealed["ciphertext"])
    assert secret.data_key not in blob
    assert secret.small[:64] not in blob


def test_another_devices_key_cannot_open_it(
    device: X25519PrivateKey, binding: DeviceBinding
) -> None:
    sealed, _ = _download(os.urandom(5_000), device, binding)
    with pytest.raises(SealError, match="does not open on this device"):
        open_for_device(sealed, X25519PrivateKey.generate(), binding)


@pytest.mark.parametrize(
    "change",
    [
        {"fingerprint": hashlib.sha256(b"other hardware").hexdigest()},
        {"device_id": "device-2"},
        {"version": 4},
        {"model_id": "another-model"},
    ],
)
def test_a_changed_binding_cannot_open_it(
    device: X25519PrivateKey, binding: DeviceBinding, change: dict[str, object]
) -> None:
    sealed, _ = _download(os.urandom(5_000), device, binding)
    with pytest.raises(SealError):
        open_for_device(sealed, device, dataclasses.replace(binding, **change))  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["ciphertext", "nonce", "ephemeral_public_key"])
def test_an_altered_seal_is_refused(
    device: X25519PrivateKey, binding: DeviceBinding, field: str
) -> None:
    sealed, _ = _download(os.urandom(5_000), device, binding)
    raw = bytearray(base64.b64decode(sealed[field]))
    raw[0] ^= 0x01
    with pytest.raises(SealError):
        open_for_device({**sealed, field: base64.b64encode(raw).decode()}, device, binding)


@pytest.mark.parametrize(
    "sealed",
    [{}, {"scheme": "rot13"}, {"scheme": SCHEME, "nonce": "!!", "ciphertext": "", "x": ""}],
)
def test_a_malformed_seal_is_a_seal_error(
    device: X25519PrivateKey, binding: DeviceBinding, sealed: dict[str, str]
) -> None:
    with pytest.raises(SealError):
        open_for_device(sealed, device, binding)


def test_a_different_big_part_is_refused_before_decrypting(
    device: X25519PrivateKey, binding: DeviceBinding
) -> None:
    sealed, big = _download(os.urandom(20_000), device, binding)
    secret = open_for_device(sealed, device, binding)
    tampered = bytearray(big)
    tampered[-1] ^= 0x01
    with pytest.raises(SealError, match="big part"):
        assemble(secret, bytes(tampered), MODEL_ID, 3)


def test_a_forged_secret_with_a_matching_hash_still_fails_authentication(
    device: X25519PrivateKey, binding: DeviceBinding
) -> None:
    sealed, big = _download(os.urandom(20_000), device, binding)
    secret = open_for_device(sealed, device, binding)
    forged_big = bytes(len(big))
    forged = dataclasses.replace(secret, big_sha256=hashlib.sha256(forged_big).hexdigest())
    with pytest.raises(ModelIntegrityError):
        assemble(forged, forged_big, MODEL_ID, 3)


def test_public_keys_round_trip_and_bad_ones_are_refused() -> None:
    raw = X25519PrivateKey.generate().public_key().public_bytes_raw()
    assert decode_public_key(encode_public_key(raw)) == raw
    for bad in ["", base64.b64encode(b"short").decode()]:
        with pytest.raises(ValueError, match="32 bytes"):
            decode_public_key(bad)
    for bad in ["not base64!", "ÿÿ"]:
        with pytest.raises(ValueError, match="not base64"):
            decode_public_key(bad)


@pytest.mark.parametrize("point", [bytes(32), (1).to_bytes(32, "little")])
def test_low_order_public_keys_are_refused(point: bytes) -> None:
    """A device registered with one would make every download to it fail (after a sale)."""
    with pytest.raises(ValueError, match="shared key"):
        decode_public_key(encode_public_key(point))


def test_binding_fields_cannot_smuggle_a_separator() -> None:
    with pytest.raises(ValueError, match="may not contain"):
        DeviceBinding("a|b", 1, "d", FINGERPRINT).info()
