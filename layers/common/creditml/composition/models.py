"""The models function's services (no ML layer needed)."""

from __future__ import annotations

from creditml.composition import component
from creditml.models.service import ModelService
from creditml.settings import get_settings
from creditml.storage.model_parts import Uploads
from creditml.storage.models import ModelRepository


@component
def model_repository() -> ModelRepository:
    return ModelRepository(get_settings().models_table)


@component
def uploads() -> Uploads:
    return Uploads(get_settings().uploads_bucket)


@component
def model_service() -> ModelService:
    settings = get_settings()
    return ModelService(
        models=model_repository(),
        uploads=uploads(),
        max_bytes=settings.max_model_bytes,
        url_ttl=settings.upload_url_ttl_seconds,
    )
