"""Models and versions as the rest of the code sees them (no ML imports)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel

from creditml.models.schema import ModelSchema

if TYPE_CHECKING:
    from creditml.models.crypto import SealedModel


class VersionStatus(StrEnum):
    PENDING = "pending"
    READY = "ready"
    REJECTED = "rejected"
    # The upload never arrived while its presigned POST (plus a grace period) was valid.
    EXPIRED = "expired"


class Runtime(StrEnum):
    """What serves a ready version's predictions: its exact ONNX graph, or scikit-learn (the
    model has no exact converter, or the exactness gate found a difference)."""

    ONNX = "onnx"
    SKLEARN = "sklearn"


# Why scikit-learn serves a model whose conversion failed in a way that is ours, not the
# model's (crashed, out of time or CPU; details in the registering function's logs).
CONVERSION_FAILED = "converting it to ONNX failed; scikit-learn serves it"

EXPIRED_REASON = "No file arrived before the upload URL expired; open a new version to upload."


@dataclass(frozen=True)
class VersionUpload:
    """What registration needs to know of a version before it accepts an upload for it."""

    status: VersionStatus
    token_hash: str | None
    deadline: datetime | None


@dataclass(frozen=True)
class UploadedFile:
    """An object of the uploads bucket: its bytes, the upload token it carries (None when it
    carries none) and when it was stored."""

    data: bytes
    token: str | None
    uploaded_at: datetime


class ModelVersion(BaseModel):
    version: int
    status: VersionStatus
    reason: str | None = None
    created_at: datetime
    registered_at: datetime | None = None
    size_bytes: int | None = None
    model_schema: ModelSchema | None = None
    # Ready versions: what serves them, and why scikit-learn when it does (None for versions
    # registered before ONNX serving: scikit-learn serves them).
    runtime: Runtime | None = None
    runtime_reason: str | None = None
    # While pending: the latest time its upload may complete (the presigned POST's
    # lifetime plus a grace period); after it the version is expired.
    upload_deadline: datetime | None = None

    def as_of(self, now: datetime) -> ModelVersion:
        """The version as it stands at `now`: a pending version past its upload deadline is
        expired even before the sweep has recorded it."""
        if (
            self.status is VersionStatus.PENDING
            and self.upload_deadline is not None
            and now > self.upload_deadline
        ):
            return self.model_copy(
                update={"status": VersionStatus.EXPIRED, "reason": EXPIRED_REASON}
            )
        return self


class Model(BaseModel):
    id: str
    name: str
    description: str | None
    owner_id: str
    price: int
    created_at: datetime
    updated_at: datetime
    archived: bool
    # Credits a download costs anyone but the owner and admins (per user, device and
    # version); None: others may not download it.
    download_price: int | None = None
    latest_version: int
    serving_version: int | None
    serving_schema: ModelSchema | None = None
    versions: list[ModelVersion] = []

    def as_of(self, now: datetime) -> Model:
        """The model with each version as it stands at `now` (see ModelVersion.as_of)."""
        return self.model_copy(update={"versions": [v.as_of(now) for v in self.versions]})

    @property
    def serving(self) -> ModelVersion | None:
        return next((v for v in self.versions if v.version == self.serving_version), None)


@dataclass(frozen=True)
class StoredParts:
    """A registered version's parts as a download needs them: the small part and key
    material from the parts table, and where the big part is, how big it is and its hash
    (so a download never reads the big part itself)."""

    small: bytes
    wrapped_key: bytes
    nonce: bytes
    digest: str
    big_key: str
    big_size: int
    big_sha256: str


@dataclass(frozen=True)
class Vetted:
    """What registration learned of an accepted model file: its schema, what will serve it
    (with the reason when scikit-learn does) and, for ONNX, the exact graph made of it."""

    schema: ModelSchema
    runtime: Runtime = Runtime.SKLEARN
    runtime_reason: str | None = None
    graph: bytes | None = None


@dataclass(frozen=True)
class ServingChoice:
    """What a ready version is stored with besides its model: the runtime, why scikit-learn
    when it serves, and for ONNX the sealed graph with its big part's key."""

    runtime: Runtime = Runtime.SKLEARN
    reason: str | None = None
    graph: tuple[SealedModel, str] | None = None
