"""Decide, where the scikit-learn model is loaded (the registration sandbox), whether a
version is served by ONNX Runtime or by scikit-learn.

`decide_runtime` converts the model (creditml.models.onnx_convert), loads the graph as
serving would (creditml.models.onnx_runtime), then compares both runtimes on rows built to
find any difference:

(a) random rows: per feature, uniform between the smallest and largest split threshold of
    any tree, widened by 10% of that span (a feature no tree splits on: standard normal);
(b) for trees, every split (a deterministic sample when their rows would pass
    MAX_SPLIT_ROWS, or MAX_SPLIT_CELLS values for wide models): a row that reaches the
    split node (a float32 value inside every interval on its root path), with the split
    feature set to the threshold t, nextafter(t, +-inf) and the two float32 values
    bracketing t, plus NaN there when scikit-learn accepts NaN (then also random rows
    with 30% NaN cells);
(c) for classifiers, pairs of rows with different labels bisected 50 times towards the
    decision boundary, keeping every midpoint and both final sides.

Labels and regression values must be identical (values bit for bit), probabilities within
PROBABILITY_TOLERANCE. Any difference, any failure, or a model with no exact converter
sends the version to scikit-learn, with a reason for its owner.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from creditml.models.onnx_convert import NotConvertible, to_onnx
from creditml.models.onnx_runtime import OnnxModel
from creditml.models.schema import ModelSchema

# Not the function loggers: in the sandbox, stdout carries the protocol (stderr is free).
_log = logging.getLogger(__name__)

PROBABILITY_TOLERANCE = 1e-12
RANDOM_ROWS = 1000
MAX_SPLIT_ROWS = 20_000
MAX_SPLIT_CELLS = 4_000_000  # wide models get fewer split rows: at most 32 MB of them
BOUNDARY_PAIRS = 64
BISECT_STEPS = 50
SINGLE_ROWS = 20  # also compared one row per run: ORT takes another path for N == 1
NAN_SHARE = 0.3
SEED = 15


@dataclass(frozen=True)
class RuntimeDecision:
    """Which runtime serves a version; `graph` when ONNX, `reason` (for the owner) when not."""

    runtime: Literal["onnx", "sklearn"]
    reason: str | None
    graph: bytes | None
    rows_checked: int


def _sklearn(reason: str, rows: int = 0) -> RuntimeDecision:
    return RuntimeDecision("sklearn", reason, None, rows)


def decide_runtime(
    model: Any,
    schema: ModelSchema,
    convert: Callable[[Any], bytes] = to_onnx,
) -> RuntimeDecision:
    """ONNX (with the graph) only when the converted graph answers exactly like `model` on
    every row the gate builds; otherwise scikit-learn, with the reason."""
    try:
        graph = convert(model)
    except NotConvertible as exc:
        return _sklearn(exc.reason)
    except Exception:  # noqa: BLE001 - a converter bug of ours: scikit-learn serves
        _log.warning("ONNX conversion failed", exc_info=True)
        return _sklearn("the model could not be converted to ONNX")
    try:
        served = OnnxModel.load(graph)
    except Exception:  # noqa: BLE001 - whatever ORT raises: scikit-learn serves
        _log.warning("the ONNX graph did not load", exc_info=True)
        return _sklearn("the converted ONNX graph could not be loaded")
    try:
        with _single_threaded(model), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "X does not have valid feature names"
            rows, reason = check_exactness(model, served, schema)
    except Exception:  # noqa: BLE001 - no verdict is a no: scikit-learn serves
        _log.warning("the ONNX exactness check failed", exc_info=True)
        return _sklearn("the ONNX exactness check could not be completed")
    if reason is not None:
        return _sklearn(reason, rows)
    return RuntimeDecision("onnx", None, graph, rows)


@contextlib.contextmanager
def _single_threaded(model: Any) -> Iterator[None]:
    # Forests accumulate trees in a nondeterministic order with n_jobs > 1; the graph
    # reproduces the sequential order, which is what the owner's model gives with n_jobs=1.
    params = model.get_params(deep=True) if hasattr(model, "get_params") else {}
    saved = {k: v for k, v in params.items() if k == "n_jobs" or k.endswith("__n_jobs")}
    if saved:
        model.set_params(**dict.fromkeys(saved, 1))
    try:
        yield
    finally:
        if saved:
            model.set_params(**saved)


def check_exactness(model: Any, served: OnnxModel, schema: ModelSchema) -> tuple[int, str | None]:
    """(rows compared, None) when `served` answers like `model`, else the reason."""
    if served.has_probabilities != bool(schema.probabilities):
        return 0, "the ONNX graph and the model disagree on offering probabilities"
    trees = _trees(model)
    rng = np.random.default_rng(SEED)
    accepts_nan = _accepts_nan(model, served)
    if accepts_nan is None:
        return 0, "ONNX and scikit-learn treat missing values (NaN) differently"
    rows = [_random_rows(trees, served.n_features, rng)]
    if trees:
        rows.append(_split_rows(trees, rows[0][0], rng, accepts_nan))
    if accepts_nan:
        rows.append(_with_nan(rows[0], rng))
    X = np.vstack(rows)
    if served.is_classifier:
        X = np.vstack([X, _boundary_rows(model, X, rng)])
    reason = _compare(model, served, X, schema)
    if reason is None:
        reason = _compare_single_rows(model, served, X[:SINGLE_ROWS], schema)
    return len(X), reason


def _accepts_nan(model: Any, served: OnnxModel) -> bool | None:
    """Whether both runtimes accept NaN rows (None when only one of them does)."""
    row = np.full((1, served.n_features), np.nan)
    sklearn_accepts, onnx_accepts = _runs(model.predict, row), _runs(served.predict, row)
    return sklearn_accepts if sklearn_accepts == onnx_accepts else None


def _runs(predict: Callable[[Any], Any], rows: NDArray[Any]) -> bool:
    try:
        predict(rows)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- rows
def _trees(model: Any) -> list[Any]:
    if hasattr(model, "tree_"):
        return [model.tree_]
    estimators = getattr(model, "estimators_", None)
    if estimators is None:
        return []
    members = np.ravel(np.asarray(estimators, dtype=object))
    return [m.tree_ for m in members if hasattr(m, "tree_")]


def _ranges(trees: list[Any], n_features: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    low = np.full(n_features, np.inf)
    high = np.full(n_features, -np.inf)
    for tree in trees:
        internal = tree.children_left != -1
        features, thresholds = tree.feature[internal], tree.threshold[internal]
        finite = np.isfinite(thresholds)
        np.minimum.at(low, features[finite], thresholds[finite])
        np.maximum.at(high, features[finite], thresholds[finite])
    unsplit = low > high
    low[unsplit], high[unsplit] = -3.0, 3.0  # a standard normal's scale
    margin = np.maximum((high - low) * 0.1, 1.0 * (high == low))
    return low - margin, high + margin


def _random_rows(trees: list[Any], n_features: int, rng: np.random.Generator) -> NDArray[Any]:
    low, high = _ranges(trees, n_features)
    rows = rng.uniform(low, high, size=(RANDOM_ROWS, n_features))
    unsplit = (low == -3.3) & (high == 3.3)
    rows[:, unsplit] = rng.standard_normal((RANDOM_ROWS, int(unsplit.sum())))
    rows[0] = (low + high) / 2  # the centre row: the base of split rows
    return rows


def _f32_floor(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """The largest float32 value <= each value, as float64 (+-inf stay)."""
    with np.errstate(over="ignore"):
        down = values.astype(np.float32)
    over = down.astype(np.float64) > values
    down[over] = np.nextafter(down[over], np.float32(-np.inf))
    return down.astype(np.float64)


def _f32_above(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """The smallest float32 value > each value, as float64."""
    floor = _f32_floor(values).astype(np.float32)
    return np.nextafter(floor, np.float32(np.inf)).astype(np.float64)


def _inside(
    low: NDArray[np.float64], high: NDArray[np.float64], preferred: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Per cell, a float32 value v with low < v <= high (`preferred` rounded to float32 if it
    is one, else the largest float32 <= high, else the smallest > low); NaN when none is."""
    with np.errstate(over="ignore"):
        rounded = preferred.astype(np.float32).astype(np.float64)
    chosen = np.full(low.shape, np.nan)
    for candidate in (_f32_above(low), _f32_floor(high), rounded):  # the last fitting wins
        fits = (low < candidate) & (candidate <= high) & np.isfinite(candidate)
        chosen[fits] = candidate[fits]
    return chosen


