"""What a registered model accepts and answers (no ML imports: the models API uses it)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Task = Literal["classification", "regression", "other"]


class ModelSchema(BaseModel):
    n_features: int = Field(description="Number of input features per row")
    feature_names: list[str] | None = Field(
        None, description="Names of the features, when the model was fitted with them"
    )
    classes: list[str | int | float | bool] | None = Field(
        None, description="Class labels, for classifiers"
    )
    task: Task
    estimator: str = Field(description="Estimator class, e.g. Pipeline[StandardScaler, SVC]")
    probabilities: bool = Field(description="Whether predictions include probabilities")
