"""The register_model function's services (needs the ML layer)."""

from __future__ import annotations

from functools import partial

from creditml.composition import component
from creditml.composition.models import model_repository, uploads
from creditml.models.registration import Registrar
from creditml.models.vetting import VettingLimits, vet_for_serving
from creditml.settings import Settings, get_settings
from creditml.storage.model_parts import KmsDataKeys, ModelParts


@component
def model_parts() -> ModelParts:
    settings = get_settings()
    return ModelParts(settings.model_parts_table, settings.models_bucket, settings.models_table)


@component
def data_keys() -> KmsDataKeys:
    return KmsDataKeys(get_settings().model_key_id)


def build_registrar(settings: Settings) -> Registrar:
    """A registrar configured by `settings`."""
    return Registrar(
        models=model_repository(),
        parts=model_parts(),
        uploads=uploads(),
        keys=data_keys(),
        vet=partial(vet_for_serving, limits=VettingLimits.from_settings(settings)),
        small_size_kb=settings.small_size_kb,
        max_bytes=settings.max_model_bytes,
        max_attempts=settings.registration_max_attempts,
    )


@component
def registrar() -> Registrar:
    return build_registrar(get_settings())
