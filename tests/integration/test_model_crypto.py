"""Model encryption against moto's KMS: round trip, tamper detection, the encryption
context, the all-or-nothing property, and the split arithmetic; for the model file and for
its ONNX graph (sealed the same way under a data key and context of its own)."""

from __future__ import annotations

import hashlib
import os

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from creditml.composition.registration import data_keys
from creditml.models.crypto import (
    MODEL,
    ONNX_GRAPH,
    TAG_BYTES,
    ModelIntegrityError,
    SealedModel,
    encryption_context,
    seal,
    small_part_size,
    unseal,
)

MARKER = b"CREDITML-SECRET-MARKER-7f3a"
MODEL_ID = "1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed"
ARTIFACTS = [MODEL, ONNX_GRAPH]


def _model_bytes(size: int) -> bytes:
    # Markers every ~4 KB, so whichever part an attacker holds has some.
    chunk = os.urandom(4000) + MARKER
    return (chunk * (size // len(chunk) + 1))[:size]


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize("artifact", ARTIFACTS)
@pytest.mark.parametrize("size", [1, 100, 5_000, 1_000_000])
def test_round_trip(size: int, artifact: str) -> None:
    plaintext = _model_bytes(size)
    sealed = seal(plaintext, MODEL_ID, 3, data_keys(), small_size_kb=3, artifact=artifact)
    assert unseal(sealed, MODEL_ID, 3, data_keys(), artifact) == plaintext
    assert sealed.digest == hashlib.sha256(plaintext).hexdigest()


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize("artifact", ARTIFACTS)
@pytest.mark.parametrize("part", ["small", "big"])
def test_a_flipped_bit_in_either_part_fails(part: str, artifact: str) -> None:
    sealed = seal(_model_bytes(50_000), MODEL_ID, 1, data_keys(), 3, artifact)
    damaged = bytearray(getattr(sealed, part))
    damaged[len(damaged) // 2] ^= 0x01
    tampered = SealedModel(**{**sealed.__dict__, part: bytes(damaged)})
    with pytest.raises(ModelIntegrityError):
        unseal(tampered, MODEL_ID, 1, data_keys(), artifact)


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize(("sealed_as", "opened_as"), [(MODEL, ONNX_GRAPH), (ONNX_GRAPH, MODEL)])
def test_a_graph_cannot_be_opened_as_the_model_or_the_reverse(
    sealed_as: str, opened_as: str
) -> None:
    # Whoever can swap parts in the stores cannot serve the model file as a graph (or the
    # graph where the model file is expected): KMS refuses the other artifact's context.
    sealed = seal(_model_bytes(10_000), MODEL_ID, 1, data_keys(), 3, sealed_as)
    with pytest.raises(ModelIntegrityError):
        unseal(sealed, MODEL_ID, 1, data_keys(), opened_as)


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize(("model_id", "version"), [(MODEL_ID, 2), ("other-model", 1)])
def test_another_models_context_is_refused(model_id: str, version: int) -> None:
    sealed = seal(_model_bytes(10_000), MODEL_ID, 1, data_keys(), small_size_kb=3)
    with pytest.raises(ModelIntegrityError):
        unseal(sealed, model_id, version, data_keys())


@pytest.mark.usefixtures("aws")
def test_swapped_digest_fails_authentication() -> None:
    sealed = seal(_model_bytes(10_000), MODEL_ID, 1, data_keys(), small_size_kb=3)
    forged = SealedModel(**{**sealed.__dict__, "digest": hashlib.sha256(b"x").hexdigest()})
    with pytest.raises(ModelIntegrityError):
        unseal(forged, MODEL_ID, 1, data_keys())


def _attack(sealed: SealedModel, data_key: bytes, small: bytes) -> bytes:
    """Everything an attacker with the data key can decrypt, given `small` (the real small
    part, or zeros in its place), and their best try at the AONT key."""
    counter = sealed.nonce + (2).to_bytes(4, "big")  # GCM's first keystream block
    ciphertext = (small + sealed.big)[TAG_BYTES:]  # the tag leads
    decryptor = Cipher(algorithms.AES(data_key), modes.CTR(counter)).decryptor()
    package = decryptor.update(ciphertext) + decryptor.finalize()
    inner, masked = package[:-32], package[-32:]
    guess = bytes(a ^ b for a, b in zip(masked, hashlib.sha256(inner).digest(), strict=True))
    recovery = Cipher(algorithms.AES(guess), modes.CTR(bytes(16))).decryptor()
    return package + recovery.update(inner) + recovery.finalize()


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize("artifact", ARTIFACTS)
def test_data_key_and_big_part_alone_reveal_nothing(artifact: str) -> None:
    plaintext = _model_bytes(200_000)
    assert plaintext.count(MARKER) > 10
    sealed = seal(plaintext, MODEL_ID, 1, data_keys(), 3, artifact)
    data_key = data_keys().unwrap(sealed.wrapped_key, encryption_context(MODEL_ID, 1, artifact))

    # Without the small part (zeros in its place) the marker never shows...
    assert MARKER not in _attack(sealed, data_key, bytes(len(sealed.small)))
    # ...nor does it with every ciphertext byte but one (the first after the leading tag).
    almost = bytearray(sealed.small)
    almost[TAG_BYTES] ^= 0xFF
    assert MARKER not in _attack(sealed, data_key, bytes(almost))
    # Control: with both parts the same procedure recovers it, so the check can see it.
    assert MARKER in _attack(sealed, data_key, sealed.small)


@pytest.mark.parametrize(
    ("sealed_size", "small_kb", "expected_small"),
    [
        (49, 3, 9),
        (100, 3, 20),
        (15_360, 3, 3072),
        (15_361, 3, 3072),
        (10_000, 3, 2000),
        (1_000_000, 3, 3072),
        (1_000_000, 1, 1024),
        (1_000_000, 350, 200_000),
        (10_000_000, 350, 358_400),
    ],
)
def test_split_arithmetic(sealed_size: int, small_kb: int, expected_small: int) -> None:
    assert small_part_size(sealed_size, small_kb) == expected_small


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize(("size", "small_kb"), [(1, 3), (100, 3), (1_000_000, 3), (50_000, 1)])
def test_parts_follow_the_arithmetic(size: int, small_kb: int) -> None:
    sealed = seal(_model_bytes(size), MODEL_ID, 1, data_keys(), small_size_kb=small_kb)
    total = size + 32 + TAG_BYTES  # AONT key block + GCM tag
    assert sealed.size == total
    assert len(sealed.small) == min(small_kb * 1024, total // 5)
    assert len(sealed.big) == total - len(sealed.small)


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize("size", [100, 5_000])
def test_the_tag_lives_in_the_small_part(size: int) -> None:
    # With the tag beside the big part, GHASH's linearity would let the data key + big part
    # solve for a small part of one block; so the tag leads the sealed bytes.
    plaintext = _model_bytes(size)
    sealed = seal(plaintext, MODEL_ID, 1, data_keys(), small_size_kb=3)
    assert len(sealed.small) >= TAG_BYTES
    data_key = data_keys().unwrap(sealed.wrapped_key, encryption_context(MODEL_ID, 1))
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    joined = sealed.small + sealed.big
    standard = joined[TAG_BYTES:] + joined[:TAG_BYTES]  # back to ciphertext || tag
    aad = f"creditml-model|{MODEL_ID}|1|{sealed.digest}".encode()
    assert AESGCM(data_key).decrypt(sealed.nonce, standard, aad)  # the layout is as stated
