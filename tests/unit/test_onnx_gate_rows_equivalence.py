"""The gate's vectorized split rows against the straightforward per-split construction kept
here (walk each split's root path, pick a float32 value inside every interval): the same rows,
in the same order, and the same random draws."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import ExtraTreesClassifier, GradientBoostingRegressor
from sklearn.tree import DecisionTreeClassifier

from creditml.models import onnx_gate

pytestmark = pytest.mark.unit

X_IRIS, Y_IRIS = load_iris(return_X_y=True)


def f32_floor(value: float) -> float:
    down = np.float32(value)
    if np.float64(down) > value:
        down = np.nextafter(down, np.float32(-np.inf))
    return float(down)


def f32_above(value: float) -> float:
    return float(np.nextafter(np.float32(f32_floor(value)), np.float32(np.inf)))


def inside(low: float, high: float, preferred: float) -> float | None:
    for value in (float(np.float32(preferred)), f32_floor(high), f32_above(low)):
        if low < value <= high and np.isfinite(value):
            return value
    return None


def path_row(tree: Any, node: int, base: Any) -> Any:
    parents = {int(c): p for p in range(tree.node_count) for c in tree.children_left[p : p + 1]}
    parents |= {int(c): p for p in range(tree.node_count) for c in tree.children_right[p : p + 1]}
    low: dict[int, float] = {}
    high: dict[int, float] = {}
    child = node
    while child in parents:
        parent = parents[child]
        feature, threshold = int(tree.feature[parent]), float(tree.threshold[parent])
        if tree.children_left[parent] == child:
            high[feature] = min(high.get(feature, np.inf), threshold)
        else:
            low[feature] = max(low.get(feature, -np.inf), threshold)
        child = parent
    row = base.copy()
    for feature in set(low) | set(high):
        value = inside(low.get(feature, -np.inf), high.get(feature, np.inf), row[feature])
        if value is None:
            return None
        row[feature] = value
    return row


def split_values(t: float) -> list[float]:
    if not np.isfinite(t):
        return [float(np.finfo(np.float32).max), 0.0]
    below = f32_floor(t)
    above = f32_above(below)
    return [t, float(np.nextafter(t, np.inf)), float(np.nextafter(t, -np.inf)), below, above]


def reference_split_rows(trees: list[Any], base: Any, rng: Any, nan: bool) -> Any:
    splits = [(t, n) for t, tree in enumerate(trees) for n in range(tree.node_count)]
    splits = [(t, n) for t, n in splits if trees[t].children_left[n] != -1]
    per_split = 6 if nan else 5
    budget = max(per_split, min(onnx_gate.MAX_SPLIT_ROWS, onnx_gate.MAX_SPLIT_CELLS // base.size))
    if len(splits) * per_split > budget:
        keep = rng.choice(len(splits), budget // per_split, replace=False)
        splits = [splits[i] for i in sorted(keep)]
    rows = []
    for t, node in splits:
        row = path_row(trees[t], node, base)
        if row is None:
            continue
        for value in split_values(float(trees[t].threshold[node])) + ([np.nan] if nan else []):
            changed = row.copy()
            changed[trees[t].feature[node]] = value
            rows.append(changed)
    return np.array(rows).reshape(-1, base.size)


def _nan_tree() -> Any:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 3))
    X[rng.random(X.shape) < 0.2] = np.nan  # NaN-only splits have an infinite threshold
    model = DecisionTreeClassifier(random_state=0).fit(X, rng.integers(0, 3, size=600))
    assert np.isinf(model.tree_.threshold).any()
    return model


def _unreachable_tree() -> Any:
    model = DecisionTreeClassifier(random_state=0).fit(X_IRIS, Y_IRIS)
    tree = model.tree_
    thresholds = tree.threshold  # a view of the tree's nodes
    for node in np.flatnonzero(tree.children_left != -1):
        left = tree.children_left[node]
        if tree.children_left[left] != -1:  # (t, t + 1e-12] holds no float32 value
            thresholds[node] = 1.0 + 1e-12
            thresholds[left] = 1.0
    splits = np.flatnonzero(tree.children_left != -1)
    assert any(path_row(tree, int(node), X_IRIS[0]) is None for node in splits)
    return model


MODELS = {
    "tree-with-nan": _nan_tree,
    "unreachable-splits": _unreachable_tree,
    "extra-trees": lambda: ExtraTreesClassifier(6, random_state=0).fit(X_IRIS, Y_IRIS),
    "boosting": lambda: GradientBoostingRegressor(n_estimators=40, random_state=0).fit(
        X_IRIS, Y_IRIS * 1.0
    ),
    "sampled-splits": lambda: ExtraTreesClassifier(300, random_state=0).fit(X_IRIS, Y_IRIS),
}


@pytest.mark.parametrize("nan", [False, True], ids=["no-nan", "nan"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_split_rows_are_the_per_split_reference(name: str, nan: bool) -> None:
    model = MODELS[name]()
    trees, n_features = onnx_gate._trees(model), model.n_features_in_
    made = []
    for split_rows in (reference_split_rows, onnx_gate._split_rows):
        rng = np.random.default_rng(onnx_gate.SEED)
        base = onnx_gate._random_rows(trees, n_features, rng)[0]
        rows = split_rows(trees, base, rng, nan)
        made.append((rows.shape, rows.tobytes(), rng.random()))
    assert made[0] == made[1]
    assert made[1][0][0] > 20
