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
PROBABILITY_TOLERANCE. Rows prove ONNX Runtime evaluates the graph as scikit-learn does, but
(b) samples the splits of big forests, so for trees `check_structure` then proves the graph
encodes every tree exactly: it reads the TreeEnsemble back from the graph's bytes and
walks every tree beside scikit-learn's tree_ (features, float64 thresholds bit for bit,
`<=`, true = left, missing-value routing, leaf weights and targets, tree order, class
copies, the boosting init, and the nodes and constants around the ensemble); about 0.6 s of
CPU for a 52-tree, 619k-node forest. Before any session, a graph whose session would need
more than `max_session_bytes` (onnx_proto.estimate_nbytes) is not served by ONNX.

Any difference, any failure, or a model with no exact converter sends the version to
scikit-learn, with a reason for its owner.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from creditml.models.onnx_convert import (
    META_CLASSES,
    META_FLOAT32_INPUT,
    META_KIND,
    META_N_FEATURES,
    NotConvertible,
    decode_classes,
    to_onnx,
)
from creditml.models.onnx_proto import (
    ML_DOMAIN,
    OPERATORS,
    GraphContents,
    Ints,
    Node,
    read_model,
)
from creditml.models.onnx_runtime import OnnxModel, estimate_nbytes
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
_MB = 1024 * 1024


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
    max_session_bytes: int | None = None,
    *,
    convert: Callable[[Any], bytes] = to_onnx,
) -> RuntimeDecision:
    """ONNX (with the graph) only when the converted graph's session fits in
    `max_session_bytes` (estimate_nbytes; checked before any session exists), the graph
    answers exactly like `model` on every row the gate builds, and (for trees) encodes every
    tree exactly (check_structure); otherwise scikit-learn, with the reason."""
    try:
        graph = convert(model)
    except NotConvertible as exc:
        return _sklearn(exc.reason)
    except Exception:  # noqa: BLE001 - a converter bug of ours: scikit-learn serves
        _log.warning("ONNX conversion failed", exc_info=True)
        return _sklearn("the model could not be converted to ONNX")
    if max_session_bytes is not None and estimate_nbytes(len(graph)) > max_session_bytes:
        return _sklearn(_too_big(estimate_nbytes(len(graph)), max_session_bytes))
    try:
        contents = read_model(graph)
        served = OnnxModel.load(graph)
    except Exception:  # noqa: BLE001 - GraphRefused or whatever ORT raises: scikit-learn serves
        _log.warning("the ONNX graph did not load", exc_info=True)
        return _sklearn("the converted ONNX graph could not be loaded")
    try:
        with _single_threaded(model), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "X does not have valid feature names"
            rows, reason = check_exactness(model, served, schema)
            reason = reason or check_structure(model, contents)
    except Exception:  # noqa: BLE001 - no verdict is a no: scikit-learn serves
        _log.warning("the ONNX exactness check failed", exc_info=True)
        return _sklearn("the ONNX exactness check could not be completed")
    if reason is not None:
        return _sklearn(reason, rows)
    return RuntimeDecision("onnx", None, graph, rows)


def _too_big(needed: int, limit: int) -> str:
    return (
        f"its ONNX session would need about {-(-needed // _MB)} MB, "
        f"more than the {limit // _MB} MB a model may use"
    )


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


# ---------------------------------------------------------------- structure
# Rows prove that ONNX Runtime evaluates the graph as scikit-learn evaluates the trees, but
# only where rows go, and a big forest has more splits than the gate can afford rows for.
# The structural check proves, for every tree and every node, that the graph encodes exactly
# the model's tree_ arrays, so no leaf or split the rows missed can differ.
_FOREST_FAMILIES = {
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
    "ExtraTreeClassifier",
    "ExtraTreeRegressor",
    "RandomForestClassifier",
    "RandomForestRegressor",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
}
_BOOSTING_FAMILIES = {"GradientBoostingClassifier", "GradientBoostingRegressor"}
_ENSEMBLE_ATTRIBUTES = frozenset(OPERATORS[(ML_DOMAIN, "TreeEnsemble")])
_SUM, _NO_TRANSFORM, _BRANCH_LEQ = 1, 0, 0
_DOUBLE, _INT64 = 11, 7  # TensorProto.DataType


