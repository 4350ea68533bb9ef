"""Import what loading and running models needs, ahead of the first request."""

from __future__ import annotations

import importlib

# The estimator families most models are built from; others import on first use.
_MODULES = (
    "creditml.composition.predictions",
    "sklearn.base",
    "sklearn.pipeline",
    "sklearn.compose",
    "sklearn.preprocessing",
    "sklearn.linear_model",
    "sklearn.tree",
    "sklearn.ensemble",
)


def import_model_libraries() -> None:
    for name in _MODULES:
        importlib.import_module(name)
