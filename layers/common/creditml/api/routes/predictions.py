"""Routes of the predict function: billed predictions and their history.

The ML stack is imported lazily (on the first request), so the docs function can include
this router in the OpenAPI document without the ML layer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from creditml.api.dependencies import IdempotencyKey, Principal, UnmeteredPrincipal
from creditml.api.problems import PROBLEM_RESPONSES, problem_doc
from creditml.billing.service import CURSOR_MAX_LENGTH, decode_cursor, encode_cursor
from creditml.predictions.schemas import (
    PredictionPage,
    PredictionPublic,
    PredictionRequest,
    Receipt,
)

if TYPE_CHECKING:
    from creditml.predictions.service import PredictionService

router = APIRouter(responses=PROBLEM_RESPONSES, tags=["predictions"])
REPLAYED_HEADER = "Idempotent-Replayed"


async def get_prediction_service() -> PredictionService:
    from creditml.composition.predictions import prediction_service

    return prediction_service()


Service = Annotated["PredictionService", Depends(get_prediction_service)]
ModelId = Annotated[str, Path(min_length=1, max_length=64)]


_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": PredictionRequest.model_json_schema()}},
    }
}


@router.post(
    "/models/{id}/predictions",
    response_model=Receipt,
    openapi_extra=_REQUEST_BODY,
    responses={
        400: problem_doc("Idempotency-Key header missing"),
        402: problem_doc("Insufficient credits: `balance` and `required` in the body"),
        404: problem_doc("No such model"),
        409: problem_doc("Model not ready, or Idempotency-Key reused with another body"),
        410: problem_doc("Model archived"),
        413: problem_doc("Body over the payload limit"),
        422: problem_doc(
            "Rows do not fit the model (`validation_error`, the row and field named), the "
            "model gives no finite result for them (`non_finite_output`), or the JSON nests "
            "too deeply (`nesting_too_deep`)"
        ),
    },
)
async def predict(
    id: ModelId,
    request: Request,
    key: IdempotencyKey,
    principal: UnmeteredPrincipal,  # the debit counts the request against the rate limit
    service: Service,
) -> Response:
    """Predict with the model's serving version and pay rows x price, once. Anything that
    fails (bad rows, unready model, insufficient credits, model errors) costs nothing.
    Retrying with the same Idempotency-Key and body returns the same receipt, unbilled."""
    # The request guard (creditml.api.app) has checked the media type, size and nesting.
    body = await request.body()
    receipt, replayed = service.predict(principal, id, body, key)
    # Serialized directly: FastAPI's re-validation and jsonable_encoder would walk every
    # output and probability again (the receipt is already a validated model).
    return Response(
        receipt.model_dump_json(exclude_none=True).encode(),
        media_type="application/json",
        headers={REPLAYED_HEADER: "true"} if replayed else None,
    )


@router.get("/predictions", response_model=PredictionPage)
def list_predictions(
    principal: Principal,
    service: Service,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=CURSOR_MAX_LENGTH)] = None,
) -> PredictionPage:
    """The caller's predictions, newest first (outputs on GET /predictions/{id})."""
    items, last = service.history(principal, limit, decode_cursor(cursor) if cursor else None)
    return PredictionPage(items=items, next_cursor=encode_cursor(last) if last else None)


@router.get(
    "/predictions/{id}",
    response_model=PredictionPublic,
    responses={404: problem_doc("No such prediction of the caller's")},
)
def get_prediction(
    id: Annotated[str, Path(min_length=1, max_length=64)], principal: Principal, service: Service
) -> PredictionPublic:
    """One of the caller's predictions, with its outputs."""
    return service.show(principal, id)
