"""Register an uploaded model file: validate it without executing it, encrypt, split, store,
and mark the version ready, or rejected with a reason. Safe to run twice for one upload."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from creditml.models.crypto import DataKeys, SealedModel, seal
from creditml.models.errors import ModelRejected
from creditml.models.records import VersionStatus
from creditml.models.safe_loading import inspect_model, load_model
from creditml.models.schema import ModelSchema
from creditml.models.service import parse_upload_key
from creditml.observability import logger


class VersionStore(Protocol):
    def version_status(self, model_id: str, version: int) -> VersionStatus | None: ...

    def reject(self, model_id: str, version: int, reason: str) -> bool: ...


class PartStore(Protocol):
    def put_big(self, model_id: str, version: int, sealed: SealedModel) -> str: ...

    def delete_big(self, key: str) -> None: ...

    def commit_ready(
        self,
        model_id: str,
        version: int,
        sealed: SealedModel,
        big_key: str,
        schema: ModelSchema,
        size: int,
    ) -> bool: ...


class UploadStore(Protocol):
    def read(self, key: str, max_bytes: int) -> bytes | None: ...

    def delete(self, key: str) -> None: ...


class Outcome(StrEnum):
    READY = "ready"
    REJECTED = "rejected"
    ALREADY_DONE = "already_done"  # a duplicate delivery of an event already handled
    IGNORED = "ignored"  # not an upload we issued


@dataclass(frozen=True)
class Registration:
    key: str
    outcome: Outcome
    reason: str | None = None


class Registrar:
    def __init__(
        self,
        models: VersionStore,
        parts: PartStore,
        uploads: UploadStore,
        keys: DataKeys,
        small_size_kb: int,
        max_bytes: int,
    ) -> None:
        self._models = models
        self._parts = parts
        self._uploads = uploads
        self._keys = keys
        self._small_size_kb = small_size_kb
        self._max_bytes = max_bytes

    def register(self, key: str) -> Registration:
        """Handle one uploaded object of the uploads bucket."""
        target = parse_upload_key(key)
        if target is None:
            logger().warning("Ignoring an object we did not ask for", extra={"key": key})
            self._uploads.delete(key)
            return Registration(key, Outcome.IGNORED)
        model_id, version = target
        status = self._models.version_status(model_id, version)
        if status is None:
            self._uploads.delete(key)
            return Registration(key, Outcome.IGNORED)
        if status is not VersionStatus.PENDING:
            self._uploads.delete(key)
            return Registration(key, Outcome.ALREADY_DONE)
        data = self._uploads.read(key, self._max_bytes)
        if data is None:  # an earlier delivery already consumed it
            return Registration(key, Outcome.ALREADY_DONE)
        try:
            if len(data) > self._max_bytes:
                raise ModelRejected(f"the file is larger than {self._max_bytes} bytes")
            schema = inspect_model(load_model(data))
        except ModelRejected as rejected:
            self._models.reject(model_id, version, rejected.reason)
            self._uploads.delete(key)
            logger().info(
                "Model rejected",
                extra={"model_id": model_id, "version": version, "reason": rejected.reason},
            )
            return Registration(key, Outcome.REJECTED, rejected.reason)
        sealed = seal(data, model_id, version, self._keys, self._small_size_kb)
        big_key = self._parts.put_big(model_id, version, sealed)
        stored = self._parts.commit_ready(model_id, version, sealed, big_key, schema, len(data))
        if not stored:  # another delivery won the race: drop our copy of the big part
            self._parts.delete_big(big_key)
            return Registration(key, Outcome.ALREADY_DONE)
        self._uploads.delete(key)
        logger().info(
            "Model ready",
            extra={
                "model_id": model_id,
                "version": version,
                "bytes": len(data),
                "estimator": schema.estimator,
            },
        )
        return Registration(key, Outcome.READY)
