"""The models function's services and the upload expiry sweep's (no ML layer needed)."""

from __future__ import annotations

from datetime import UTC, datetime

from creditml.composition import component
from creditml.models.registration import expire_overdue_uploads
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
        upload_grace_seconds=settings.upload_grace_seconds,
    )


def expire_uploads() -> int:
    """One run of the upload expiry sweep (the schedule's, and `creditml invoke`'s)."""
    return expire_overdue_uploads(model_repository(), uploads(), datetime.now(UTC))
