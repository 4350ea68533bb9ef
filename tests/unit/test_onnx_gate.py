"""The exactness gate: a deliberately wrong graph is caught, a model with no exact converter
falls back with its reason, and serving refuses graphs outside what creditml emits."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from creditml.models.inspection import inspect_model
from creditml.models.onnx_convert import to_onnx
from creditml.models.onnx_gate import decide_runtime
from creditml.models.onnx_runtime import GraphRefused, OnnxModel, check_graph

pytestmark = pytest.mark.unit

X_IRIS, Y_IRIS = load_iris(return_X_y=True)
X_DIABETES, Y_DIABETES = load_diabetes(return_X_y=True)


def _tree_node(model: onnx.ModelProto) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.op_type == "TreeEnsemble")


def _change_tensor(name: str, change: Callable[[Any], None]) -> Callable[[bytes], bytes]:
    def mutate(graph: bytes) -> bytes:
        model = onnx.load_from_string(graph)
        attribute = next(a for a in _tree_node(model).attribute if a.name == name)
        values = numpy_helper.to_array(attribute.t).copy()
        change(values)
        attribute.t.CopyFrom(numpy_helper.from_array(values))
        return model.SerializeToString()

    return mutate


def _root_threshold_one_float32_step_up(splits: Any) -> None:
    # Inputs are float32 before they meet a threshold, so the smallest change that matters
    # is moving t past the next float32 value: that value now goes left instead of right.
    below = np.float32(splits[0])
    if np.float64(below) > splits[0]:
        below = np.nextafter(below, np.float32(-np.inf))
    splits[0] = np.float64(np.nextafter(below, np.float32(np.inf)))


def _first_leaf_one_ulp_up(weights: Any) -> None:
    weights[0] = np.nextafter(weights[0], np.inf)


def _swap_first_two_classes(graph: bytes) -> bytes:
    model = onnx.load_from_string(graph)
    entry = next(p for p in model.metadata_props if p.key == "creditml.classes")
    document = json.loads(entry.value)
    document["values"][:2] = document["values"][1::-1]
    entry.value = json.dumps(document)
    return model.SerializeToString()


@pytest.mark.parametrize(
    ("model", "mutate", "what"),
    [
        (
            DecisionTreeClassifier(random_state=0).fit(X_IRIS, Y_IRIS),
            _change_tensor("nodes_splits", _root_threshold_one_float32_step_up),
            "labels on",
        ),
        (
            DecisionTreeRegressor(random_state=0, max_depth=6).fit(X_DIABETES, Y_DIABETES),
            _change_tensor("leaf_weights", _first_leaf_one_ulp_up),
            "values on",
        ),
        (
            RandomForestClassifier(5, random_state=0).fit(X_IRIS, Y_IRIS),
            _change_tensor("leaf_weights", lambda w: w.__setitem__(0, w[0] + 1e-9)),
            "probabilities on",
        ),
        (
            GradientBoostingClassifier(n_estimators=5, random_state=0).fit(X_IRIS, Y_IRIS),
            _swap_first_two_classes,
            "labels on",
        ),
    ],
    ids=["threshold-moved", "leaf-value-one-ulp", "probability-off-1e-9", "classes-swapped"],
)
def test_a_wrong_graph_is_served_by_sklearn_with_the_reason(
    model: Any, mutate: Callable[[bytes], bytes], what: str
) -> None:
    # Given a graph that is right except for one deliberate change
    wrong = mutate(to_onnx(model))
    assert wrong != to_onnx(model)

    # When the gate compares it with the model
    decision = decide_runtime(model, inspect_model(model), convert=lambda _: wrong)

    # Then scikit-learn serves, and the reason names what differed
    assert decision.runtime == "sklearn"
    assert decision.graph is None
    assert decision.reason is not None
    assert decision.reason.startswith("ONNX answers differed from scikit-learn's on ")
    assert what in decision.reason
    assert decision.rows_checked > 1000


def test_the_unchanged_graph_is_served_by_onnx() -> None:
    model = RandomForestClassifier(5, random_state=0, n_jobs=2).fit(X_IRIS, Y_IRIS)

    decision = decide_runtime(model, inspect_model(model))

    assert (decision.runtime, decision.reason) == ("onnx", None)
    assert decision.graph == to_onnx(model)
    assert decision.rows_checked > 1000
    assert model.n_jobs == 2  # the gate compares with n_jobs=1, then restores it


def test_a_model_without_converter_is_served_by_sklearn_with_its_reason() -> None:
    model = SVC().fit(X_IRIS, Y_IRIS)

    decision = decide_runtime(model, inspect_model(model))

    assert decision == decide_runtime(model, inspect_model(model))
    assert (decision.runtime, decision.graph, decision.rows_checked) == ("sklearn", None, 0)
    assert decision.reason == "no exact ONNX converter for SVC"


def test_a_conversion_that_crashes_falls_back_with_a_generic_reason() -> None:
    model = DecisionTreeClassifier(random_state=0).fit(X_IRIS, Y_IRIS)

    def crash(_: Any) -> bytes:
        raise RuntimeError("boom")

    decision = decide_runtime(model, inspect_model(model), convert=crash)

    assert (decision.runtime, decision.reason) == (
        "sklearn",
        "the model could not be converted to ONNX",
    )


def test_a_graph_that_does_not_load_falls_back() -> None:
    model = DecisionTreeClassifier(random_state=0).fit(X_IRIS, Y_IRIS)

    decision = decide_runtime(model, inspect_model(model), convert=lambda _: b"\x08\x0a\x3a")

    assert (decision.runtime, decision.reason) == (
        "sklearn",
        "the converted ONNX graph could not be loaded",
    )


# ---------------------------------------------------------------- check_graph
def _graph(node: onnx.NodeProto, *, opsets: dict[str, int] | None = None) -> onnx.ModelProto:
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.DOUBLE, [2])],
        [helper.make_tensor_value_info("Y", TensorProto.DOUBLE, [2])],
    )
    imports = [helper.make_opsetid(d, v) for d, v in (opsets or {"": 21}).items()]
    return helper.make_model(graph, opset_imports=imports, ir_version=10)


def _external() -> onnx.ModelProto:
    model = _graph(helper.make_node("Add", ["X", "W"], ["Y"]))
    weights = numpy_helper.from_array(np.zeros(2), "W")
    weights.ClearField("raw_data")
    weights.data_location = TensorProto.EXTERNAL
    entry = weights.external_data.add()
    entry.key, entry.value = "location", "w.bin"
    model.graph.initializer.append(weights)
    return model


def _with_function() -> onnx.ModelProto:
    model = _graph(helper.make_node("Twice", ["X"], ["Y"], domain="local"))
    model.functions.append(
        helper.make_function(
            "local",
            "Twice",
            ["a"],
            ["b"],
            [helper.make_node("Add", ["a", "a"], ["b"])],
            [helper.make_opsetid("", 21)],
        )
    )
    model.opset_import.append(helper.make_opsetid("local", 1))
    return model


def _with_subgraph() -> onnx.ModelProto:
    branch = helper.make_graph(
        [helper.make_node("Identity", ["X"], ["Z"])],
        "b",
        [],
        [helper.make_tensor_value_info("Z", TensorProto.DOUBLE, [2])],
    )
    return _graph(helper.make_node("If", ["c"], ["Y"], then_branch=branch, else_branch=branch))


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (
            _graph(
                helper.make_node("Inverse", ["X"], ["Y"], domain="com.microsoft"),
                opsets={"": 21, "com.microsoft": 1},
            ),
            "the graph uses operator domains ['com.microsoft']",
        ),
        (_external(), "the graph refers to external data"),
        (_with_function(), "the graph uses operator domains ['local']"),
        (_with_subgraph(), "the graph holds subgraphs"),
    ],
    ids=["foreign-domain", "external-data", "function", "subgraph"],
)
def test_check_graph_refuses_what_serving_does_not_allow(
    model: onnx.ModelProto, reason: str
) -> None:
    data = model.SerializeToString()
    with pytest.raises(GraphRefused) as refused:
        check_graph(data)
    assert refused.value.reason == reason
    with pytest.raises(GraphRefused):
        OnnxModel.load(data)


def test_check_graph_refuses_a_function_even_in_an_allowed_domain() -> None:
    model = _with_function()
    model.functions[0].domain = "ai.onnx.ml"
    model.graph.node[0].domain = "ai.onnx.ml"
    del model.opset_import[-1]

    with pytest.raises(GraphRefused, match="local functions"):
        check_graph(model.SerializeToString())


def test_check_graph_accepts_the_converters_graphs() -> None:
    model = DecisionTreeClassifier(random_state=0).fit(X_IRIS, Y_IRIS)
    metadata = check_graph(to_onnx(model))
    assert metadata["creditml.kind"] == "classifier"
