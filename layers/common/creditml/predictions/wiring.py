"""The prediction service built from settings (predict function only: needs the ML layer)."""

from __future__ import annotations

from functools import cache

from creditml.api.dependencies import ledger, ledger_store
from creditml.api.observability import record_metric
from creditml.models.wiring import model_loader
from creditml.predictions.service import PredictionService
from creditml.settings import get_settings
from creditml.storage.models import ModelRepository
from creditml.storage.prediction_outputs import PredictionOutputs


@cache
def prediction_service() -> PredictionService:
    settings = get_settings()
    return PredictionService(
        models=ModelRepository(settings.models_table),
        loader=model_loader(),
        ledger=ledger(),
        entries=ledger_store(),
        outputs=PredictionOutputs(settings.prediction_outputs_bucket),
        max_rows=settings.max_prediction_rows,
        max_request_bytes=settings.max_request_bytes,
        inline_outputs_bytes=settings.inline_outputs_bytes,
        observe=record_metric,
    )
