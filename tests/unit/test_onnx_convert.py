"""The zoo: every tree family the ONNX converter must make exact, as classifier (binary and
multiclass) and regressor, compared with scikit-learn on the gate's rows and on rows at
every threshold (t, nextafter(t, +-inf), the float32 values bracketing t), reached through
the training rows themselves (an independent way to reach each split)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
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
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from creditml.models.inspection import inspect_model
from creditml.models.onnx_convert import NotConvertible, to_onnx
from creditml.models.onnx_gate import check_exactness
from creditml.models.onnx_runtime import OnnxModel

pytestmark = pytest.mark.unit

_IRIS_X, _IRIS_Y = load_iris(return_X_y=True)
_DIABETES_X, _DIABETES_Y = load_diabetes(return_X_y=True)

FAMILIES: dict[str, Any] = {
    "DecisionTree": (DecisionTreeClassifier, DecisionTreeRegressor, {"max_depth": 6}),
    "RandomForest": (
        RandomForestClassifier,
        RandomForestRegressor,
        {"n_estimators": 8, "max_depth": 8},
    ),
    "ExtraTrees": (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        {"n_estimators": 8, "max_depth": 8},
    ),
    "GradientBoosting": (
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        {"n_estimators": 8},
    ),
}
TASKS = ("binary", "multiclass", "regression")


def _data(task: str) -> tuple[Any, Any]:
    if task == "regression":
        return _DIABETES_X, _DIABETES_Y
    if task == "binary":
        return _IRIS_X, (_IRIS_Y == 2).astype(np.int64)
    return _IRIS_X, _IRIS_Y


def _fitted(family: str, task: str, **extra: Any) -> Any:
    classifier, regressor, params = FAMILIES[family]
    estimator = regressor if task == "regression" else classifier
    X, y = extra.pop("data", _data(task))
    return estimator(random_state=0, **params, **extra).fit(X, y)


def _trees(model: Any) -> list[Any]:
    if hasattr(model, "tree_"):
        return [model.tree_]
    return [e.tree_ for e in np.ravel(model.estimators_)]


def threshold_rows(model: Any, X: Any) -> Any:
    """For each split node, a training row that reaches it with the split feature set to
    the threshold and its neighbours (as the research probe did)."""
    rows = []
    for tree in _trees(model):
        paths = tree.decision_path(np.nan_to_num(X).astype(np.float32)).tocsc()
        for node in np.flatnonzero(tree.children_left != -1):
            reach = paths[:, node].nonzero()[0]
            base = X[reach[0] if len(reach) else 0]
            t = tree.threshold[node]
            if not np.isfinite(t):  # +inf: a split that only sends NaN one way
                continue
            below = np.float32(t)
            if np.float64(below) > t:
                below = np.nextafter(below, np.float32(-np.inf))
            above = np.nextafter(below, np.float32(np.inf))
            for value in (t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf), below, above):
                row = base.copy()
                row[tree.feature[node]] = value
                rows.append(row)
    return np.array(rows)


def assert_same_answers(model: Any, served: OnnxModel, X: Any) -> None:
    expected, got = model.predict(X), served.predict(X)
    assert got.dtype == expected.dtype
    if expected.dtype.kind == "f":  # regression values: bit for bit
        assert got.tobytes() == expected.tobytes()
    else:
        assert np.array_equal(got, expected)
    if served.has_probabilities:
        np.testing.assert_allclose(served.predict_proba(X), model.predict_proba(X), atol=1e-12)


def assert_exact(model: Any, X: Any) -> bytes:
    graph = to_onnx(model)
    onnx.checker.check_model(onnx.load_from_string(graph), full_check=True)
    served = OnnxModel.load(graph)
    assert_same_answers(model, served, threshold_rows(model, X))
    assert_same_answers(model, served, X)
    rows, reason = check_exactness(model, served, inspect_model(model))
    assert reason is None
    assert rows > 1000
    return graph


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_required_family_is_exact(family: str, task: str) -> None:
    model = _fitted(family, task)
    assert_exact(model, _data(task)[0])


def _with_nan(X: Any) -> Any:
    holed = X.copy()
    holed[::7, 2] = np.nan
    holed[::5, 0] = np.nan
    return holed


@pytest.mark.parametrize("task", ["multiclass", "regression"])
@pytest.mark.parametrize("family", ["DecisionTree", "RandomForest", "ExtraTrees"])
def test_trees_fitted_with_missing_values_route_nan_exactly(family: str, task: str) -> None:
    X, y = _data(task)
    model = _fitted(family, task, data=(_with_nan(X), y))
    served = OnnxModel.load(assert_exact(model, _with_nan(X)))

    rows = np.random.default_rng(1).uniform(X.min(0), X.max(0), size=(500, X.shape[1]))
    rows[np.random.default_rng(2).random(rows.shape) < 0.3] = np.nan
    assert_same_answers(model, served, rows)


@pytest.mark.parametrize(
    "labels",
    [
        np.array(["setosa", "versicolor", "virginica"]),
        np.array(["no", "yes", "yes"], dtype=object),
        np.array([True, False, True]),
        np.array([-1.0, 2.0, 3e10]),
        np.array([-7, 0, 40], dtype=np.int32),
    ],
    ids=["str", "object-str", "bool", "float", "int32"],
)
@pytest.mark.parametrize("family", ["RandomForest", "GradientBoosting"])
def test_labels_keep_their_values_and_dtype(family: str, labels: Any) -> None:
    model = _fitted(family, "multiclass", data=(_IRIS_X, labels[_IRIS_Y]))
    graph = assert_exact(model, _IRIS_X)
    assert OnnxModel.load(graph).predict(_IRIS_X).dtype == model.classes_.dtype


def test_gradient_boosting_with_exponential_loss_is_exact() -> None:
    assert_exact(_fitted("GradientBoosting", "binary", loss="exponential"), _IRIS_X)


def test_gradient_boosting_from_zero_is_exact() -> None:
    assert_exact(_fitted("GradientBoosting", "regression", init="zero"), _DIABETES_X)


def test_a_stump_of_a_single_leaf_is_exact() -> None:
    constant = DecisionTreeRegressor().fit(_DIABETES_X, np.full(len(_DIABETES_X), 2.5))
    served = OnnxModel.load(to_onnx(constant))
    assert_same_answers(constant, served, _DIABETES_X)


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (
            make_pipeline(StandardScaler(), SVC()).fit(_IRIS_X, _IRIS_Y),
            "no exact ONNX converter for Pipeline[StandardScaler, SVC]",
        ),
        (SVC().fit(_IRIS_X, _IRIS_Y), "no exact ONNX converter for SVC"),
        (
            RandomForestRegressor(2, random_state=0).fit(
                _DIABETES_X, np.c_[_DIABETES_Y, _DIABETES_Y]
            ),
            "the RandomForestRegressor predicts several outputs per row",
        ),
        (
            GradientBoostingRegressor(n_estimators=2, init=LinearRegression()).fit(
                _DIABETES_X, _DIABETES_Y
            ),
            "the GradientBoostingRegressor starts from a LinearRegression, "
            "which is not a constant prediction",
        ),
    ],
    ids=["pipeline", "svc", "multi-output", "linear-init"],
)
def test_other_models_are_refused_with_a_reason(model: Any, reason: str) -> None:
    with pytest.raises(NotConvertible) as refused:
        to_onnx(model)
    assert refused.value.reason == reason


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_inputs_scikit_learn_refuses_are_refused() -> None:
    model = _fitted("RandomForest", "multiclass")
    served = OnnxModel.load(to_onnx(model))
    too_big = np.full((1, 4), 1e39)  # beyond float32: scikit-learn raises ValueError
    with pytest.raises(ValueError, match="float32"):
        model.predict(too_big)
    with pytest.raises(ValueError, match="float32"):
        served.predict(too_big)
    with pytest.raises(ValueError, match="features"):
        served.predict(np.zeros((1, 3)))