@dataclass
class _Nodes:
    """The nodes of several trees, stacked: children and parents as stacked indices."""

    left: NDArray[np.int64]
    parent: NDArray[np.int64]
    feature: NDArray[np.int64]
    threshold: NDArray[np.float64]
    starts: NDArray[np.int64]  # each tree's first node

    @classmethod
    def of(cls, trees: list[Any]) -> _Nodes:
        counts = np.array([tree.node_count for tree in trees], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        base = np.repeat(starts, counts)
        left = np.concatenate([tree.children_left for tree in trees]).astype(np.int64)
        right = np.concatenate([tree.children_right for tree in trees]).astype(np.int64)
        internal = np.flatnonzero(left != -1)
        left[internal] += base[internal]
        right[internal] += base[internal]
        parent = np.full(left.size, -1, dtype=np.int64)
        parent[left[internal]] = internal
        parent[right[internal]] = internal
        feature = np.concatenate([tree.feature for tree in trees]).astype(np.int64)
        threshold = np.concatenate([tree.threshold for tree in trees]).astype(np.float64)
        return cls(left, parent, feature, threshold, starts)


def _path_rows(
    nodes: _Nodes, targets: NDArray[np.int64], base: NDArray[Any]
) -> tuple[NDArray[Any], NDArray[np.bool_]]:
    """One row per target node: `base` changed so that float32 scikit-learn reaches the
    node (the features on its root path set inside their intervals), and whether it can."""
    shape = (targets.size, base.size)
    low, high = np.full(shape, -np.inf), np.full(shape, np.inf)
    touched = np.zeros(shape, dtype=bool)
    child = targets.copy()
    which = np.arange(targets.size)
    parent = nodes.parent[child]
    while which.size:  # one level up per round, every path at once
        keep = parent >= 0
        which, child, parent = which[keep], child[keep], parent[keep]
        feature, threshold = nodes.feature[parent], nodes.threshold[parent]
        went_left = nodes.left[parent] == child
        cell = (which, feature)  # one cell per path and round: no repeated index
        high[cell] = np.where(went_left, np.minimum(high[cell], threshold), high[cell])
        low[cell] = np.where(went_left, low[cell], np.maximum(low[cell], threshold))
        touched[cell] = True
        child, parent = parent, nodes.parent[parent]
    rows = np.repeat(base[None, :].astype(np.float64), targets.size, axis=0)
    values = _inside(low[touched], high[touched], rows[touched])
    rows[touched] = values
    reachable = ~np.isnan(np.where(touched, rows, 0.0)).any(axis=1)
    return rows, reachable


def _split_values(thresholds: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per threshold t: t, nextafter(t, +-inf) and the float32 values either side of t (for
    an infinite t: float32's largest value and 0, then NaN padding)."""
    with np.errstate(invalid="ignore"):
        below = _f32_floor(thresholds)
        values = np.stack(
            [
                thresholds,
                np.nextafter(thresholds, np.inf),
                np.nextafter(thresholds, -np.inf),
                below,
                _f32_above(below),
            ],
            axis=1,
        )
    infinite = ~np.isfinite(thresholds)
    values[infinite] = [float(np.finfo(np.float32).max), 0.0, np.nan, np.nan, np.nan]
    return values


def _split_rows(
    trees: list[Any], base: NDArray[Any], rng: np.random.Generator, nan: bool
) -> NDArray[Any]:
    nodes = _Nodes.of(trees)
    splits = np.flatnonzero(nodes.left != -1)  # tree after tree, in node order
    per_split = 6 if nan else 5
    budget = max(per_split, min(MAX_SPLIT_ROWS, MAX_SPLIT_CELLS // base.size))
    if splits.size * per_split > budget:
        keep = rng.choice(splits.size, budget // per_split, replace=False)
        splits = splits[np.sort(keep)]
    rows, reachable = _path_rows(nodes, splits, base)  # unreachable for float32 inputs: none
    rows, splits = rows[reachable], splits[reachable]
    thresholds = nodes.threshold[splits]
    values = _split_values(thresholds)
    used = np.ones(values.shape, dtype=bool)
    used[~np.isfinite(thresholds), 2:] = False
    if nan:
        values = np.hstack([values, np.full((splits.size, 1), np.nan)])
        used = np.hstack([used, np.ones((splits.size, 1), dtype=bool)])
    changed = np.repeat(rows[:, None, :], values.shape[1], axis=1)  # (split, value, feature)
    split_index = np.arange(splits.size)[:, None]
    value_index = np.arange(values.shape[1])[None, :]
    changed[split_index, value_index, nodes.feature[splits][:, None]] = values
    return changed[used].reshape(-1, base.size)


def _with_nan(rows: NDArray[Any], rng: np.random.Generator) -> NDArray[Any]:
    holed = rows.copy()
    holed[rng.random(holed.shape) < NAN_SHARE] = np.nan
    return holed


def _boundary_rows(model: Any, X: NDArray[Any], rng: np.random.Generator) -> NDArray[Any]:
    """Rows on both sides of decision boundaries, bisected between pairs of rows whose
    labels differ (NaN-free rows only)."""
    pool = X[~np.isnan(X).any(axis=1)]
    labels = model.predict(pool)
    first, second = rng.permutation(len(pool)), rng.permutation(len(pool))
    differ = labels[first] != labels[second]
    first, second = first[differ][:BOUNDARY_PAIRS], second[differ][:BOUNDARY_PAIRS]
    if first.size == 0:
        return np.empty((0, X.shape[1]))
    near, far = pool[first].copy(), pool[second].copy()
    near_label = labels[first]
    seen = []
    for _ in range(BISECT_STEPS):
        middle = near + (far - near) * 0.5
        seen.append(middle)
        same = model.predict(middle) == near_label
        near[same], far[~same] = middle[same], middle[~same]
    return np.vstack([*seen, near, far])


# ---------------------------------------------------------------- comparison
def _mismatches(expected: Any, got: Any) -> NDArray[np.bool_] | str:
    expected, got = np.asarray(expected), np.asarray(got)
    if expected.shape != got.shape or expected.dtype != got.dtype:
        return f"outputs of shape {got.shape} and dtype {got.dtype} instead of " + (
            f"{expected.shape} and {expected.dtype}"
        )
    if expected.dtype.kind == "f":  # bit for bit: -0.0 and 0.0 differ, NaN equals NaN
        flat_e = expected.reshape(len(expected), -1).view(np.uint8)
        flat_g = got.reshape(len(got), -1).view(np.uint8)
        return np.asarray((flat_e != flat_g).any(axis=1))
    return np.asarray(expected != got).reshape(len(expected), -1).any(axis=1)


def _compare(model: Any, served: OnnxModel, X: NDArray[Any], schema: ModelSchema) -> str | None:
    predicted, probabilities = served.run(X)  # one session run, as serving answers
    mismatched = _mismatches(model.predict(X), predicted)
    if isinstance(mismatched, str):
        return f"ONNX predictions came out as {mismatched}"
    what = "labels" if served.is_classifier else "values"
    counts = {what: int(mismatched.sum())}
    if schema.probabilities:
        expected, got = model.predict_proba(X), probabilities
        if got is None or expected.shape != got.shape:
            return "ONNX probabilities have another shape than scikit-learn's"
        far = np.abs(expected - got) > PROBABILITY_TOLERANCE
        far |= np.isnan(expected) != np.isnan(got)
        counts["probabilities"] = int(far.any(axis=1).sum())
        mismatched = mismatched | far.any(axis=1)
    return _reason(int(mismatched.sum()), len(X), counts)


def _reason(rows: int, total: int, counts: dict[str, int]) -> str | None:
    if rows == 0:
        return None
    detail = ", ".join(f"{name} on {n}" for name, n in counts.items() if n)
    return f"ONNX answers differed from scikit-learn's on {rows} of {total} rows checked ({detail})"


def _compare_single_rows(
    model: Any, served: OnnxModel, X: NDArray[Any], schema: ModelSchema
) -> str | None:
    differing = 0
    for row in X:
        reason = _compare(model, served, row[None, :], schema)
        differing += reason is not None
    if differing:
        return (
            f"ONNX answers differed from scikit-learn's on {differing} of {len(X)} rows "
            "predicted one at a time"
        )
    return None
