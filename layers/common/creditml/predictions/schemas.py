"""Bodies of the predictions API (no ML imports: the docs function builds its OpenAPI)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

Output = Any  # a class label (str/int/bool) or a number


class PredictionRequest(BaseModel):
    """Documented shape of POST /models/{id}/predictions (parsed by hand for speed and for
    precise errors; see creditml.predictions.inputs)."""

    inputs: list[list[float]] | list[dict[str, float]] = Field(
        description="Rows of numbers in the model's feature order, or objects keyed by "
        "feature name when the model has feature names. k rows cost k x price."
    )


class Receipt(BaseModel):
    prediction_id: str
    outputs: list[Output]
    probabilities: list[list[float]] | None = None
    cost: int
    balance: int = Field(
        description="Credits left after this prediction; a lower bound when `balance_exact` "
        "is false (other operations on the account overlapped it)"
    )
    balance_exact: bool = True
    model_version: int


class PredictionPublic(BaseModel):
    id: str
    model_id: str
    model_version: int
    rows: int
    cost: int
    balance_after: int
    balance_exact: bool = True
    created_at: datetime
    latency_ms: float
    outputs: list[Output] | None = Field(None, description="Included on GET /predictions/{id}")
    probabilities: list[list[float]] | None = None


class PredictionPage(BaseModel):
    items: list[PredictionPublic]
    next_cursor: str | None
