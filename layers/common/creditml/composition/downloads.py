"""The models function's device and download services. A module of its own: the device
seal's X25519 and HKDF are imported only where devices and downloads are served (and a
download seals a version's parts, never loads it: no ML layer)."""

from __future__ import annotations

from creditml.composition import component
from creditml.composition.core import ledger, ledger_repository
from creditml.composition.models import model_repository
from creditml.models.devices import DeviceService
from creditml.models.downloads import DownloadService
from creditml.settings import get_settings
from creditml.storage.devices import DeviceRepository
from creditml.storage.model_parts import KmsDataKeys, ModelParts


@component
def device_service() -> DeviceService:
    settings = get_settings()
    return DeviceService(
        DeviceRepository(settings.devices_table), max_devices=settings.max_devices_per_user
    )


@component
def download_service() -> DownloadService:
    settings = get_settings()
    return DownloadService(
        devices=device_service(),
        models=model_repository(),
        parts=ModelParts(settings.model_parts_table, settings.models_bucket, settings.models_table),
        keys=KmsDataKeys(settings.model_key_id),
        ledger=ledger(),
        purchases=ledger_repository(),
        big_url_ttl=settings.download_url_ttl_seconds,
    )