class _Differs(Exception):
    """The graph differs from the model; the message says where."""


@dataclass
class _Layout:
    """What the TreeEnsemble must encode: scikit-learn's nodes stacked tree after tree
    (children as stacked indices, -1 under a leaf), the leaf weight of each node per weight
    column, and for each member of the ensemble (a tree of the graph, in summation order)
    the stacked root, target and weight column it stands for."""

    left: NDArray[np.int64]
    right: NDArray[np.int64]
    feature: NDArray[np.int64]
    threshold_bits: NDArray[np.uint64]
    missing: NDArray[np.int64]
    local: NDArray[np.int64]  # each node's index in its own tree
    weight_bits: NDArray[np.uint64]  # (node, column)
    member_root: NDArray[np.int64]
    member_target: NDArray[np.int64]
    member_column: NDArray[np.int64]
    n_targets: int
    boosting: bool

    def where(self, member: int, node: int) -> str:
        k = self.n_targets
        of_class = f", class {member % k}" if k > 1 else ""
        if not self.boosting:
            return f"tree {member // k}{of_class}, node {self.local[node]}"
        if member < k:
            return f"the initial prediction{of_class}"
        return f"stage {(member - k) // k}{of_class}, node {self.local[node]}"


def _stacked(trees: list[Any], constants: int) -> dict[str, NDArray[Any]]:
    """The nodes of `trees` stacked after `constants` one-leaf trees (boosting's initial
    prediction): children as stacked indices."""
    counts = np.array([1] * constants + [t.node_count for t in trees], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    base = np.repeat(starts, counts)
    head = np.full(constants, -1, dtype=np.int64)

    def column(name: str, dtype: Any) -> NDArray[Any]:
        return np.concatenate(
            [head.astype(dtype), *[np.asarray(getattr(t, name), dtype) for t in trees]]
        )

    left, right = column("children_left", np.int64), column("children_right", np.int64)
    internal = left != -1
    left[internal] += base[internal]
    right[internal] += base[internal]
    missing = [
        np.asarray(getattr(t, "missing_go_to_left", np.zeros(t.node_count)), np.int64)
        for t in trees
    ]
    return {
        "left": left,
        "right": right,
        "feature": column("feature", np.int64),
        "threshold_bits": column("threshold", np.float64).view(np.uint64),
        "missing": np.concatenate([np.zeros(constants, np.int64), *missing]),
        "local": np.arange(left.size, dtype=np.int64) - base,
        "starts": starts,
    }


def _forest_layout(model: Any, n_targets: int) -> _Layout:
    # scikit-learn sums value[leaf, 0, k] tree after tree, then divides by the tree count
    trees = [model.tree_] if hasattr(model, "tree_") else [e.tree_ for e in model.estimators_]
    values = [np.asarray(t.value, dtype=np.float64) for t in trees]
    if any(v.ndim != 3 or v.shape[1] != 1 or v.shape[2] < n_targets for v in values):
        raise _Differs("a tree holds values of an unexpected shape")
    nodes = _stacked(trees, 0)
    weights = np.ascontiguousarray(np.concatenate([v[:, 0, :n_targets] for v in values]))
    members = np.repeat(np.arange(len(trees)), n_targets)  # K copies of each tree, in order
    targets = np.tile(np.arange(n_targets), len(trees))
    starts = nodes.pop("starts")
    return _Layout(
        **nodes,
        weight_bits=weights.view(np.uint64),
        member_root=starts[members],
        member_target=targets,
        member_column=targets,
        n_targets=n_targets,
        boosting=False,
    )


def _boosting_layout(model: Any, n_features: int) -> _Layout:
    # predict_stages: raw = init, then raw[:, k] += learning_rate * value[leaf, 0, 0] per stage
    stages = np.asarray(model.estimators_, dtype=object)
    n_targets = stages.shape[1]
    init = np.asarray(model._raw_predict_init(np.zeros((1, n_features))), dtype=np.float64)
    trees = [e.tree_ for e in stages.ravel()]
    nodes = _stacked(trees, n_targets)
    scaled = [model.learning_rate * np.asarray(t.value, dtype=np.float64)[:, 0, 0] for t in trees]
    weights = np.concatenate([init.reshape(-1), *scaled])[:, None]
    starts = nodes.pop("starts")
    return _Layout(
        **nodes,
        weight_bits=np.ascontiguousarray(weights).view(np.uint64),
        member_root=starts,  # the initial prediction's leaves, then stage after stage
        member_target=np.tile(np.arange(n_targets), len(stages) + 1),
        member_column=np.zeros(starts.size, dtype=np.int64),
        n_targets=n_targets,
        boosting=True,
    )


@dataclass
class _Ensemble:
    """The TreeEnsemble's arrays, as the graph holds them."""

    roots: NDArray[np.int64]
    features: NDArray[np.int64]
    split_bits: NDArray[np.uint64]
    modes: NDArray[Any]
    missing: NDArray[np.int64]
    true_ids: NDArray[np.int64]
    true_leaf: NDArray[np.int64]
    false_ids: NDArray[np.int64]
    false_leaf: NDArray[np.int64]
    leaf_targets: NDArray[np.int64]
    leaf_bits: NDArray[np.uint64]

    @classmethod
    def of(cls, node: Node, n_targets: int) -> _Ensemble:
        a = node.attributes
        if set(a) != _ENSEMBLE_ATTRIBUTES:
            raise _Differs(f"the TreeEnsemble has attributes {sorted(a)}")
        scalars = (a["aggregate_function"], a["post_transform"], a["n_targets"])
        if scalars != (_SUM, _NO_TRANSFORM, n_targets):
            raise _Differs("the TreeEnsemble does not sum its trees into one target per class")
        ensemble = cls(
            roots=_ints(a, "tree_roots"),
            features=_ints(a, "nodes_featureids"),
            split_bits=_tensor(a, "nodes_splits", np.float64).view(np.uint64),
            modes=_tensor(a, "nodes_modes", np.uint8),
            missing=_ints(a, "nodes_missing_value_tracks_true"),
            true_ids=_ints(a, "nodes_truenodeids"),
            true_leaf=_ints(a, "nodes_trueleafs"),
            false_ids=_ints(a, "nodes_falsenodeids"),
            false_leaf=_ints(a, "nodes_falseleafs"),
            leaf_targets=_ints(a, "leaf_targetids"),
            leaf_bits=_tensor(a, "leaf_weights", np.float64).view(np.uint64),
        )
        split_arrays = list(vars(ensemble).values())[1:9]
        if (
            len({x.size for x in split_arrays}) != 1
            or ensemble.leaf_targets.size != ensemble.leaf_bits.size
        ):
            raise _Differs("the TreeEnsemble's node or leaf arrays differ in length")
        return ensemble


def _ints(attributes: Mapping[str, Any], name: str) -> NDArray[np.int64]:
    value = attributes[name]
    if not isinstance(value, Ints):
        raise _Differs(f"the TreeEnsemble's {name} is not a list of ints")
    return np.asarray(value.values, dtype=np.int64)


def _tensor(attributes: Mapping[str, Any], name: str, dtype: Any) -> NDArray[Any]:
    value = attributes[name]
    if not isinstance(value, np.ndarray) or value.dtype != dtype or value.ndim != 1:
        raise _Differs(f"the TreeEnsemble's {name} is not a 1-D {np.dtype(dtype).name} tensor")
    return np.ascontiguousarray(value)


def _first(
    bad: NDArray[np.bool_], members: NDArray[np.int64], nodes: NDArray[np.int64]
) -> tuple[int, int] | None:
    hits = np.flatnonzero(bad)
    return (int(members[hits[0]]), int(nodes[hits[0]])) if hits.size else None


def _check_splits(
    ens: _Ensemble,
    layout: _Layout,
    g: NDArray[np.int64],
    s: NDArray[np.int64],
    m: NDArray[np.int64],
    n_features: int,
) -> None:
    """Graph splits `g` stand for scikit-learn nodes `s` of members `m`: a split must test
    the same feature against the same float64 threshold with `<=`, sending NaN the same way.
    A one-leaf tree's node (the graph needs a split at its root) must send both ways to one
    leaf."""
    split = layout.left[s] != -1
    gs, ss = g[split], s[split]
    checks = (
        ("feature", ens.features[gs] != layout.feature[ss]),
        ("threshold", ens.split_bits[gs] != layout.threshold_bits[ss]),
        ("comparison", ens.modes[gs] != _BRANCH_LEQ),
        ("missing-value branch", ens.missing[gs] != layout.missing[ss]),
    )
    for what, bad in checks:
        found = _first(bad, m[split], ss)
        if found:
            raise _Differs(f"{layout.where(*found)}: {what}")
    gl = g[~split]
    bad = (ens.true_leaf[gl] != 1) | (ens.false_leaf[gl] != 1)
    bad |= (ens.true_ids[gl] != ens.false_ids[gl]) | (ens.modes[gl] != _BRANCH_LEQ)
    bad |= (ens.features[gl] < 0) | (ens.features[gl] >= n_features)
    found = _first(bad, m[~split], s[~split])
    if found:
        raise _Differs(f"{layout.where(*found)}: a one-leaf tree")


def _check_leaves(
    ens: _Ensemble,
    layout: _Layout,
    ids: NDArray[np.int64],
    s: NDArray[np.int64],
    m: NDArray[np.int64],
) -> None:
    """Graph leaves `ids` stand for scikit-learn leaves `s` of members `m`: same weight, bit
    for bit, into the member's target."""
    if ((ids < 0) | (ids >= ens.leaf_bits.size)).any():
        raise _Differs("a leaf id is out of range")
    bad = ens.leaf_bits[ids] != layout.weight_bits[s, layout.member_column[m]]
    found = _first(bad, m, s)
    if found:
        raise _Differs(f"{layout.where(*found)}: leaf weight")
    found = _first(ens.leaf_targets[ids] != layout.member_target[m], m, s)
    if found:
        raise _Differs(f"{layout.where(*found)}: leaf target")


def _children(
    ens: _Ensemble,
    layout: _Layout,
    g: NDArray[np.int64],
    s: NDArray[np.int64],
    m: NDArray[np.int64],
    leaf_visits: NDArray[np.int64],
) -> tuple[NDArray[np.int64], ...]:
    """The next level's (graph split, scikit-learn node, member) triples; leaves are checked
    and counted on the way. True goes with scikit-learn's left child, false with the right."""
    root_leaf = layout.left[s] == -1  # a one-leaf tree: its single leaf, reached once
    sides = (
        (ens.true_ids[g], ens.true_leaf[g], np.where(root_leaf, s, layout.left[s]), g == g),
        (ens.false_ids[g], ens.false_leaf[g], layout.right[s], ~root_leaf),
    )
    next_g, next_s, next_m = [], [], []
    for ids, flags, child, used in sides:
        ids, flags, child, member = ids[used], flags[used], child[used], m[used]
        leaf = layout.left[child] == -1
        found = _first(flags != leaf, member, child)
        if found:
            raise _Differs(f"{layout.where(*found)}: a leaf where the model splits or the reverse")
        _check_leaves(ens, layout, ids[leaf], child[leaf], member[leaf])
        np.add.at(leaf_visits, ids[leaf], 1)
        next_g.append(ids[~leaf])
        next_s.append(child[~leaf])
        next_m.append(member[~leaf])
    return np.concatenate(next_g), np.concatenate(next_s), np.concatenate(next_m)


def _walk(ens: _Ensemble, layout: _Layout, n_features: int) -> None:
    """Every member's tree in the graph, level by level alongside scikit-learn's: each graph
    node must stand for the scikit-learn node reached by the same branches, and every graph
    node and leaf must be reached exactly once."""
    n_members, n_splits = layout.member_root.size, ens.features.size
    if ens.roots.size != n_members:
        raise _Differs(f"the graph has {ens.roots.size} trees, the model {n_members}")
    split_visits = np.zeros(n_splits, dtype=np.int64)
    leaf_visits = np.zeros(ens.leaf_bits.size, dtype=np.int64)
    g, s, m = ens.roots, layout.member_root, np.arange(n_members)
    while g.size:
        if ((g < 0) | (g >= n_splits)).any():
            raise _Differs("a node id is out of range")
        np.add.at(split_visits, g, 1)
        _check_splits(ens, layout, g, s, m, n_features)
        g, s, m = _children(ens, layout, g, s, m, leaf_visits)
    if (split_visits != 1).any() or (leaf_visits != 1).any():
        raise _Differs("the graph has nodes or leaves no tree reaches, or reaches twice")


def _node(op: str, inputs: list[str], outputs: list[str], **attributes: int) -> tuple[Any, ...]:
    return (op, "", tuple(inputs), tuple(outputs), tuple(sorted(attributes.items())))


def _key(node: Node) -> tuple[Any, ...]:
    def plain(value: Any) -> Any:
        if isinstance(value, Ints):
            return tuple(int(v) for v in value.values)
        return value if isinstance(value, int) else repr(value)

    attributes = tuple(sorted((k, plain(v)) for k, v in node.attributes.items()))
    return (node.op_type, node.domain, tuple(node.inputs), tuple(node.outputs), attributes)


@dataclass
class _Frame:
    """Everything around the TreeEnsemble: the nodes after it, the initializers (their
    values matter: the tree count the forest divides by, the constants of the sigmoid),
    the outputs and the ensemble's output name."""

    tail: list[tuple[Any, ...]]
    initializers: dict[str, NDArray[Any]]
    outputs: list[tuple[Any, ...]]
    ensemble_output: str


def _outputs(is_classifier: bool, n_classes: int) -> list[tuple[Any, ...]]:
    if is_classifier:
        return [("label", _INT64, ("N",)), ("probabilities", _DOUBLE, ("N", n_classes))]
    return [("value", _DOUBLE, ("N", 1))]


def _forest_frame(model: Any, is_classifier: bool, n_classes: int) -> _Frame:
    n_trees = 1 if hasattr(model, "tree_") else len(model.estimators_)
    tail, scores = [], "sum"
    if n_trees > 1:
        tail.append(_node("Div", ["sum", "n_trees"], ["mean"]))
        scores = "mean"
    if is_classifier:
        tail += [
            _node("Identity", [scores], ["probabilities"]),
            _node("ArgMax", [scores], ["label"], axis=1, keepdims=0),
        ]
    else:
        tail.append(_node("Identity", [scores], ["value"]))
    initializers = {"n_trees": np.array([float(n_trees)])}
    return _Frame(tail, initializers, _outputs(is_classifier, n_classes), "sum")


def _boosting_frame(model: Any, is_classifier: bool, n_classes: int) -> _Frame:
    outputs = _outputs(is_classifier, n_classes)
    if not is_classifier:
        return _Frame([_node("Identity", ["raw"], ["value"])], {}, outputs, "raw")
    loss = type(getattr(model, "_loss", None)).__name__
    if n_classes > 2:
        tail = [
            _node("ArgMax", ["raw"], ["label"], axis=1, keepdims=0),
            _node("ReduceMax", ["raw", "axis1"], ["row_max"], keepdims=1),
            _node("Sub", ["raw", "row_max"], ["shifted"]),
            _node("Exp", ["shifted"], ["exps"]),
            _node("ReduceSum", ["exps", "axis1"], ["total"], keepdims=1),
            _node("Div", ["exps", "total"], ["probabilities"]),
        ]
        return _Frame(tail, {"axis1": np.array([1], dtype=np.int64)}, outputs, "raw")
    scales = {"HalfBinomialLoss": 1.0, "ExponentialLoss": 2.0}  # expit(scale * raw)
    if loss not in scales:
        raise _Differs(f"the model's loss {loss} has no known ONNX form")
    tail = [
        _node("GreaterOrEqual", ["raw", "zero"], ["positive"]),
        _node("Cast", ["positive"], ["positive64"], to=_INT64),
        _node("Reshape", ["positive64", "flat"], ["label"]),
        _node("Mul", ["raw", "scale"], ["logit"]),
        _node("Neg", ["logit"], ["negated"]),
        _node("Exp", ["negated"], ["odds"]),
        _node("Add", ["one", "odds"], ["denominator"]),
        _node("Div", ["one", "denominator"], ["p1"]),
        _node("Sub", ["one", "p1"], ["p0"]),
        _node("Concat", ["p0", "p1"], ["probabilities"], axis=1),
    ]
    initializers = {
        "zero": np.array([0.0]),
        "one": np.array([1.0]),
        "scale": np.array([scales[loss]]),
        "flat": np.array([-1], dtype=np.int64),
    }
    return _Frame(tail, initializers, outputs, "raw")


def _same_array(a: NDArray[Any], b: NDArray[Any]) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _check_frame(contents: GraphContents, frame: _Frame, n_features: int) -> Node:
    """The graph's nodes around its TreeEnsemble, its initializers, inputs and outputs are
    what the model's family computes; returns the TreeEnsemble."""
    head = [
        _node("Cast", ["X"], ["x32"], to=1),  # float32, as scikit-learn validates
        _node("Cast", ["x32"], ["x64"], to=_DOUBLE),
    ]
    nodes = contents.nodes
    if len(nodes) != len(frame.tail) + 3:
        raise _Differs(f"the graph has {len(nodes)} nodes instead of {len(frame.tail) + 3}")
    ensemble = nodes[2]
    ensemble_io = (
        ensemble.op_type,
        ensemble.domain,
        tuple(ensemble.inputs),
        tuple(ensemble.outputs),
    )
    if ensemble_io != ("TreeEnsemble", ML_DOMAIN, ("x64",), (frame.ensemble_output,)):
        raise _Differs("the graph's third node is not the expected TreeEnsemble")
    if [_key(n) for n in nodes[:2] + nodes[3:]] != head + frame.tail:
        raise _Differs("the nodes around the TreeEnsemble differ")
    found = contents.initializers
    expected = frame.initializers
    if found.keys() != expected.keys() or not all(
        _same_array(found[k], v) for k, v in expected.items()
    ):
        raise _Differs("the graph's constants differ")
    io = [(v.name, v.elem_type, tuple(v.dims)) for v in contents.inputs + contents.outputs]
    if io != [("X", _DOUBLE, ("N", n_features)), *frame.outputs]:
        raise _Differs("the graph's inputs or outputs differ")
    return ensemble


def _check_metadata(model: Any, metadata: dict[str, str], n_features: int) -> None:
    classes = getattr(model, "classes_", None)
    kind = "classifier" if classes is not None else "regressor"
    if metadata.get(META_KIND) != kind or metadata.get(META_N_FEATURES) != str(n_features):
        raise _Differs("the graph's kind or number of features differ")
    if metadata.get(META_FLOAT32_INPUT) != "1":
        raise _Differs("the graph does not check inputs as float32")
    if classes is None:
        return
    stored = decode_classes(metadata.get(META_CLASSES, '{"dtype": "<i8", "values": []}'))
    expected = np.asarray(classes)
    if stored.dtype != expected.dtype or stored.tolist() != expected.tolist():
        raise _Differs("the graph's class labels differ")


def check_structure(model: Any, contents: GraphContents) -> str | None:
    """None when the graph (as read by onnx_proto.read_model) encodes exactly the tree model
    it was converted from: every tree, node, threshold, branch and leaf weight, in
    scikit-learn's summation order, and the computation around them; otherwise the first
    difference, as a reason for the model's owner. Models other than scikit-learn's trees,
    forests and gradient boosting are not checked (None)."""
    name = type(model).__name__
    if name not in _FOREST_FAMILIES | _BOOSTING_FAMILIES:
        return None
    n_features = int(model.n_features_in_)
    classes = getattr(model, "classes_", None)
    n_classes = len(classes) if classes is not None else 1
    try:
        if name in _BOOSTING_FAMILIES:
            layout = _boosting_layout(model, n_features)
            frame = _boosting_frame(model, classes is not None, n_classes)
        else:
            layout = _forest_layout(model, n_classes)
            frame = _forest_frame(model, classes is not None, n_classes)
        _check_metadata(model, contents.metadata, n_features)
        ensemble = _check_frame(contents, frame, n_features)
        _walk(_Ensemble.of(ensemble, layout.n_targets), layout, n_features)
    except _Differs as differs:
        return f"the ONNX graph does not encode the model exactly ({differs})"
    return None
