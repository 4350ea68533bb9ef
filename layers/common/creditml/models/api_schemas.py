"""Request and response bodies of the models API."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

if TYPE_CHECKING:
    from creditml.models.devices import Device
    from creditml.models.downloads import Download

from creditml.models.records import Model, ModelVersion, Runtime, VersionStatus
from creditml.models.schema import ModelSchema
from creditml.models.service import UNCHANGED, Unchanged
from creditml.text import SafeName, SafeText

Price = Annotated[StrictInt, Field(ge=1, le=1_000_000, description="Credits per predicted row")]
DownloadPrice = Annotated[
    StrictInt,
    Field(
        ge=0,
        le=1_000_000,
        description="Credits one download costs others than the owner and admins, once per "
        "user, device and version; null: not downloadable by others",
    ),
]


class ModelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[SafeName, Field(min_length=1, max_length=100)]
    description: Annotated[SafeText | None, Field(max_length=2000)] = None
    price: Price


class ModelUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    price: Price | None = None
    description: Annotated[SafeText | None, Field(max_length=2000)] = None
    # Absent: unchanged; null: no longer downloadable by others.
    download_price: DownloadPrice | None = None

    def download_price_change(self) -> int | Unchanged | None:
        """The download price to set (None removes it), or UNCHANGED when not sent."""
        return self.download_price if "download_price" in self.model_fields_set else UNCHANGED


class Upload(BaseModel):
    url: str = Field(description="POST the file here as multipart/form-data")
    fields: dict[str, str] = Field(description="Form fields to send before the `file` field")
    expires_in: int
    max_bytes: int


class UploadCreated(BaseModel):
    model_id: str
    version: int
    status: Literal["pending"] = "pending"
    upload: Upload


# Versions registered before ONNX serving have no graph: scikit-learn serves them.
REGISTERED_BEFORE_ONNX = "registered before ONNX serving; upload it again to have it converted"


class VersionPublic(BaseModel):
    version: int
    status: VersionStatus
    reason: str | None
    created_at: datetime
    registered_at: datetime | None
    runtime: Runtime | None = Field(
        None,
        description="Ready versions: what serves predictions, `onnx` (an exact ONNX graph, "
        "checked against the model at registration) or `sklearn`",
    )
    runtime_reason: str | None = Field(
        None, description="Why scikit-learn serves this version (null when ONNX does)"
    )

    @classmethod
    def of(cls, version: ModelVersion) -> VersionPublic:
        ready = version.status is VersionStatus.READY
        reason = version.runtime_reason if version.runtime else REGISTERED_BEFORE_ONNX
        return cls(
            version=version.version,
            status=version.status,
            reason=version.reason,
            created_at=version.created_at,
            registered_at=version.registered_at,
            runtime=(version.runtime or Runtime.SKLEARN) if ready else None,
            runtime_reason=reason if ready else None,
        )


ModelStatus = Literal["pending", "ready", "rejected", "expired", "archived"]


class ModelPublic(BaseModel):
    id: str
    name: str
    description: str | None
    owner_id: str
    price: int
    download_price: int | None = Field(
        None, description="Credits a download costs others; null: not downloadable by others"
    )
    status: ModelStatus = Field(
        description="archived, else ready when a version serves, else the latest version's "
        "status (expired: its upload never arrived in time)"
    )
    reason: str | None = Field(None, description="Why the latest version was rejected or expired")
    version: int | None = Field(None, description="The version that serves predictions")
    latest_version: int
    created_at: datetime
    updated_at: datetime
    input_schema: ModelSchema | None = Field(
        None, description="n_features, feature_names, classes, task, estimator"
    )
    versions: list[VersionPublic] | None = None

    @classmethod
    def of(cls, model: Model, with_versions: bool = False) -> ModelPublic:
        latest = next((v for v in model.versions if v.version == model.latest_version), None)
        serving = model.serving
        status: ModelStatus
        if model.archived:
            status = "archived"
        elif model.serving_version:
            status = "ready"
        else:
            status = str(latest.status) if latest else "pending"  # type: ignore[assignment]
        decided = (VersionStatus.REJECTED, VersionStatus.EXPIRED)
        reason = latest.reason if latest and latest.status in decided else None
        return cls(
            id=model.id,
            name=model.name,
            description=model.description,
            owner_id=model.owner_id,
            price=model.price,
            download_price=model.download_price,
            status=status,
            reason=reason,
            version=model.serving_version,
            latest_version=model.latest_version,
            created_at=model.created_at,
            updated_at=model.updated_at,
            input_schema=serving.model_schema if serving else model.serving_schema,
            versions=[VersionPublic.of(v) for v in model.versions] if with_versions else None,
        )


class ModelList(BaseModel):
    items: list[ModelPublic]


class DeviceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[SafeName, Field(min_length=1, max_length=100)]
    public_key: Annotated[
        str,
        Field(
            min_length=1,
            max_length=100,
            description="The device's X25519 public key, base64 (32 raw bytes); its private "
            "key never leaves the device",
        ),
    ]
    fingerprint: Annotated[
        str,
        Field(
            pattern=r"^[0-9a-f]{64}$",
            description="Hex SHA-256 (64 lowercase digits) of the device's hardware facts",
        ),
    ]


class DevicePublic(BaseModel):
    id: str
    name: str
    created_at: datetime

    @classmethod
    def of(cls, device: Device) -> DevicePublic:
        return cls(id=device.id, name=device.name, created_at=device.created_at)


class DeviceList(BaseModel):
    items: list[DevicePublic]


class DownloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_id: Annotated[str, Field(min_length=1, max_length=64)]
    version: Annotated[
        StrictInt | None,
        Field(ge=1, description="A ready version; by default the one that serves"),
    ] = None


class SealedPart(BaseModel):
    scheme: str = Field(description="X25519-HKDF-SHA256-AES256GCM")
    ephemeral_public_key: str = Field(description="base64")
    nonce: str = Field(description="base64")
    ciphertext: str = Field(
        description="base64: the small part, data key, nonce and digest, sealed to the device"
    )


class DownloadPublic(BaseModel):
    model_id: str
    version: int
    big_url: str = Field(description="Presigned GET of the version's big part (short-lived)")
    big_sha256: str = Field(description="SHA-256 of the big part's bytes, hex")
    big_size: int = Field(description="Size of the big part in bytes")
    sealed: SealedPart
    cost: int = Field(description="Credits this request debited (0: free or already bought)")
    balance: int

    @classmethod
    def of(cls, download: Download) -> DownloadPublic:
        return cls(
            model_id=download.model_id,
            version=download.version,
            big_url=download.big_url,
            big_sha256=download.big_sha256,
            big_size=download.big_size,
            sealed=SealedPart.model_validate(download.sealed),
            cost=download.cost,
            balance=download.balance,
        )
