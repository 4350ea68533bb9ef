# Generated from creditml/models/crypto.py by scripts/sync_client_shared.py; do not edit.
"""Model encryption: a KMS data key per version, AES-256-GCM, an all-or-nothing transform,
and the split into a small part (DynamoDB) and a big part (S3).

    inner   = AES-256-CTR(K, plaintext)                 K: random, used once
    package = inner || (K XOR SHA-256(inner))           all-or-nothing (Rivest's AONT)
    sealed  = tag || AES-256-GCM(data key, nonce, package, aad = model id | version | digest)
    small   = sealed[:min(SMALL_SIZE_KB * 1024, len(sealed) // 5)]   -> DynamoDB
    big     = sealed[len(small):]                                     -> S3

Recovering K needs the hash of *every* byte of `inner`, so someone holding the data key and
one part (or all but one byte) learns nothing about the model. GCM authenticates the whole:
a flipped bit in either part fails. The data key is wrapped by KMS with the encryption
context {model_id, version}, so a part moved to another model cannot be opened.

A version served by ONNX has a second sealed artifact, its graph: sealed the same way under a
data key of its own, whose encryption context adds {artifact: onnx} and whose associated data
names the artifact, so a graph's parts can never be opened as the model's or the reverse.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
_CTR_NONCE = bytes(16)  # safe: each inner key K encrypts exactly one message


class ModelIntegrityError(Exception):
    """The parts do not authenticate: tampered, mismatched, or for another model."""


class DataKeys(Protocol):
    def generate(self, context: dict[str, str]) -> tuple[bytes, bytes]:
        """A fresh 256-bit data key: (plaintext key, KMS-wrapped key)."""
        ...

    def unwrap(self, wrapped: bytes, context: dict[str, str]) -> bytes:
        """The plaintext of a wrapped data key; fails for any other context."""
        ...


@dataclass(frozen=True)
class SealedModel:
    small: bytes
    big: bytes
    nonce: bytes
    wrapped_key: bytes
    digest: str  # SHA-256 of the plaintext model file, hex

    @property
    def size(self) -> int:
        return len(self.small) + len(self.big)


MODEL = "model"  # the owner's model file (what downloads return)
ONNX_GRAPH = "onnx"  # the exact ONNX graph registration made of it


def encryption_context(model_id: str, version: int, artifact: str = MODEL) -> dict[str, str]:
    context = {"model_id": model_id, "version": str(version)}
    if artifact != MODEL:  # the model's context is what versions were always sealed under
        context["artifact"] = artifact
    return context


def small_part_size(sealed_size: int, small_size_kb: int) -> int:
    """Bytes of the sealed model kept in DynamoDB: min(SMALL_SIZE_KB KiB, 20%)."""
    return min(small_size_kb * 1024, sealed_size // 5)


def _aad(model_id: str, version: int, digest: str, artifact: str = MODEL) -> bytes:
    return f"creditml-{artifact}|{model_id}|{version}|{digest}".encode()


def _ctr(key: bytes, data: bytes | memoryview) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.CTR(_CTR_NONCE)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def _xor(left: bytes, right: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(left, right, strict=True))


def all_or_nothing(plaintext: bytes) -> bytes:
    """The package: CTR under a one-time key, plus that key masked by the hash of it all."""
    inner_key = os.urandom(KEY_BYTES)
    inner = _ctr(inner_key, plaintext)
    return inner + _xor(inner_key, hashlib.sha256(inner).digest())


def undo_all_or_nothing(package: bytes | memoryview) -> bytes:
    view = memoryview(package)  # slices of a view copy nothing
    inner, masked = view[:-KEY_BYTES], bytes(view[-KEY_BYTES:])
    return _ctr(_xor(masked, hashlib.sha256(inner).digest()), inner)


def seal(
    plaintext: bytes,
    model_id: str,
    version: int,
    keys: DataKeys,
    small_size_kb: int,
    artifact: str = MODEL,
) -> SealedModel:
    """Encrypt a model file (or another `artifact` of the version) and split it into its
    small and big parts."""
    digest = hashlib.sha256(plaintext).hexdigest()
    data_key, wrapped = keys.generate(encryption_context(model_id, version, artifact))
    nonce = os.urandom(NONCE_BYTES)
    encrypted = AESGCM(data_key).encrypt(
        nonce, all_or_nothing(plaintext), _aad(model_id, version, digest, artifact)
    )
    # Tag first, so it lives in the small part: GHASH is linear in the ciphertext, so a
    # tag stored beside the big part would let whoever holds the data key and the big part
    # solve for a (tiny) small part.
    sealed = encrypted[-TAG_BYTES:] + encrypted[:-TAG_BYTES]
    cut = small_part_size(len(sealed), small_size_kb)
    return SealedModel(sealed[:cut], sealed[cut:], nonce, wrapped, digest)


def unseal(
    parts: SealedModel, model_id: str, version: int, keys: DataKeys, artifact: str = MODEL
) -> bytes:
    """The model file (or the named `artifact`) from both parts; ModelIntegrityError if
    anything does not check out."""
    data_key = keys.unwrap(parts.wrapped_key, encryption_context(model_id, version, artifact))
    small, big = memoryview(parts.small), memoryview(parts.big)
    if len(small) + len(big) < TAG_BYTES + KEY_BYTES:
        raise ModelIntegrityError("model parts are truncated")
    in_small = min(TAG_BYTES, len(small))  # the tag leads the sealed bytes
    tag = bytes(small[:in_small]) + bytes(big[: TAG_BYTES - in_small])
    body = (small[in_small:], big[TAG_BYTES - in_small :])
    decryptor = Cipher(algorithms.AES(data_key), modes.GCM(parts.nonce, tag)).decryptor()
    decryptor.authenticate_additional_data(_aad(model_id, version, parts.digest, artifact))
    # Streamed into one buffer: joining the parts first would copy the model once more.
    buffer = bytearray(len(body[0]) + len(body[1]) + 15)
    view = memoryview(buffer)
    written = decryptor.update_into(body[0], view)
    written += decryptor.update_into(body[1], view[written:])
    try:
        decryptor.finalize()  # checks the tag: nothing decrypted is used before this
    except InvalidTag as exc:
        raise ModelIntegrityError("model parts failed authentication") from exc
    # No second hash of the plaintext: GCM has authenticated every byte of the package
    # with the digest bound in as associated data, and undoing the transform is
    # deterministic, so the result *is* the file that was sealed (tests prove the digest
    # and every part byte are covered). A re-hash would cost a full pass for nothing.
    plaintext = undo_all_or_nothing(view[:written])
    return plaintext
