"""Model-store services built from settings (for register_model and predict, which carry
the ML layer). Kept apart from creditml.api.dependencies so HTTP functions without the ML
layer never import it."""

from __future__ import annotations

import sys
from functools import cache

from creditml.models.loader import ModelCache, ModelLoader
from creditml.models.registration import Registrar
from creditml.settings import get_settings
from creditml.storage.model_parts import KmsDataKeys, ModelParts, Uploads
from creditml.storage.models import ModelRepository


@cache
def model_parts() -> ModelParts:
    settings = get_settings()
    return ModelParts(settings.model_parts_table, settings.models_bucket)


@cache
def data_keys() -> KmsDataKeys:
    return KmsDataKeys(get_settings().model_key_id)


@cache
def registrar() -> Registrar:
    settings = get_settings()
    return Registrar(
        models=ModelRepository(settings.models_table),
        parts=model_parts(),
        uploads=Uploads(settings.uploads_bucket),
        keys=data_keys(),
        small_size_kb=settings.small_size_kb,
        max_bytes=settings.max_model_bytes,
    )


@cache
def model_loader() -> ModelLoader:
    return ModelLoader(model_parts(), data_keys(), ModelCache(get_settings().model_cache_bytes))


def reset_model_wiring() -> None:
    for factory in (model_parts, data_keys, registrar, model_loader):
        factory.cache_clear()
    predictions = sys.modules.get("creditml.predictions.wiring")
    if predictions is not None:
        predictions.prediction_service.cache_clear()
