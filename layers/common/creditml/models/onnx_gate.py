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


def _f32_floor(value: float) -> np.float64:
    """The largest float32 value <= `value`, as a float64."""
    down = np.float32(value)
    if np.float64(down) > value:
        down = np.nextafter(down, np.float32(-np.inf))
    return np.float64(down)


def _f32_above(value: float) -> np.float64:
    """The smallest float32 value > `value`, as a float64."""
    return np.float64(np.nextafter(np.float32(_f32_floor(value)), np.float32(np.inf)))


def _inside(low: float, high: float, preferred: float) -> float | None:
    """A float32 value v with low < v <= high (preferring `preferred`), or None."""
    for value in (np.float64(np.float32(preferred)), _f32_floor(high), _f32_above(low)):
        if low < value <= high and np.isfinite(value):
            return float(value)
    return None


def _path_row(tree: Any, parents: NDArray[np.int64], node: int, base: NDArray[Any]) -> Any:
    """`base` changed so that float32 scikit-learn reaches `node`, or None if it cannot."""
    low: dict[int, float] = {}
    high: dict[int, float] = {}
    child, parent = node, parents[node]
    while parent >= 0:
        feature, threshold = int(tree.feature[parent]), float(tree.threshold[parent])
        if tree.children_left[parent] == child:
            high[feature] = min(high.get(feature, np.inf), threshold)
        else:
            low[feature] = max(low.get(feature, -np.inf), threshold)
        child, parent = parent, parents[parent]
    row = base.copy()
    for feature in set(low) | set(high):
        value = _inside(low.get(feature, -np.inf), high.get(feature, np.inf), row[feature])
        if value is None:
            return None
        row[feature] = value
    return row


def _parents(tree: Any) -> NDArray[np.int64]:
    parents = np.full(tree.node_count, -1, dtype=np.int64)
    internal = np.flatnonzero(tree.children_left != -1)
    parents[tree.children_left[internal]] = internal
    parents[tree.children_right[internal]] = internal
    return parents


def _split_values(threshold: float) -> list[float]:
    if not np.isfinite(threshold):
        return [float(np.finfo(np.float32).max), 0.0]
    below = _f32_floor(threshold)
    return [
        threshold,
        float(np.nextafter(threshold, np.inf)),
        float(np.nextafter(threshold, -np.inf)),
        float(below),
        float(_f32_above(below)),
    ]


def _split_rows(
    trees: list[Any], base: NDArray[Any], rng: np.random.Generator, nan: bool
) -> NDArray[Any]:
    splits = [(t, int(n)) for t, tree in enumerate(trees) for n in _internal(tree)]
    per_split = 6 if nan else 5
    budget = max(per_split, min(MAX_SPLIT_ROWS, MAX_SPLIT_CELLS // base.size))
    if len(splits) * per_split > budget:
        keep = rng.choice(len(splits), budget // per_split, replace=False)
        splits = [splits[i] for i in sorted(keep)]
    parents: dict[int, NDArray[np.int64]] = {}
    rows = []
    for t, node in splits:
        tree = trees[t]
        if t not in parents:
            parents[t] = _parents(tree)
        row = _path_row(tree, parents[t], node, base)
        if row is None:  # unreachable for float32 inputs
            continue
        feature = int(tree.feature[node])
        values = _split_values(float(tree.threshold[node])) + ([np.nan] if nan else [])
        for value in values:
            changed = row.copy()
            changed[feature] = value
            rows.append(changed)
    return np.array(rows).reshape(-1, base.size)


def _internal(tree: Any) -> NDArray[np.int64]:
    return np.flatnonzero(tree.children_left != -1)


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
    mismatched = _mismatches(model.predict(X), served.predict(X))
    if isinstance(mismatched, str):
        return f"ONNX predictions came out as {mismatched}"
    what = "labels" if served.is_classifier else "values"
    counts = {what: int(mismatched.sum())}
    if schema.probabilities:
        expected, got = model.predict_proba(X), served.predict_proba(X)
        if expected.shape != got.shape:
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
