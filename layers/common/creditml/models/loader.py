"""Load registered models for prediction: fetch both parts, unwrap the data key with KMS,
decrypt and verify, load through the allowlist; keep them in an LRU cache bounded by the
memory the loaded models take (not their file sizes: a compressed file can be a thousandth
of it), keyed by (model id, version), so a warm invocation makes no S3 or KMS call."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Protocol

from creditml.models.crypto import DataKeys, SealedModel, unseal
from creditml.models.footprint import model_nbytes
from creditml.models.safe_loading import load_model


class PartSource(Protocol):
    def fetch(self, model_id: str, version: int) -> SealedModel: ...


class ModelCache:
    """Least-recently-used models, evicted when the memory they take (`size`, as measured by
    `model_nbytes`) exceeds `max_bytes`; the newest model stays even if it alone does."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, int], tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int]) -> Any | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: tuple[str, int], model: Any, size: int) -> None:
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = (model, size)
            self._bytes += size
            while self._bytes > self.max_bytes and len(self._entries) > 1:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def used_bytes(self) -> int:
        return self._bytes


class ModelLoader:
    def __init__(
        self,
        parts: PartSource,
        keys: DataKeys,
        cache: ModelCache,
        max_memory_bytes: int | None = None,
    ) -> None:
        self._parts = parts
        self._keys = keys
        self.cache = cache
        # Registration already refused models above the limit; this is the second line.
        self._max_memory_bytes = max_memory_bytes

    def load(self, model_id: str, version: int) -> tuple[Any, bool]:
        """The model object and whether it came from the cache."""
        cached = self.cache.get((model_id, version))
        if cached is not None:
            return cached, True
        sealed = self._parts.fetch(model_id, version)
        plaintext = unseal(sealed, model_id, version, self._keys)
        model = load_model(plaintext, self._max_memory_bytes)
        self.cache.put((model_id, version), model, model_nbytes(model))
        return model, False
