"""Real fitted scikit-learn models (the corpus safe loading must accept), built from small
data that sklearn ships, so nothing is downloaded."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import (
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC, SVR
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor


def _iris() -> tuple[np.ndarray, np.ndarray]:
    data = load_iris()
    return data.data, data.target


def _diabetes() -> tuple[np.ndarray, np.ndarray]:
    data = load_diabetes()
    return data.data, data.target


def _mixed_frame() -> tuple[Any, np.ndarray]:
    """Named numeric + categorical columns, as a pandas-free structured input: the pipeline
    sees column indices, and OneHotEncoder learns string categories (object arrays)."""
    rng = np.random.default_rng(7)
    size = 200
    numeric = rng.normal(size=(size, 2))
    colours = rng.choice(np.array(["red", "green", "blue"], dtype=object), size=size)
    features = np.empty((size, 3), dtype=object)
    features[:, :2] = numeric
    features[:, 2] = colours
    target = (numeric[:, 0] + (colours == "red") > 0.5).astype(int)
    return features, target


def column_pipeline() -> tuple[Pipeline, Any]:
    features, target = _mixed_frame()
    model = Pipeline(
        [
            (
                "prepare",
                ColumnTransformer(
                    [
                        ("scale", StandardScaler(), [0, 1]),
                        ("encode", OneHotEncoder(handle_unknown="ignore"), [2]),
                    ]
                ),
            ),
            ("classify", LogisticRegression(max_iter=500)),
        ]
    )
    return model.fit(features, target), features[:20]


def large_forest() -> tuple[RandomForestRegressor, np.ndarray]:
    """A forest of about 50 MB (joblib, uncompressed): 5 deep trees fitted, then copied to 50
    distinct trees so building it stays quick."""
    rng = np.random.default_rng(3)
    features = rng.normal(size=(12_000, 8))
    target = features[:, 0] + rng.normal(size=12_000)
    model = RandomForestRegressor(n_estimators=5, random_state=0).fit(features, target)
    fitted = model.estimators_
    model.estimators_ = [pickle.loads(pickle.dumps(fitted[i % 5])) for i in range(50)]  # noqa: S301
    model.n_estimators = 50
    return model, features[:20]


def _fit(make: Callable[[], Any], data: Callable[[], tuple[Any, Any]]) -> Callable[[], Any]:
    def build() -> tuple[Any, Any]:
        features, target = data()
        return make().fit(features, target), features[:20]

    return build


# name -> builder returning (fitted model, sample rows to predict)
CORPUS: dict[str, Callable[[], tuple[Any, Any]]] = {
    "column_transformer_pipeline": column_pipeline,
    "scaled_logistic_pipeline": _fit(
        lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)), _iris
    ),
    "linear_regression": _fit(LinearRegression, _diabetes),
    "ridge": _fit(Ridge, _diabetes),
    "logistic_regression": _fit(lambda: LogisticRegression(max_iter=500), _iris),
    "decision_tree_classifier": _fit(lambda: DecisionTreeClassifier(random_state=0), _iris),
    "decision_tree_regressor": _fit(lambda: DecisionTreeRegressor(random_state=0), _diabetes),
    "random_forest_classifier": _fit(
        lambda: RandomForestClassifier(n_estimators=20, random_state=0), _iris
    ),
    "random_forest_regressor": _fit(
        lambda: RandomForestRegressor(n_estimators=10, random_state=0), _diabetes
    ),
    "extra_trees_regressor": _fit(
        lambda: ExtraTreesRegressor(n_estimators=10, random_state=0), _diabetes
    ),
    "gradient_boosting_classifier": _fit(
        lambda: GradientBoostingClassifier(n_estimators=20, random_state=0), _iris
    ),
    "hist_gradient_boosting_classifier": _fit(
        lambda: HistGradientBoostingClassifier(max_iter=20, random_state=0), _iris
    ),
    "hist_gradient_boosting_regressor": _fit(
        lambda: HistGradientBoostingRegressor(max_iter=20, random_state=0), _diabetes
    ),
    "svc_with_probabilities": _fit(lambda: SVC(probability=True, random_state=0), _iris),
    "svr": _fit(SVR, _diabetes),
    "knn_classifier": _fit(lambda: KNeighborsClassifier(n_neighbors=5), _iris),
    "mlp_classifier": _fit(
        lambda: MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=0), _iris
    ),
    "gaussian_nb": _fit(GaussianNB, _iris),
    "large_random_forest": large_forest,
}
