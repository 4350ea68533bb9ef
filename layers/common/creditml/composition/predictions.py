"""The predict function's services (needs the ML layer)."""

from __future__ import annotations

from collections.abc import Callable

from creditml.composition import component
from creditml.composition.core import ledger, ledger_repository
from creditml.composition.models import model_repository
from creditml.composition.registration import data_keys, model_parts
from creditml.models.loader import ModelCache, ModelLoader
from creditml.observability import record_metric
from creditml.predictions.service import PredictionService
from creditml.settings import Settings, get_settings
from creditml.storage.prediction_outputs import PredictionOutputs


def build_model_loader(settings: Settings) -> ModelLoader:
    """A loader with an empty cache, as in a new container."""
    return ModelLoader(
        model_parts(),
        data_keys(),
        ModelCache(settings.model_cache_bytes),
        max_memory_bytes=settings.model_max_memory_mb * 1024 * 1024,
    )


@component
def model_loader() -> ModelLoader:
    return build_model_loader(get_settings())


def build_prediction_service(
    settings: Settings,
    *,
    loader: ModelLoader | None = None,
    observe: Callable[[str, float], None] = record_metric,
) -> PredictionService:
    """A prediction service configured by `settings` (a new loader unless one is given)."""
    return PredictionService(
        models=model_repository(),
        loader=loader or build_model_loader(settings),
        ledger=ledger(),
        entries=ledger_repository(),
        outputs=PredictionOutputs(settings.prediction_outputs_bucket),
        max_rows=settings.max_prediction_rows,
        max_request_bytes=settings.max_request_bytes,
        inline_outputs_bytes=settings.inline_outputs_bytes,
        observe=observe,
    )


@component
def prediction_service() -> PredictionService:
    return build_prediction_service(get_settings(), loader=model_loader())
