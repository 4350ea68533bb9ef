"""Routes of the models function: /models and /models/{id}."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from creditml.api.dependencies import ModelServiceDep, Principal, VerifiedPrincipal
from creditml.api.problems import PROBLEM_RESPONSES, problem_doc
from creditml.models.api_schemas import (
    ModelCreate,
    ModelList,
    ModelPublic,
    ModelUpdate,
    Upload,
    UploadCreated,
)
from creditml.models.service import UploadTicket

router = APIRouter(responses=PROBLEM_RESPONSES, tags=["models"])
ModelId = Annotated[str, Path(min_length=1, max_length=64)]
Service = ModelServiceDep


def _created(ticket: UploadTicket) -> UploadCreated:
    return UploadCreated(
        model_id=ticket.model.id,
        version=ticket.version,
        upload=Upload(
            url=ticket.url,
            fields=ticket.fields,
            expires_in=ticket.expires_in,
            max_bytes=ticket.max_bytes,
        ),
    )


@router.post(
    "/models",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadCreated,
    responses={403: problem_doc("Caller is not a publisher or admin")},
)
def create_model(
    body: ModelCreate, principal: VerifiedPrincipal, service: Service
) -> UploadCreated:
    """Create a model (version 1, `pending`) and get a presigned S3 POST for its joblib file.
    Once the file lands, registration validates it without running it; the model turns
    `ready` or `rejected` with a reason (see GET /models/{id})."""
    return _created(service.create(principal, body.name, body.description, body.price))


@router.post(
    "/models/{id}/versions",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadCreated,
    responses={403: problem_doc("Not the owner or an admin"), 404: problem_doc("No such model")},
)
def create_version(id: ModelId, principal: VerifiedPrincipal, service: Service) -> UploadCreated:
    """Open the next version of a model and get a presigned POST for its file. The previous
    ready version keeps serving until the new one is ready."""
    return _created(service.new_version(principal, id))


@router.get("/models", response_model=ModelList)
def list_models(principal: Principal, service: Service) -> ModelList:
    """Models ready for predictions, plus all of the caller's own."""
    return ModelList(items=[ModelPublic.of(model) for model in service.visible(principal)])


@router.get(
    "/models/{id}",
    response_model=ModelPublic,
    responses={404: problem_doc("No such model (or not visible to the caller)")},
)
def get_model(id: ModelId, principal: Principal, service: Service) -> ModelPublic:
    """Status (pending/ready/rejected with a reason, expired when the upload never arrived
    in time, or archived), price, owner, versions and the input schema of the serving
    version."""
    return ModelPublic.of(service.show(principal, id), with_versions=True)


@router.patch(
    "/models/{id}",
    response_model=ModelPublic,
    responses={403: problem_doc("Not the owner or an admin"), 404: problem_doc("No such model")},
)
def update_model(
    id: ModelId, body: ModelUpdate, principal: VerifiedPrincipal, service: Service
) -> ModelPublic:
    """Change the price, description or download price (owner or admin). `download_price`
    null makes the model no longer downloadable by others; left out, it is unchanged."""
    model = service.update(
        principal, id, body.price, body.description, body.download_price_change()
    )
    return ModelPublic.of(model, True)


@router.delete(
    "/models/{id}",
    status_code=204,
    response_class=Response,
    responses={403: problem_doc("Not the owner or an admin"), 404: problem_doc("No such model")},
)
def archive_model(id: ModelId, principal: VerifiedPrincipal, service: Service) -> Response:
    """Archive a model (owner or admin): it leaves the catalogue and takes no predictions.
    Its owner still sees it, `status: "archived"`, on GET /models/{id}."""
    service.archive(principal, id)
    return Response(status_code=204)
