"""Structural checks of every decision tree inside a model, before anything predicts with it.

scikit-learn's Cython predictors trust a tree's arrays: a child index of 10**9 or a feature
index past the input's width reads (or writes) outside its memory and kills the process. A
tree is accepted only if it is a tree: every child index is a later node or the leaf marker,
every node but the root has exactly one parent (so all are reachable once and none loops),
split features lie inside the input, thresholds are numbers, and its shape agrees with the
estimator that owns it. `+inf` thresholds are legitimate (splits that send missing values
one way); NaN is not.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from creditml.models.errors import ModelRejected
from creditml.models.footprint import reachable

TREE_LEAF = -1


def validate_trees(model: Any) -> int:
    """Check every tree reachable from `model`; the number of trees checked. ModelRejected
    (naming the estimator and the fault) for the first malformed one."""
    checked = 0
    for item in list(reachable(model)):
        tree = getattr(item, "tree_", None)
        if _is_sklearn_tree(tree):
            _check_tree_owner(item, tree)
            checked += 1
        estimators = getattr(item, "estimators_", None)
        if estimators is not None and _is_tree_ensemble(estimators):
            _check_ensemble(item, estimators)
        predictors = getattr(item, "_predictors", None)
        if isinstance(predictors, list):
            checked += _check_hist_predictors(item, predictors)
    return checked


def _is_sklearn_tree(value: Any) -> bool:
    kind = type(value)
    return kind.__name__ == "Tree" and kind.__module__ == "sklearn.tree._tree"


def _is_tree_ensemble(estimators: Any) -> bool:
    members = list(np.ravel(np.asarray(estimators, dtype=object)))
    return bool(members) and any(_is_sklearn_tree(getattr(m, "tree_", None)) for m in members)


def _reject(owner: Any, fault: str) -> ModelRejected:
    return ModelRejected(f"the {type(owner).__name__} holds a malformed decision tree: {fault}")


def _check_tree_owner(owner: Any, tree: Any) -> None:
    n_features = getattr(owner, "n_features_in_", None)
    if not isinstance(n_features, int) or int(tree.n_features) != n_features:
        raise _reject(owner, "its feature count disagrees with the estimator's")
    if getattr(owner, "n_outputs_", None) != int(tree.n_outputs):
        raise _reject(owner, "its number of outputs disagrees with the estimator's")
    classes = getattr(owner, "n_classes_", None)
    if classes is not None and not np.array_equal(np.atleast_1d(classes), tree.n_classes):
        raise _reject(owner, "its number of classes disagrees with the estimator's")
    if tree.value.shape != (tree.node_count, tree.n_outputs, tree.max_n_classes):
        raise _reject(owner, "its value array does not have one row per node")
    check_structure(
        owner,
        tree.children_left,
        tree.children_right,
        tree.children_left == TREE_LEAF,
        tree.feature,
        n_features,
    )
    internal = tree.children_left != TREE_LEAF
    if np.isnan(tree.threshold[internal]).any():
        raise _reject(owner, "a split threshold is not a number")


def check_structure(
    owner: Any,
    left: np.ndarray,
    right: np.ndarray,
    leaf: np.ndarray,
    feature: np.ndarray,
    n_features: int,
) -> None:
    """The nodes (parallel arrays) form one tree rooted at node 0 whose splits read features
    in [0, n_features); leaves' child and feature entries are not read and not checked."""
    count = int(left.shape[0])
    if count < 1:
        raise _reject(owner, "it has no nodes")
    internal = ~np.asarray(leaf, dtype=bool)
    if int(right.shape[0]) != count or int(feature.shape[0]) != count:
        raise _reject(owner, "its node arrays differ in length")
    index = np.arange(count)
    children = np.concatenate([left[internal], right[internal]]).astype(np.int64)
    parents = np.concatenate([index[internal], index[internal]])
    if children.size and (children.min() < 0 or children.max() >= count):
        raise _reject(owner, f"a child index is out of range (the tree has {count} nodes)")
    # Children always come after their parent in scikit-learn's node order; requiring it
    # rules out cycles, and one parent per node then makes every node reachable exactly once.
    if np.any(children <= parents):
        raise _reject(owner, "a node points back to itself or an earlier node (a cycle)")
    parent_counts = np.bincount(children, minlength=count)
    if np.any(parent_counts[1:] != 1):
        raise _reject(owner, "a node is unreachable or shared by two parents")
    features = feature[internal]
    if features.size and (features.min() < 0 or features.max() >= n_features):
        raise _reject(owner, f"a split uses a feature index outside [0, {n_features})")


