"""Models and versions as the rest of the code sees them (no ML imports)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel

from creditml.models.schema import ModelSchema


class VersionStatus(StrEnum):
    PENDING = "pending"
    READY = "ready"
    REJECTED = "rejected"


class ModelVersion(BaseModel):
    version: int
    status: VersionStatus
    reason: str | None = None
    created_at: datetime
    registered_at: datetime | None = None
    size_bytes: int | None = None
    model_schema: ModelSchema | None = None


class Model(BaseModel):
    id: str
    name: str
    description: str | None
    owner_id: str
    price: int
    created_at: datetime
    updated_at: datetime
    archived: bool
    latest_version: int
    serving_version: int | None
    serving_schema: ModelSchema | None = None
    versions: list[ModelVersion] = []

    @property
    def serving(self) -> ModelVersion | None:
        return next((v for v in self.versions if v.version == self.serving_version), None)
