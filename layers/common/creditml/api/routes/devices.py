"""Routes of the models function for devices and downloads: /devices and
POST /models/{id}/downloads (DESIGN §11).

The services are built on first use (creditml.composition.downloads), so the docs function
can include this router in the OpenAPI document without building them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from creditml.api.dependencies import IdempotencyKey, Principal, VerifiedPrincipal
from creditml.api.problems import PROBLEM_RESPONSES, problem_doc
from creditml.models.api_schemas import (
    DeviceCreate,
    DeviceList,
    DevicePublic,
    DownloadPublic,
    DownloadRequest,
)

if TYPE_CHECKING:
    from creditml.models.devices import DeviceService
    from creditml.models.downloads import DownloadService

router = APIRouter(responses=PROBLEM_RESPONSES, tags=["devices"])
REPLAYED_HEADER = "Idempotent-Replayed"


async def get_device_service() -> DeviceService:
    from creditml.composition.downloads import device_service

    return device_service()


async def get_download_service() -> DownloadService:
    from creditml.composition.downloads import download_service

    return download_service()


Devices = Annotated["DeviceService", Depends(get_device_service)]
Downloads = Annotated["DownloadService", Depends(get_download_service)]
DeviceId = Annotated[str, Path(min_length=1, max_length=64)]
ModelId = Annotated[str, Path(min_length=1, max_length=64)]


@router.post(
    "/devices",
    status_code=status.HTTP_201_CREATED,
    response_model=DevicePublic,
    responses={
        409: problem_doc("The account has the most devices it may (`device_limit_reached`)")
    },
)
def register_device(body: DeviceCreate, principal: Principal, devices: Devices) -> DevicePublic:
    """Register a device to download models to: its X25519 public key (base64; the private
    key stays on the device) and the hex SHA-256 of its hardware facts. Downloads are sealed
    to both."""
    device = devices.register(principal, body.name, body.public_key, body.fingerprint)
    return DevicePublic.of(device)


@router.get("/devices", response_model=DeviceList)
def list_devices(principal: Principal, devices: Devices) -> DeviceList:
    """The caller's devices, oldest first."""
    return DeviceList(items=[DevicePublic.of(device) for device in devices.listed(principal)])


@router.delete(
    "/devices/{id}",
    status_code=204,
    response_class=Response,
    responses={404: problem_doc("No such device of the caller's (`device_not_found`)")},
)
def delete_device(id: DeviceId, principal: Principal, devices: Devices) -> Response:
    """Delete one of the caller's devices: no download is sealed to it any more."""
    devices.delete(principal, id)
    return Response(status_code=204)


@router.post(
    "/models/{id}/downloads",
    response_model=DownloadPublic,
    tags=["models"],
    responses={
        400: problem_doc("Idempotency-Key header missing"),
        402: problem_doc("Insufficient credits: `balance` and `required` in the body"),
        403: problem_doc("The model has no download price (`download_not_allowed`)"),
        404: problem_doc(
            "No such model (or not visible to the caller), device of the caller's "
            "(`device_not_found`) or version (`version_not_found`)"
        ),
        409: problem_doc(
            "The version is not ready (`version_not_ready`, `model_not_ready`), or the "
            "Idempotency-Key was used with another body"
        ),
    },
)
def download_model(
    id: ModelId,
    body: DownloadRequest,
    key: IdempotencyKey,
    # The stored role, not the token's: "admins download free" must not outlive a demotion.
    principal: VerifiedPrincipal,
    downloads: Downloads,
    response: Response,
) -> DownloadPublic:
    """A model version sealed to one of the caller's devices: a short-lived presigned GET
    of its big part, and `sealed`, the rest of what decrypting it takes, sealed to the
    device's key and hardware fingerprint. Free for the model's owner and admins; anyone
    else pays the model's `download_price` once per device and version (a repeat costs
    nothing, `cost: 0`), and only when it has one. A retry with the same Idempotency-Key
    and body answers as the first did (`Idempotent-Replayed: true`), charging nothing."""
    download = downloads.download(principal, id, body.device_id, body.version, key)
    if download.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return DownloadPublic.of(download)