def _check_ensemble(owner: Any, estimators: Any) -> None:
    """Sub-trees predict on the ensemble's input (already validated, and not checked again),
    or on the columns `estimators_features_` picks from it."""
    n_features = getattr(owner, "n_features_in_", None)
    members = list(np.ravel(np.asarray(estimators, dtype=object)))
    subsets = getattr(owner, "estimators_features_", None)
    if subsets is not None and len(subsets) != len(members):
        raise _reject(owner, "it lists feature subsets for a different number of trees")
    for position, member in enumerate(members):
        width = getattr(member, "n_features_in_", None)
        if subsets is None:
            if width != n_features:
                raise _reject(owner, "a tree's feature count differs from the ensemble's")
            continue
        columns = np.asarray(subsets[position])
        valid = (
            isinstance(n_features, int)
            and columns.ndim == 1
            and columns.dtype.kind in "iu"
            and columns.shape[0] == width
            and (columns.size == 0 or (columns.min() >= 0 and columns.max() < n_features))
        )
        if not valid:
            raise _reject(owner, "a tree's feature subset does not fit the ensemble's input")
    per_stage = getattr(owner, "n_trees_per_iteration_", None)
    if np.ndim(estimators) == 2 and per_stage is not None and estimators.shape[1] != per_stage:
        raise _reject(owner, "its stages do not hold one tree per class")


def _check_hist_predictors(owner: Any, predictors: list[Any]) -> int:
    """HistGradientBoosting*: one TreePredictor per class per iteration, each a nodes array."""
    n_features = getattr(owner, "n_features_in_", None)
    if not isinstance(n_features, int):
        raise _reject(owner, "it does not record its number of input features")
    per_stage = getattr(owner, "n_trees_per_iteration_", None)
    checked = 0
    for stage in predictors:
        if not isinstance(stage, list) or len(stage) != per_stage:
            raise _reject(owner, "an iteration does not hold one tree per class")
        for predictor in stage:
            _check_hist_nodes(owner, predictor, n_features)
            checked += 1
    return checked


_HIST_FIELDS = ("left", "right", "is_leaf", "feature_idx", "num_threshold", "is_categorical")


def _check_hist_nodes(owner: Any, predictor: Any, n_features: int) -> None:
    nodes = getattr(predictor, "nodes", None)
    names = getattr(getattr(nodes, "dtype", None), "names", None) or ()
    if not isinstance(nodes, np.ndarray) or nodes.ndim != 1 or set(_HIST_FIELDS) - set(names):
        raise _reject(owner, "a tree has no valid node array")
    leaf = nodes["is_leaf"].astype(bool)
    check_structure(owner, nodes["left"], nodes["right"], leaf, nodes["feature_idx"], n_features)
    internal = ~leaf
    if np.isnan(nodes["num_threshold"][internal]).any():
        raise _reject(owner, "a split threshold is not a number")
    categorical = internal & nodes["is_categorical"].astype(bool)
    if categorical.any():
        _check_categorical_splits(owner, predictor, nodes[categorical], n_features)


def _check_categorical_splits(owner: Any, predictor: Any, nodes: np.ndarray, width: int) -> None:
    """A categorical split reads its own bitset (`bitset_idx`) and its feature's known
    categories, which exist only for features the bin mapper calls categorical."""
    bitsets = getattr(predictor, "raw_left_cat_bitsets", None)
    limit = bitsets.shape[0] if isinstance(bitsets, np.ndarray) else 0
    if "bitset_idx" not in (nodes.dtype.names or ()) or nodes["bitset_idx"].max() >= limit:
        raise _reject(owner, "a categorical split points outside its category table")
    flags = getattr(getattr(owner, "_bin_mapper", None), "is_categorical_", None)
    if not isinstance(flags, np.ndarray) or flags.shape != (width,):
        raise _reject(owner, "it has categorical splits but no categorical features")
    if not flags[nodes["feature_idx"]].all():
        raise _reject(owner, "a categorical split is on a feature that is not categorical")
