"""Load registered models for prediction: fetch both parts of what serves the version, unwrap
its data key with KMS, decrypt and verify; then either open its exact ONNX graph in an ONNX
Runtime session (no scikit-learn import) or, for versions scikit-learn serves, load the model
file through the allowlist (scikit-learn imported then, and only then). Both answer
`predict`/`predict_proba` alike. They stay in an LRU cache bounded by the memory they take
(a session's, or the loaded model's: not file sizes, a compressed file can be a thousandth
of it), keyed by (model id, version), so a warm invocation makes no S3 or KMS call."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Protocol

from creditml.models.crypto import ONNX_GRAPH, DataKeys, SealedModel, unseal
from creditml.observability import logger


class PartSource(Protocol):
    def fetch_serving(self, model_id: str, version: int) -> tuple[str, SealedModel]: ...

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
        artifact, sealed = self._parts.fetch_serving(model_id, version)
        plaintext = unseal(sealed, model_id, version, self._keys, artifact)
        if artifact == ONNX_GRAPH:
            try:
                model, size = _open_graph(plaintext, self._max_memory_bytes)
            except Exception:  # noqa: BLE001 - the model file is stored too: serve it
                # A graph this ONNX Runtime refuses (or that outgrew the memory limit) must
                # not turn every request into a 500: scikit-learn serves the version.
                logger().exception(
                    "A stored ONNX graph did not open; loading the model file",
                    extra={"model_id": model_id, "version": version},
                )
                plaintext = unseal(
                    self._parts.fetch(model_id, version), model_id, version, self._keys
                )
                model, size = _load_file(plaintext, self._max_memory_bytes)
        else:
            model, size = _load_file(plaintext, self._max_memory_bytes)
        self.cache.put((model_id, version), model, size)
        return model, False


def _open_graph(graph: bytes, max_memory_bytes: int | None) -> tuple[Any, int]:
    from creditml.models.onnx_proto import max_graph_bytes
    from creditml.models.onnx_runtime import OnnxModel

    # Refused (GraphRefused) before any session when its session would outgrow the limit.
    limit = None if max_memory_bytes is None else max_graph_bytes(max_memory_bytes)
    session = OnnxModel.load(graph, max_bytes=limit)
    return session, session.nbytes


def _load_file(data: bytes, max_memory_bytes: int | None) -> tuple[Any, int]:
    # Imported here: a container serving only ONNX versions never imports scikit-learn.
    from creditml.models.footprint import model_nbytes
    from creditml.models.safe_loading import load_model

    model = load_model(data, max_memory_bytes)
    return model, model_nbytes(model)
