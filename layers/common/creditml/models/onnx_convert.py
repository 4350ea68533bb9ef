"""Convert fitted scikit-learn tree models to exact double-precision ONNX graphs.

Only families whose arithmetic can be reproduced bit for bit are converted; everything else
raises NotConvertible with a sentence for the model's owner. How scikit-learn (1.9) computes,
and how each graph mirrors it (see docs/DECISIONS.md, "ONNX serving"):

- Every tree predictor casts its input to float32 and compares it with float64 thresholds
  (`x <= t` goes left; NaN follows `missing_go_to_left`). The graph does the same:
  Cast(FLOAT) -> Cast(DOUBLE) -> ai.onnx.ml TreeEnsemble (opset 5) with BRANCH_LEQ and the
  thresholds untouched, `nodes_missing_value_tracks_true = missing_go_to_left`.
- TreeEnsemble opset 5 gives each leaf one target, so a K-class tree becomes K copies (copy
  k weighs leaves by `value[:, 0, k]`), kept in estimator order: SUM then adds them in the
  same order as scikit-learn's accumulation (one intra-op thread; see onnx_runtime).
- Forests divide the sum by the number of trees; ArgMax (first maximum, as numpy) picks the
  class index, and the stored `classes_` map it to a label outside the graph.
- GradientBoosting starts from its (constant) init prediction: it goes first, as a one-leaf
  tree, so 0 + init + lr*v1 + lr*v2 ... rounds exactly like `predict_stages`. Leaf weights
  are `learning_rate * value` computed in float64 as scikit-learn does. Binary labels come
  from `raw >= 0`, probabilities from 1 / (1 + exp(-raw)) (bit-exact against scipy's expit
  where ONNX Sigmoid is not); multiclass uses a composed softmax (within 1e-12).

scikit-learn is never imported here: families are recognised by class name and module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from creditml.models.inspection import describe
from creditml.models.onnx_proto import DOUBLE, FLOAT, INT64, Ints, Node, ValueInfo, model_bytes

ML = "ai.onnx.ml"
INPUT = "X"
LABEL = "label"
PROBABILITIES = "probabilities"
VALUE = "value"

# metadata_props keys (read by creditml.models.onnx_runtime)
META_KIND = "creditml.kind"  # "classifier" | "regressor"
META_CLASSES = "creditml.classes"  # JSON {"dtype": numpy dtype str, "values": [...]}
META_N_FEATURES = "creditml.n_features"
META_FLOAT32_INPUT = "creditml.float32_input"  # "1": inputs must fit float32, as sklearn checks
META_ALLOW_NAN = "creditml.allow_nan"  # "1": NaN inputs are routed, "0": refused
META_ESTIMATOR = "creditml.estimator"

_TREES = {
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
    "ExtraTreeClassifier",
    "ExtraTreeRegressor",
}
_FORESTS = {
    "RandomForestClassifier",
    "RandomForestRegressor",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
}
_BOOSTING = {"GradientBoostingClassifier", "GradientBoostingRegressor"}
_CONSTANT_INITS = {"DummyClassifier", "DummyRegressor"}
_CLASS_DTYPES = "biufUO"


class NotConvertible(Exception):
    """This model has no exact ONNX converter; `reason` says why, for its owner."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def to_onnx(model: Any) -> bytes:
    """The exact ONNX graph of a fitted tree model, or NotConvertible with the reason."""
    kind = type(model)
    name = kind.__name__
    if not kind.__module__.startswith("sklearn.") or name not in _TREES | _FORESTS | _BOOSTING:
        raise NotConvertible(f"no exact ONNX converter for {describe(model)}")
    if getattr(model, "n_outputs_", 1) != 1:
        raise NotConvertible(f"the {name} predicts several outputs per row")
    n_features = getattr(model, "n_features_in_", None)
    if not isinstance(n_features, int) or n_features < 1:
        raise NotConvertible(f"the {name} does not record its number of features")
    is_classifier = hasattr(model, "classes_")
    if name in _BOOSTING:
        graph = _boosting_graph(model, n_features, is_classifier)
    else:
        graph = _forest_graph(model, n_features, is_classifier)
    metadata = {
        META_KIND: "classifier" if is_classifier else "regressor",
        META_N_FEATURES: str(n_features),
        META_FLOAT32_INPUT: "1",
        META_ALLOW_NAN: "1" if _accepts_nan(model, n_features) else "0",
        META_ESTIMATOR: name,
    }
    if is_classifier:
        metadata[META_CLASSES] = encode_classes(model.classes_)
    return model_bytes(
        graph.nodes,
        [ValueInfo(INPUT, DOUBLE, ["N", n_features])],
        graph.outputs,
        graph.initializers,
        metadata,
    )


