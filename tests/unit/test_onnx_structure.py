"""The gate's structural check: every tree, node and leaf of the graph is read back from its
bytes and compared with scikit-learn's tree_ arrays, so a graph wrong on a single leaf of a
big forest is refused every time (rows can only sample its splits)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.tree import (
    DecisionTreeClassifier,
    DecisionTreeRegressor,
    ExtraTreeClassifier,
    ExtraTreeRegressor,
)

from creditml.models import onnx_gate
from creditml.models.inspection import inspect_model
from creditml.models.onnx_convert import to_onnx
from creditml.models.onnx_gate import check_structure, decide_runtime
from creditml.models.onnx_proto import GraphContents, Ints, Node, read_model
from creditml.models.onnx_runtime import estimate_nbytes

pytestmark = pytest.mark.unit

X_IRIS, Y_IRIS = load_iris(return_X_y=True)
X_DIABETES, Y_DIABETES = load_diabetes(return_X_y=True)


def _with_nan(X: Any) -> Any:
    holed = X.copy()
    holed[np.random.default_rng(0).random(X.shape) < 0.2] = np.nan
    return holed


ZOO: dict[str, Callable[[], Any]] = {
    "DecisionTreeClassifier": lambda: DecisionTreeClassifier(random_state=0).fit(X_IRIS, Y_IRIS),
    "DecisionTreeRegressor": lambda: DecisionTreeRegressor(random_state=0).fit(
        X_DIABETES, Y_DIABETES
    ),
    "ExtraTreeClassifier": lambda: ExtraTreeClassifier(random_state=0).fit(X_IRIS, Y_IRIS > 1),
    "ExtraTreeRegressor": lambda: ExtraTreeRegressor(random_state=0).fit(X_DIABETES, Y_DIABETES),
    "RandomForestClassifier-binary": lambda: RandomForestClassifier(6, random_state=0).fit(
        X_IRIS, np.array(["no", "yes"])[(Y_IRIS > 0).astype(int)]
    ),
    "RandomForestClassifier-multiclass": lambda: RandomForestClassifier(6, random_state=0).fit(
        X_IRIS, Y_IRIS
    ),
    "RandomForestRegressor": lambda: RandomForestRegressor(6, random_state=0).fit(
        X_DIABETES, Y_DIABETES
    ),
    "ExtraTreesClassifier": lambda: ExtraTreesClassifier(6, random_state=0).fit(X_IRIS, Y_IRIS),
    "ExtraTreesRegressor": lambda: ExtraTreesRegressor(6, random_state=0).fit(
        X_DIABETES, Y_DIABETES
    ),
    "GradientBoostingClassifier-binary": lambda: GradientBoostingClassifier(
        n_estimators=10, random_state=0
    ).fit(X_IRIS, Y_IRIS > 1),
    "GradientBoostingClassifier-exponential": lambda: GradientBoostingClassifier(
        loss="exponential", n_estimators=10, random_state=0
    ).fit(X_IRIS, Y_IRIS > 1),
    "GradientBoostingClassifier-multiclass": lambda: GradientBoostingClassifier(
        n_estimators=10, random_state=0
    ).fit(X_IRIS, Y_IRIS),
    "GradientBoostingRegressor": lambda: GradientBoostingRegressor(
        n_estimators=10, random_state=0
    ).fit(X_DIABETES, Y_DIABETES),
    "GradientBoostingRegressor-zero-init": lambda: GradientBoostingRegressor(
        init="zero", n_estimators=10, random_state=0
    ).fit(X_DIABETES, Y_DIABETES),
    "RandomForestRegressor-one-leaf-trees": lambda: RandomForestRegressor(4, random_state=0).fit(
        X_DIABETES, np.full(len(X_DIABETES), 3.5)
    ),
    "RandomForestClassifier-nan": lambda: RandomForestClassifier(6, random_state=0).fit(
        _with_nan(X_IRIS), Y_IRIS
    ),
    "DecisionTreeRegressor-nan": lambda: DecisionTreeRegressor(random_state=0).fit(
        _with_nan(X_DIABETES), Y_DIABETES
    ),
}


@pytest.mark.parametrize("make", ZOO.values(), ids=ZOO.keys())
def test_the_converters_graph_of_every_tree_family_passes(make: Callable[[], Any]) -> None:
    model = make()
    assert check_structure(model, read_model(to_onnx(model))) is None


def test_a_model_that_is_not_a_tree_model_is_not_checked() -> None:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=1000).fit(X_IRIS, Y_IRIS)
    tree = DecisionTreeClassifier(random_state=0).fit(X_IRIS, Y_IRIS)
    assert check_structure(model, read_model(to_onnx(tree))) is None


# ---------------------------------------------------------------- mutations
def _ensemble(contents: GraphContents) -> Node:
    return next(n for n in contents.nodes if n.op_type == "TreeEnsemble")


def _mutated(graph: bytes, name: str, change: Callable[[Any], None]) -> GraphContents:
    """The graph with one TreeEnsemble attribute changed, written to bytes and read back."""
    contents = read_model(graph)
    node = _ensemble(contents)
    value = node.attributes[name]
    array = (value.values if isinstance(value, Ints) else value).copy()
    change(array)
    attributes = dict(node.attributes)
    attributes[name] = Ints(array) if isinstance(value, Ints) else array
    contents.nodes[contents.nodes.index(node)] = replace(node, attributes=attributes)
    return read_model(contents.encode())


@pytest.fixture(scope="module")
def big_forest() -> tuple[Any, bytes]:
    # 20 fully grown trees on noisy labels: > 100,000 splits in the graph (two class copies)
    rng = np.random.default_rng(7)
    X = rng.normal(size=(13_000, 6))
    forest = RandomForestClassifier(20, random_state=0, n_jobs=1).fit(X, rng.integers(0, 2, 13_000))
    graph = to_onnx(forest)
    assert _ensemble(read_model(graph)).attributes["nodes_featureids"].values.size > 100_000
    return forest, graph


def _one_ulp_up(at: float) -> Callable[[Any], None]:
    def change(weights: Any) -> None:
        i = int(at * (weights.size - 1))
        weights[i] = np.nextafter(weights[i], np.inf)

    return change


def _threshold_up(at: float) -> Callable[[Any], None]:
    def change(splits: Any) -> None:
        i = int(at * (splits.size - 1))
        splits[i] = np.nextafter(splits[i], np.inf)

    return change


def _next_feature(at: float) -> Callable[[Any], None]:
    def change(features: Any) -> None:
        i = int(at * (features.size - 1))
        features[i] = (features[i] + 1) % 6

    return change


def _flipped(at: float) -> Callable[[Any], None]:
    def change(flags: Any) -> None:
        i = int(at * (flags.size - 1))
        flags[i] = 1 - flags[i]

    return change


def _swap(i: int, j: int) -> Callable[[Any], None]:
    def change(values: Any) -> None:
        values[[i, j]] = values[[j, i]]

    return change


MUTATIONS = {
    **{f"leaf-one-ulp-{at}": ("leaf_weights", _one_ulp_up(at)) for at in (0.0, 0.5, 1.0)},
    **{f"threshold-{at}": ("nodes_splits", _threshold_up(at)) for at in (0.0, 0.37, 1.0)},
    **{f"featureid-{at}": ("nodes_featureids", _next_feature(at)) for at in (0.0, 0.61, 1.0)},
    **{
        f"missing-flag-{at}": ("nodes_missing_value_tracks_true", _flipped(at))
        for at in (0.0, 0.83, 1.0)
    },
    # tree 0 and tree 1 of class 0 (members 0 and 2): the same trees summed in another order
    "tree-order": ("tree_roots", _swap(0, 2)),
    "class-copies": ("tree_roots", _swap(0, 1)),
    "last-trees": ("tree_roots", _swap(-1, -3)),
    "leaf-target": ("leaf_targetids", _flipped(0.44)),
    "leaf-flag": ("nodes_trueleafs", _flipped(0.5)),
    "branches": ("nodes_truenodeids", _swap(7, 8)),
}


@pytest.mark.parametrize(("name", "change"), MUTATIONS.values(), ids=MUTATIONS.keys())
def test_a_single_change_anywhere_in_a_big_forest_is_found(
    big_forest: tuple[Any, bytes], name: str, change: Callable[[Any], None]
) -> None:
    # Given a 20-tree forest's graph with one value changed
    forest, graph = big_forest
    wrong = _mutated(graph, name, change)
    assert wrong.encode() != graph

    # When the structure is checked (no sampling: the same answer every time)
    reasons = {check_structure(forest, wrong) for _ in range(2)}

    # Then it is refused, saying where
    assert len(reasons) == 1
    (reason,) = reasons
    assert reason is not None
    assert reason.startswith("the ONNX graph does not encode the model exactly (")


def test_the_gate_refuses_a_big_forest_wrong_on_one_leaf(big_forest: tuple[Any, bytes]) -> None:
    # Given the graph of a big forest with its last leaf one ulp off (rows sample the splits)
    forest, graph = big_forest
    wrong = _mutated(graph, "leaf_weights", _one_ulp_up(1.0)).encode()

    # When the whole gate decides
    decision = decide_runtime(forest, inspect_model(forest), convert=lambda _: wrong)

    # Then scikit-learn serves, and the reason names the tree, node and what differs
    assert decision.runtime == "sklearn"
    assert decision.reason == (
        "the ONNX graph does not encode the model exactly (tree 19, class 1, node "
        f"{forest.estimators_[19].tree_.node_count - 1}: leaf weight)"
    )


def test_the_unchanged_big_forest_is_served_by_onnx(big_forest: tuple[Any, bytes]) -> None:
    forest, graph = big_forest
    assert read_model(graph).encode() == graph  # the mutations above change one thing only
    decision = decide_runtime(forest, inspect_model(forest))
    assert (decision.runtime, decision.reason, decision.graph) == ("onnx", None, graph)


def _boosting() -> Any:
    return GradientBoostingClassifier(n_estimators=10, random_state=0).fit(X_IRIS, Y_IRIS > 1)


def _initializer(contents: GraphContents, name: str, value: Any) -> GraphContents:
    contents.initializers[name] = np.asarray(value)
    return read_model(contents.encode())


def _without_learning_rate(model: Any) -> Callable[[Any], None]:
    def change(weights: Any) -> None:
        weights[1] = weights[1] / model.learning_rate  # the first stage's first leaf

    return change


def _tail_changed(contents: GraphContents) -> GraphContents:
    # 1 - p1 written as p1 - 1: a post-processing node with its inputs swapped
    at = next(i for i, n in enumerate(contents.nodes) if n.op_type == "Sub")
    node = contents.nodes[at]
    contents.nodes[at] = replace(node, inputs=list(reversed(node.inputs)))
    return read_model(contents.encode())


def _classes_swapped(contents: GraphContents) -> GraphContents:
    contents.metadata["creditml.classes"] = '{"dtype": "|b1", "values": [true, false]}'
    return read_model(contents.encode())


CHANGES: dict[str, Callable[[Any, bytes], GraphContents]] = {
    "boosting-init-one-ulp": lambda m, g: _mutated(g, "leaf_weights", _one_ulp_up(0.0)),
    "boosting-without-learning-rate": lambda m, g: _mutated(
        g, "leaf_weights", _without_learning_rate(m)
    ),
    "sigmoid-scale": lambda m, g: _initializer(read_model(g), "scale", [2.0]),
    "post-processing-node": lambda m, g: _tail_changed(read_model(g)),
    "classes-swapped": lambda m, g: _classes_swapped(read_model(g)),
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_boosting_init_learning_rate_and_post_processing_are_checked(
    change: Callable[[Any, bytes], GraphContents],
) -> None:
    model = _boosting()
    reason = check_structure(model, change(model, to_onnx(model)))
    assert reason is not None
    assert reason.startswith("the ONNX graph does not encode the model exactly (")


def test_the_forests_tree_count_is_checked() -> None:
    forest = RandomForestRegressor(5, random_state=0).fit(X_DIABETES, Y_DIABETES)
    wrong = _initializer(read_model(to_onnx(forest)), "n_trees", [np.nextafter(5.0, 6.0)])

    assert check_structure(forest, wrong) == (
        "the ONNX graph does not encode the model exactly (the graph's constants differ)"
    )


# ---------------------------------------------------------------- session memory cap
def test_a_graph_whose_session_is_too_big_falls_back_before_any_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a model whose session would need more than a model may use
    model = RandomForestClassifier(20, random_state=0).fit(X_IRIS, Y_IRIS)
    needed = estimate_nbytes(len(to_onnx(model)))
    sessions: list[bytes] = []
    monkeypatch.setattr(onnx_gate.OnnxModel, "load", lambda graph: sessions.append(graph))
    limit = needed - 1

    # When the gate decides with that cap
    decision = decide_runtime(model, inspect_model(model), limit)

    # Then scikit-learn serves, no session was made, and the reason gives both sizes
    assert (decision.runtime, decision.graph, decision.rows_checked) == ("sklearn", None, 0)
    assert decision.reason == (
        f"its ONNX session would need about {-(-needed // 2**20)} MB, "
        f"more than the {limit // 2**20} MB a model may use"
    )
    assert sessions == []


def test_a_graph_whose_session_fits_is_served_by_onnx() -> None:
    model = RandomForestClassifier(20, random_state=0).fit(X_IRIS, Y_IRIS)
    needed = estimate_nbytes(len(to_onnx(model)))

    decision = decide_runtime(model, inspect_model(model), max_session_bytes=needed)

    assert (decision.runtime, decision.reason) == ("onnx", None)


def test_the_reason_reads_in_whole_megabytes() -> None:
    model = DecisionTreeClassifier(random_state=0).fit(X_IRIS, Y_IRIS)

    decision = decide_runtime(model, inspect_model(model), max_session_bytes=100 * 1024)

    assert decision.reason == (
        "its ONNX session would need about 1 MB, more than the 0 MB a model may use"
    )


def test_session_estimates_bound_the_measured_sessions() -> None:
    # (graph bytes, RSS measured) from estimate_nbytes' docstring and the review
    measured = [
        (65_000, 1_850_000),
        (730_000, 19_180_000),
        (3_600_000, 19_000_000),
        (17_290_000, 453_100_000),
        (38_400_000, 616_000_000),
        (42_600_000, 565_000_000),
        (51_950_000, 1_259_800_000),
        (340_000_000, 2_900_000_000),
    ]
    assert all(estimate_nbytes(size) >= rss for size, rss in measured)
