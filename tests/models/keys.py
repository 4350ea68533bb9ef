"""Data keys without KMS for unit tests of sealing and loading: the "wrapped" key is the key
itself (what KMS adds, the encryption context check, is tested against moto's KMS)."""

from __future__ import annotations

import os


class ClearKeys:
    def generate(self, context: dict[str, str]) -> tuple[bytes, bytes]:
        key = os.urandom(32)
        return key, key

    def unwrap(self, wrapped: bytes, context: dict[str, str]) -> bytes:
        return wrapped