def encode_classes(classes: Any) -> str:
    """`classes_` as JSON (values and numpy dtype), so labels come back with the dtype and
    values scikit-learn's predict returns."""
    values = np.asarray(classes)
    if values.ndim != 1 or values.dtype.kind not in _CLASS_DTYPES:
        raise NotConvertible(f"class labels of type {values.dtype} cannot be stored")
    listed = values.tolist()
    if values.dtype.kind == "O" and not all(isinstance(v, str) for v in listed):
        raise NotConvertible("class labels of mixed or non-text object types cannot be stored")
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise NotConvertible("non-finite class labels cannot be stored")
    return json.dumps({"dtype": values.dtype.str, "values": listed})


def decode_classes(text: str) -> NDArray[Any]:
    """The inverse of encode_classes."""
    document = json.loads(text)
    return np.array(document["values"], dtype=np.dtype(document["dtype"]))


def _accepts_nan(model: Any, n_features: int) -> bool:
    # Whether scikit-learn routes NaN (trees fitted with missing values) or refuses it: the
    # served model refuses exactly when the original would.
    try:
        model.predict(np.full((1, n_features), np.nan))
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- tree ensembles
@dataclass
class _Graph:
    nodes: list[Node]
    outputs: list[ValueInfo]
    initializers: dict[str, Any]


@dataclass
class _Stacked:
    """Several trees' split nodes (TreeEnsemble order within each tree, child ids local to
    their tree) and leaves, stacked tree after tree. A tree of a single leaf gets one split
    whose branches both reach that leaf."""

    features: NDArray[np.int64]
    splits: NDArray[np.float64]
    missing_left: NDArray[np.int64]
    true_ids: NDArray[np.int64]
    true_leaf: NDArray[np.int64]
    false_ids: NDArray[np.int64]
    false_leaf: NDArray[np.int64]
    split_counts: NDArray[np.int64]  # per tree
    leaves: NDArray[np.int64]  # stacked node index of each leaf, tree after tree
    leaf_counts: NDArray[np.int64]  # per tree


class _Leaf:
    """A constant tree (gradient boosting's initial prediction): a single leaf."""

    children_left = children_right = np.array([-1], dtype=np.int64)
    feature = np.array([-2], dtype=np.int64)
    threshold = np.array([-2.0])
    missing_go_to_left = np.zeros(1, dtype=np.uint8)


