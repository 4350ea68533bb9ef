"""Import what serving models needs, ahead of the first request (at init, so a SnapStart
snapshot holds it): ONNX Runtime and the service. Not scikit-learn: most versions are served
by their exact ONNX graph, and importing scikit-learn costs about a second, paid only by a
container that loads a version scikit-learn serves (creditml.models.loader)."""

from __future__ import annotations

import importlib

_MODULES = (
    "creditml.composition.predictions",
    "creditml.models.onnx_runtime",
)


def import_model_libraries() -> None:
    for name in _MODULES:
        importlib.import_module(name)
