"""The loader's choice of artifact: a version's ONNX graph when it opens, its model file
otherwise (a graph this ONNX Runtime refuses, or one whose session would outgrow the memory
a model may use), and the budget that keeps both small parts on one DynamoDB item."""

from __future__ import annotations

import io
import warnings
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from creditml.models.crypto import MODEL, ONNX_GRAPH, SealedModel, seal, small_part_size
from creditml.models.loader import ModelCache, ModelLoader
from creditml.models.onnx_convert import to_onnx
from creditml.models.registration import SMALL_PARTS_KB, graph_small_size_kb
from tests.models.keys import ClearKeys

pytestmark = pytest.mark.unit

X, Y = load_iris(return_X_y=True)


class _Parts:
    """A version's two artifacts, sealed as registration seals them; counts the fetches."""

    def __init__(self, model_file: bytes, graph: bytes) -> None:
        self.sealed = {
            MODEL: seal(model_file, "m", 1, ClearKeys(), 3),
            ONNX_GRAPH: seal(graph, "m", 1, ClearKeys(), 3, ONNX_GRAPH),
        }
        self.fetched: list[str] = []

    def fetch_serving(self, model_id: str, version: int) -> tuple[str, SealedModel]:
        self.fetched.append(ONNX_GRAPH)
        return ONNX_GRAPH, self.sealed[ONNX_GRAPH]

    def fetch(self, model_id: str, version: int) -> SealedModel:
        self.fetched.append(MODEL)
        return self.sealed[MODEL]


def _forest() -> tuple[Any, bytes]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, Y)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return model, buffer.getvalue()


def test_a_version_with_a_graph_is_served_by_onnx_runtime() -> None:
    model, data = _forest()
    parts = _Parts(data, to_onnx(model))
    served, cached = ModelLoader(parts, ClearKeys(), ModelCache(10**8)).load("m", 1)
    assert (type(served).__name__, cached, parts.fetched) == ("OnnxModel", False, [ONNX_GRAPH])
    assert served.predict(X).tolist() == model.predict(X).tolist()


@pytest.mark.parametrize(
    "graph",
    [b"not a graph at all", b"\x08\x0a\x3a\x02\x0a\x00"],
    ids=["garbage", "an empty graph"],
)
def test_a_graph_that_does_not_open_falls_back_to_the_model_file(graph: bytes) -> None:
    model, data = _forest()
    parts = _Parts(data, graph)
    loader = ModelLoader(parts, ClearKeys(), ModelCache(10**8))
    served, cached = loader.load("m", 1)
    assert not cached
    assert parts.fetched == [ONNX_GRAPH, MODEL]
    assert type(served).__name__ == "RandomForestClassifier"
    np.testing.assert_array_equal(served.predict(X), model.predict(X))
    # Cached as it was loaded: the next request neither fetches nor falls back again.
    assert loader.load("m", 1) == (served, True)
    assert parts.fetched == [ONNX_GRAPH, MODEL]


def test_a_graph_whose_session_would_outgrow_the_memory_limit_is_not_opened() -> None:
    model, data = _forest()
    graph = to_onnx(model)
    parts = _Parts(data, graph)
    # A limit the loaded forest fits but the graph's session (28 bytes per graph byte) not.
    loader = ModelLoader(parts, ClearKeys(), ModelCache(10**8), max_memory_bytes=len(graph) * 8)
    served, _ = loader.load("m", 1)
    assert type(served).__name__ == "RandomForestClassifier"
    assert parts.fetched == [ONNX_GRAPH, MODEL]


@pytest.mark.parametrize(
    ("model_small", "small_size_kb", "expected"),
    [
        (3 * 1024, 3, 3),  # the default: both follow SMALL_SIZE_KB
        (1000, 3, 3),
        (350 * 1024, 350, 1),  # the largest model small part leaves the graph 1 KB
        (200 * 1024, 350, 150),  # the graph gets what is left of the budget
        (200 * 1024 + 1, 350, 149),
        (20, 350, 349),
    ],
)
def test_the_graphs_small_part_fits_beside_the_models(
    model_small: int, small_size_kb: int, expected: int
) -> None:
    assert graph_small_size_kb(model_small, small_size_kb) == expected


@pytest.mark.parametrize("small_size_kb", [1, 3, 100, 200, 350])
@pytest.mark.parametrize("size", [10_000, 2_000_000, 20_000_000])
def test_both_small_parts_stay_within_the_budget(size: int, small_size_kb: int) -> None:
    # DynamoDB caps an item at 400 KB: the two small parts (and the item's few other
    # attributes) must fit, whatever SMALL_SIZE_KB (1..350) and the file sizes.
    sealed = size + 48
    model_small = small_part_size(sealed, small_size_kb)
    for graph_size in (size // 3, size, 3 * size):
        graph_small = small_part_size(
            graph_size + 48, graph_small_size_kb(model_small, small_size_kb)
        )
        assert model_small + graph_small <= (SMALL_PARTS_KB + 1) * 1024
        assert graph_small >= min(1024, (graph_size + 48) // 5)