def _starts(counts: NDArray[np.int64]) -> NDArray[np.int64]:
    """Where each block of `counts` begins when they are laid end to end."""
    starts = np.zeros(counts.size, dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    return starts


def _ranges(starts: NDArray[np.int64], counts: NDArray[np.int64]) -> NDArray[np.int64]:
    """np.concatenate([np.arange(s, s + c) for s, c in zip(starts, counts)]), vectorized."""
    shift = np.repeat(starts - _starts(counts), counts)
    return np.arange(int(counts.sum()), dtype=np.int64) + shift


def _missing(tree: Any) -> NDArray[np.int64]:
    missing = getattr(tree, "missing_go_to_left", None)
    if missing is None:
        return np.zeros(len(tree.children_left), dtype=np.int64)
    return np.asarray(missing, dtype=np.int64)


def _stack(trees: list[Any]) -> _Stacked:
    left = [np.asarray(t.children_left, dtype=np.int64) for t in trees]
    counts = np.array([a.size for a in left], dtype=np.int64)
    tree_of = np.repeat(np.arange(len(trees)), counts)
    is_leaf = np.concatenate(left) == -1
    base = _starts(counts)[tree_of]  # stacked index of each node's tree root
    # each node's position among its tree's splits (or leaves): a rank, less the earlier trees'
    position = np.empty(is_leaf.size, dtype=np.int64)
    for chosen in (~is_leaf, is_leaf):
        in_tree = tree_of[chosen]
        earlier = _starts(np.bincount(in_tree, minlength=len(trees)))[in_tree]
        position[chosen] = np.arange(in_tree.size) - earlier
    internal = np.flatnonzero(~is_leaf)
    lefts = np.concatenate(left)[internal] + base[internal]
    rights = np.concatenate([np.asarray(t.children_right, dtype=np.int64) for t in trees])
    rights = rights[internal] + base[internal]
    columns: list[NDArray[Any]] = [
        np.concatenate([np.asarray(t.feature, dtype=np.int64) for t in trees])[internal],
        np.concatenate([np.asarray(t.threshold, dtype=np.float64) for t in trees])[internal],
        np.concatenate([_missing(t) for t in trees])[internal],
        position[lefts],
        is_leaf[lefts].astype(np.int64),
        position[rights],
        is_leaf[rights].astype(np.int64),
    ]
    split_counts = np.bincount(tree_of[internal], minlength=len(trees))
    single = np.flatnonzero(split_counts == 0)  # single leaves: feature 0 <= 0.0, both to leaf 0
    if single.size:
        at = _starts(split_counts)[single]
        columns = [
            np.insert(c, at, v) for c, v in zip(columns, (0, 0.0, 0, 0, 1, 0, 1), strict=True)
        ]
    features, splits, missing, true_ids, true_leaf, false_ids, false_leaf = columns
    return _Stacked(
        features,
        splits,
        missing,
        true_ids,
        true_leaf,
        false_ids,
        false_leaf,
        split_counts=np.maximum(split_counts, 1),
        leaves=np.flatnonzero(is_leaf),
        leaf_counts=np.bincount(tree_of[is_leaf], minlength=len(trees)),
    )


def _ensemble(
    stacked: _Stacked,
    members: NDArray[np.int64],
    targets: NDArray[np.int64],
    weights: tuple[NDArray[np.float64], NDArray[np.int64]],
    output: str,
    n_targets: int,
) -> Node:
    """A TreeEnsemble of the stacked trees `members` (in that order, repeats allowed): member
    i is summed into target `targets[i]` with leaf weights `values[leaf, columns[i]]`, where
    `weights` is (values, columns) and `values` has a row per stacked leaf."""
    split_counts = stacked.split_counts[members]
    leaf_counts = stacked.leaf_counts[members]
    node_base, leaf_base = _starts(split_counts), _starts(leaf_counts)
    rows = _ranges(_starts(stacked.split_counts)[members], split_counts)
    leaf_rows = _ranges(_starts(stacked.leaf_counts)[members], leaf_counts)
    node_bases = np.repeat(node_base, split_counts)
    leaf_bases = np.repeat(leaf_base, split_counts)
    true_leaf, false_leaf = stacked.true_leaf[rows], stacked.false_leaf[rows]
    leaf_targets = np.repeat(targets, leaf_counts)
    values, columns = weights
    attributes = {
        "aggregate_function": 1,  # SUM
        "post_transform": 0,  # NONE
        "n_targets": n_targets,
        "tree_roots": Ints(node_base),  # a tree's root is its first split
        "nodes_featureids": Ints(stacked.features[rows]),
        "nodes_splits": stacked.splits[rows],
        "nodes_modes": np.zeros(rows.size, dtype=np.uint8),  # BRANCH_LEQ
        "nodes_truenodeids": Ints(
            np.where(true_leaf == 1, leaf_bases, node_bases) + stacked.true_ids[rows]
        ),
        "nodes_trueleafs": Ints(true_leaf),
        "nodes_falsenodeids": Ints(
            np.where(false_leaf == 1, leaf_bases, node_bases) + stacked.false_ids[rows]
        ),
        "nodes_falseleafs": Ints(false_leaf),
        "nodes_missing_value_tracks_true": Ints(stacked.missing_left[rows]),
        "leaf_targetids": Ints(leaf_targets),
        "leaf_weights": values[leaf_rows, np.repeat(columns, leaf_counts)],
    }
    return Node("TreeEnsemble", ["x64"], [output], attributes, domain=ML)


def _cast_input() -> list[Node]:
    # scikit-learn's validation casts to float32; comparisons then happen in float64
    return [
        Node("Cast", [INPUT], ["x32"], {"to": FLOAT}),
        Node("Cast", ["x32"], ["x64"], {"to": DOUBLE}),
    ]


def _trees_of(model: Any) -> list[Any]:
    if hasattr(model, "tree_"):
        return [model.tree_]
    return [estimator.tree_ for estimator in model.estimators_]


def _forest_graph(model: Any, n_features: int, is_classifier: bool) -> _Graph:
    trees = _trees_of(model)
    n_targets = len(model.classes_) if is_classifier else 1
    values = [np.asarray(tree.value, dtype=np.float64) for tree in trees]
    if any(v.ndim != 3 or v.shape[2] < n_targets for v in values):
        raise NotConvertible(f"a tree of the {type(model).__name__} has unexpected values")
    stacked = _stack(trees)
    leaf_values = np.concatenate([v[:, 0, :n_targets] for v in values])[stacked.leaves]
    # one copy per class, in tree order: tree 0 class 0, tree 0 class 1, ..., tree 1 class 0
    members = np.repeat(np.arange(len(trees)), n_targets)
    targets = np.tile(np.arange(n_targets), len(trees))
    ensemble = _ensemble(stacked, members, targets, (leaf_values, targets), "sum", n_targets)
    nodes = [*_cast_input(), ensemble]
    initializers: dict[str, Any] = {"n_trees": np.array(float(len(trees)))}
    scores = "sum"
    if len(trees) > 1:  # a forest averages: sum in order, then divide once
        nodes.append(Node("Div", ["sum", "n_trees"], ["mean"]))
        scores = "mean"
    if not is_classifier:
        nodes.append(Node("Identity", [scores], [VALUE]))
        return _Graph(nodes, [ValueInfo(VALUE, DOUBLE, ["N", 1])], initializers)
    nodes += [
        Node("Identity", [scores], [PROBABILITIES]),
        Node("ArgMax", [scores], [LABEL], {"axis": 1, "keepdims": 0}),
    ]
    return _Graph(nodes, _classifier_outputs(n_targets), initializers)


def _classifier_outputs(n_classes: int) -> list[ValueInfo]:
    return [
        ValueInfo(LABEL, INT64, ["N"]),
        ValueInfo(PROBABILITIES, DOUBLE, ["N", n_classes]),
    ]


def _init_raw(model: Any, n_features: int) -> NDArray[np.float64]:
    init = model.init_
    if isinstance(init, str) and init == "zero":
        return np.zeros(model.estimators_.shape[1])
    if type(init).__name__ not in _CONSTANT_INITS or getattr(init, "strategy", "") == "stratified":
        raise NotConvertible(
            f"the {type(model).__name__} starts from a {type(init).__name__}, "
            "which is not a constant prediction"
        )
    probes = np.vstack([np.zeros(n_features), np.ones(n_features)])
    raw = np.asarray(model._raw_predict_init(probes), dtype=np.float64)
    if not np.array_equal(raw[0], raw[1]):
        raise NotConvertible(f"the {type(model).__name__}'s initial prediction is not constant")
    first: NDArray[np.float64] = raw[0]
    return first


def _boosting_graph(model: Any, n_features: int, is_classifier: bool) -> _Graph:
    stages = np.asarray(model.estimators_, dtype=object)
    n_targets = stages.shape[1]
    init = _init_raw(model, n_features)
    # the constant init first (one single-leaf tree per target), then stage after stage
    trees = [_Leaf() for _ in init] + [e.tree_ for e in stages.ravel()]
    stacked = _stack(trees)
    values = np.concatenate(
        [np.asarray(t.tree_.value, dtype=np.float64)[:, 0, 0] for t in stages.ravel()]
    )
    # exactly predict_stages' product: learning_rate * value, in float64
    leaf_values = np.concatenate(
        [init, model.learning_rate * values[stacked.leaves[init.size :] - init.size]]
    )
    members = np.arange(len(trees))
    targets = np.concatenate([np.arange(init.size), np.tile(np.arange(n_targets), len(stages))])
    weights = (leaf_values[:, None], np.zeros(len(trees), dtype=np.int64))
    ensemble = _ensemble(stacked, members, targets, weights, "raw", n_targets)
    nodes = [*_cast_input(), ensemble]
    if not is_classifier:
        nodes.append(Node("Identity", ["raw"], [VALUE]))
        return _Graph(nodes, [ValueInfo(VALUE, DOUBLE, ["N", 1])], {})
    loss = type(getattr(model, "_loss", None)).__name__
    if n_targets == 1 and loss in ("HalfBinomialLoss", "ExponentialLoss"):
        return _binary_boosting(nodes, scale=2.0 if loss == "ExponentialLoss" else 1.0)
    if n_targets > 1 and loss == "HalfMultinomialLoss":
        return _multiclass_boosting(nodes, n_targets)
    raise NotConvertible(f"no exact ONNX converter for a GradientBoostingClassifier with {loss}")


def _binary_boosting(nodes: list[Node], scale: float) -> _Graph:
    nodes += [
        # the label comes from the raw score (raw >= 0), never from a rounded probability
        Node("GreaterOrEqual", ["raw", "zero"], ["positive"]),
        Node("Cast", ["positive"], ["positive64"], {"to": INT64}),
        Node("Reshape", ["positive64", "flat"], [LABEL]),
        # scipy's expit(scale * raw) as 1 / (1 + exp(-x)): bit-exact where Sigmoid is not
        Node("Mul", ["raw", "scale"], ["logit"]),
        Node("Neg", ["logit"], ["negated"]),
        Node("Exp", ["negated"], ["odds"]),
        Node("Add", ["one", "odds"], ["denominator"]),
        Node("Div", ["one", "denominator"], ["p1"]),
        Node("Sub", ["one", "p1"], ["p0"]),
        Node("Concat", ["p0", "p1"], [PROBABILITIES], {"axis": 1}),
    ]
    initializers = {
        "zero": np.array(0.0),
        "one": np.array(1.0),
        "scale": np.array(scale),
        "flat": np.array([-1], dtype=np.int64),
    }
    return _Graph(nodes, _classifier_outputs(2), initializers)


def _multiclass_boosting(nodes: list[Node], n_classes: int) -> _Graph:
    # sklearn.utils.extmath.softmax: subtract the row max, exp, divide by the row sum
    nodes += [
        Node("ArgMax", ["raw"], [LABEL], {"axis": 1, "keepdims": 0}),
        Node("ReduceMax", ["raw", "axis1"], ["row_max"], {"keepdims": 1}),
        Node("Sub", ["raw", "row_max"], ["shifted"]),
        Node("Exp", ["shifted"], ["exps"]),
        Node("ReduceSum", ["exps", "axis1"], ["total"], {"keepdims": 1}),
        Node("Div", ["exps", "total"], [PROBABILITIES]),
    ]
    initializers = {"axis1": np.array([1], dtype=np.int64)}
    return _Graph(nodes, _classifier_outputs(n_classes), initializers)
