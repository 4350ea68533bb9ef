"""Register an uploaded model file: validate it without executing it, encrypt, split, store,
and mark the version ready, or rejected with a reason. Safe to run twice for one upload."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

from creditml.models.crypto import MODEL, ONNX_GRAPH, DataKeys, SealedModel, seal
from creditml.models.errors import ModelRejected
from creditml.models.records import (
    ServingChoice,
    UploadedFile,
    VersionStatus,
    VersionUpload,
    Vetted,
)
from creditml.models.schema import ModelSchema
from creditml.models.service import parse_upload_key, upload_key, upload_token_matches
from creditml.observability import logger

# Both small parts (the model's and its graph's) live on one parts item, and DynamoDB caps an
# item at 400 KB. The model's small part follows SMALL_SIZE_KB (at most 350, the template's
# bound); the graph's follows the same rule within what is left of this budget, and at
# least 1 KB (the all-or-nothing transform needs every byte of a package: any small part
# that is missing keeps the whole graph unreadable).
SMALL_PARTS_KB = 350


def graph_small_size_kb(model_small_bytes: int, small_size_kb: int) -> int:
    """SMALL_SIZE_KB for a version's graph, given the size of its model's small part."""
    left = SMALL_PARTS_KB - -(-model_small_bytes // 1024)
    return max(1, min(small_size_kb, left))


# What a version is told when registration kept failing for reasons of ours: nothing about
# the cause (that is in the logs).
FAILED_REASON = "the file could not be registered; upload it again as a new version"


class VersionStore(Protocol):
    def upload_state(self, model_id: str, version: int) -> VersionUpload | None: ...

    def count_attempt(self, model_id: str, version: int) -> int | None: ...

    def reject(self, model_id: str, version: int, reason: str) -> bool: ...

    def expire(self, model_id: str, version: int, now: datetime) -> bool: ...


class OverdueVersions(Protocol):
    def overdue_uploads(self, now: datetime, limit: int) -> list[tuple[str, int]]: ...

    def expire(self, model_id: str, version: int, now: datetime) -> bool: ...


class PartStore(Protocol):
    def put_big(
        self, model_id: str, version: int, sealed: SealedModel, artifact: str = MODEL
    ) -> str: ...

    def delete_big(self, key: str) -> None: ...

    def committed_big_key(self, model_id: str, version: int) -> str | None: ...

    def commit_ready(
        self,
        model_id: str,
        version: int,
        sealed: SealedModel,
        big_key: str,
        schema: ModelSchema,
        size: int,
        serving: ServingChoice | None = None,
    ) -> bool: ...


class UploadStore(Protocol):
    def read(self, key: str, max_bytes: int) -> UploadedFile | None: ...

    def delete(self, key: str) -> None: ...


class Outcome(StrEnum):
    READY = "ready"
    REJECTED = "rejected"
    EXPIRED = "expired"  # the upload came after its version's deadline: refused
    ALREADY_DONE = "already_done"  # a duplicate delivery of an event already handled
    IGNORED = "ignored"  # not an upload we issued (unknown key, or not its version's token)


@dataclass(frozen=True)
class Registration:
    key: str
    outcome: Outcome
    reason: str | None = None


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Registrar:
    """Turns each upload into a ready or rejected version, never leaving it pending.

    `vet` reads a model file without running it and returns its schema and what will serve
    it (an exact ONNX graph, or scikit-learn with the reason), or raises ModelRejected with
    the reason. The graph is sealed and split like the model, under a data key of its own.
    Any other error is re-raised so that the event source retries; every attempt is counted
    on the version, and the last of `max_attempts` (S3 invokes asynchronously: 1 + 2
    retries) rejects it with a reason that names no internals.
    """

    def __init__(
        self,
        models: VersionStore,
        parts: PartStore,
        uploads: UploadStore,
        keys: DataKeys,
        vet: Callable[[bytes], Vetted],
        small_size_kb: int,
        max_bytes: int,
        max_attempts: int = 3,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._models = models
        self._parts = parts
        self._uploads = uploads
        self._keys = keys
        self._vet = vet
        self._small_size_kb = small_size_kb
        self._max_bytes = max_bytes
        self._max_attempts = max_attempts
        self._clock = clock

    def register(self, key: str) -> Registration:
        """Handle one uploaded object of the uploads bucket."""
        target = parse_upload_key(key)
        if target is None:
            logger().warning("Ignoring an object we did not ask for", extra={"key": key})
            self._uploads.delete(key)
            return Registration(key, Outcome.IGNORED)
        model_id, version = target
        state = self._models.upload_state(model_id, version)
        if state is None:
            self._uploads.delete(key)
            return Registration(key, Outcome.IGNORED)
        if state.status is not VersionStatus.PENDING:
            self._uploads.delete(key)
            if state.status is VersionStatus.EXPIRED:
                return self._refuse_late(key, model_id, version)
            return Registration(key, Outcome.ALREADY_DONE)
        upload = self._uploads.read(key, self._max_bytes)
        if upload is None:  # an earlier delivery already consumed it
            return Registration(key, Outcome.ALREADY_DONE)
        return self._accept(key, model_id, version, state, upload)

    def _accept(
        self, key: str, model_id: str, version: int, state: VersionUpload, upload: UploadedFile
    ) -> Registration:
        if not upload_token_matches(upload.token, state.token_hash):
            # Someone else's upload form aimed at this key (S3 enforces the POST policy;
            # a local stack does not). The version stays pending for its owner's upload.
            logger().warning(
                "Ignoring an upload without its version's token",
                extra={"model_id": model_id, "version": version},
            )
            self._uploads.delete(key)
            return Registration(key, Outcome.IGNORED)
        if state.deadline is not None and upload.uploaded_at > state.deadline:
            self._models.expire(model_id, version, self._clock())
            self._uploads.delete(key)
            return self._refuse_late(key, model_id, version)
        attempt = self._models.count_attempt(model_id, version)
        if attempt is None:  # decided meanwhile (another delivery, or the expiry sweep)
            self._uploads.delete(key)
            return Registration(key, Outcome.ALREADY_DONE)
        try:
            return self._register(key, model_id, version, upload.data)
        except Exception:
            if attempt < self._max_attempts:
                raise  # the event source retries
            logger().exception(
                "Registration failed on its last attempt",
                extra={"model_id": model_id, "version": version, "attempt": attempt},
            )
            return self._reject(key, model_id, version, FAILED_REASON)

    def _register(self, key: str, model_id: str, version: int, data: bytes) -> Registration:
        try:
            if not data:
                raise ModelRejected("the file is empty")
            if len(data) > self._max_bytes:
                raise ModelRejected(f"the file is larger than {self._max_bytes} bytes")
            vetted = self._vet(data)
        except ModelRejected as rejected:
            return self._reject(key, model_id, version, rejected.reason)
        schema = vetted.schema
        sealed = seal(data, model_id, version, self._keys, self._small_size_kb)
        big_keys = [self._parts.put_big(model_id, version, sealed)]
        serving = ServingChoice(vetted.runtime, vetted.runtime_reason)
        if vetted.graph is not None:
            graph = seal(
                vetted.graph,
                model_id,
                version,
                self._keys,
                graph_small_size_kb(len(sealed.small), self._small_size_kb),
                ONNX_GRAPH,
            )
            big_keys.append(self._parts.put_big(model_id, version, graph, ONNX_GRAPH))
            serving = ServingChoice(vetted.runtime, vetted.runtime_reason, (graph, big_keys[1]))
        try:
            stored = self._parts.commit_ready(
                model_id, version, sealed, big_keys[0], schema, len(data), serving
            )
        except Exception:
            # The big parts are ours to drop only if the commit surely did not happen (a
            # timeout may hide one that did): the stored item says which.
            if self._parts.committed_big_key(model_id, version) != big_keys[0]:
                self._delete_big(big_keys)
            raise
        if not stored:  # another delivery won the race: drop our copies of the big parts
            self._delete_big(big_keys)
            return Registration(key, Outcome.ALREADY_DONE)
        self._uploads.delete(key)
        logger().info(
            "Model ready",
            extra={
                "model_id": model_id,
                "version": version,
                "bytes": len(data),
                "estimator": schema.estimator,
                "runtime": str(vetted.runtime),
                "runtime_reason": vetted.runtime_reason,
            },
        )
        return Registration(key, Outcome.READY)

    def _delete_big(self, big_keys: list[str]) -> None:
        for big_key in big_keys:
            self._parts.delete_big(big_key)

    def _reject(self, key: str, model_id: str, version: int, reason: str) -> Registration:
        self._models.reject(model_id, version, reason)
        self._uploads.delete(key)
        logger().info(
            "Model rejected", extra={"model_id": model_id, "version": version, "reason": reason}
        )
        return Registration(key, Outcome.REJECTED, reason)

    @staticmethod
    def _refuse_late(key: str, model_id: str, version: int) -> Registration:
        logger().warning(
            "Refusing an upload that came after its deadline",
            extra={"model_id": model_id, "version": version},
        )
        return Registration(key, Outcome.EXPIRED)


def expire_overdue_uploads(
    versions: OverdueVersions,
    uploads: UploadStore,
    now: datetime,
    batch: int = 100,
    max_batches: int = 50,
) -> int:
    """Mark expired every pending version whose upload did not arrive before its deadline
    (and remove any late object at its key); returns how many were expired. What the
    schedule, and `creditml invoke`, run; what one run leaves, the next one takes."""
    expired = 0
    for _ in range(max_batches):
        overdue = versions.overdue_uploads(now, batch)
        done = 0
        for model_id, version in overdue:
            if versions.expire(model_id, version, now):
                done += 1
                uploads.delete(upload_key(model_id, version))
        expired += done
        # A short page is the last one; a page with nothing left to expire is only the
        # index catching up (it is eventually consistent).
        if len(overdue) < batch or not done:
            break
    if expired:
        logger().info("Expired pending uploads", extra={"expired": expired})
    return expired
