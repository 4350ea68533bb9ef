"""Request and response bodies of the models API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from creditml.models.records import Model, ModelVersion, VersionStatus
from creditml.models.schema import ModelSchema

Price = Annotated[StrictInt, Field(ge=1, le=1_000_000, description="Credits per predicted row")]


class ModelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=100)]
    description: Annotated[str | None, Field(max_length=2000)] = None
    price: Price


class ModelUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    price: Price | None = None
    description: Annotated[str | None, Field(max_length=2000)] = None


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


class VersionPublic(BaseModel):
    version: int
    status: VersionStatus
    reason: str | None
    created_at: datetime
    registered_at: datetime | None

    @classmethod
    def of(cls, version: ModelVersion) -> VersionPublic:
        return cls(
            version=version.version,
            status=version.status,
            reason=version.reason,
            created_at=version.created_at,
            registered_at=version.registered_at,
        )


ModelStatus = Literal["pending", "ready", "rejected", "expired", "archived"]


class ModelPublic(BaseModel):
    id: str
    name: str
    description: str | None
    owner_id: str
    price: int
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
