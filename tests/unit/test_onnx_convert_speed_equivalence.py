"""The vectorized ONNX writer and converter against straightforward references kept here:
the protobuf encodings value by value (varints incl. negative int64s, packed ints, doubles,
floats), and the TreeEnsemble attributes tree by tree as the per-node converter built them."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import (
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.tree import DecisionTreeClassifier

from creditml.models.onnx_convert import to_onnx
from creditml.models.onnx_proto import Ints, Node, _attribute, _packed_floats, tensor, varints

pytestmark = pytest.mark.unit

X_IRIS, Y_IRIS = load_iris(return_X_y=True)
X_DIABETES, Y_DIABETES = load_diabetes(return_X_y=True)


# ---------------------------------------------------------------- reference encoder
def ref_varint(value: int) -> bytes:
    value %= 2**64  # int64 negatives: ten-byte two's complement
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def ref_field(number: int, wire_type: int, payload: bytes) -> bytes:
    return ref_varint(number << 3 | wire_type) + payload


def ref_length(number: int, payload: bytes) -> bytes:
    return ref_field(number, 2, ref_varint(len(payload)) + payload)


def ref_packed_ints(number: int, values: list[int]) -> bytes:
    return ref_length(number, b"".join(ref_varint(v) for v in values))


EDGES = [0, 1, 127, 128, 255, 16383, 16384, 2**21 - 1, 2**21, 2**31, 2**56 - 1, 2**56]
EDGES += [2**62, 2**63 - 1, -1, -2, -127, -128, -(2**31), -(2**62), -(2**63)]


@pytest.mark.parametrize(
    "values",
    [
        EDGES,
        [],
        [5],
        [-(2**63)],
        np.random.default_rng(0).integers(-(2**63), 2**63 - 1, size=500, endpoint=True).tolist(),
        np.random.default_rng(1).integers(0, 3_000_000, size=2000).tolist(),
    ],
    ids=["edges", "empty", "one", "int64-min", "random-int64", "node-ids"],
)
def test_varints_match_the_reference_value_by_value(values: list[int]) -> None:
    expected = b"".join(ref_varint(v) for v in values)
    assert varints(np.array(values, dtype=np.int64)) == expected
    for dtype in (np.int32, np.uint8, np.bool_):  # other integer arrays, where they fit
        if all(np.array(values, dtype=np.int64) == np.array(values).astype(dtype)):
            assert varints(np.array(values).astype(dtype)) == expected


def test_an_ints_attribute_is_written_as_the_same_list_of_ints() -> None:
    values = [*EDGES, 3, 0, 1]
    as_list = _attribute("nodes_truenodeids", values)
    as_array = _attribute("nodes_truenodeids", Ints(np.array(values, dtype=np.int64)))
    expected = ref_length(1, b"nodes_truenodeids") + ref_packed_ints(8, values)
    assert as_list == as_array == expected + ref_field(20, 0, ref_varint(7))  # INTS
    read = onnx.AttributeProto.FromString(as_array)
    assert list(read.ints) == values
    assert read == helper.make_attribute("nodes_truenodeids", values)


def test_an_empty_ints_attribute_is_an_empty_list() -> None:
    assert _attribute("a", Ints(np.zeros(0, dtype=np.int64))) == _attribute("a", [])


def test_floats_are_packed_as_struct_packs_them() -> None:
    values = [0.0, -0.0, 1.5, 0.1, 1e-45, 3.4028234e38, -3.4028235e38, float("inf"), 1e-320]
    expected = ref_length(7, struct.pack(f"<{len(values)}f", *values))
    assert _packed_floats(7, values) == expected
    with pytest.raises(OverflowError):
        struct.pack("<f", 1e39)
    with pytest.raises(OverflowError):
        _packed_floats(7, [1.0, 1e39])


def test_double_tensors_are_the_little_endian_values() -> None:
    values = np.array([0.1, -0.0, np.nextafter(0.1, 1.0), 1e308, 5e-324, -np.inf])
    expected = (
        ref_packed_ints(1, [len(values)])
        + ref_field(2, 0, ref_varint(11))  # DOUBLE
        + ref_length(8, b"w")
        + ref_length(9, struct.pack(f"<{len(values)}d", *values))
    )
    written = tensor("w", values)
    assert written == expected
    assert numpy_helper.to_array(onnx.TensorProto.FromString(written)).tobytes() == (
        values.tobytes()
    )


def test_a_node_with_array_attributes_reads_back_in_onnx() -> None:
    ints = np.array([0, -1, 2**40, 7], dtype=np.int64)
    node = Node("X", ["a"], ["b"], {"ids": Ints(ints), "w": np.array([0.5, 0.25])})
    read = onnx.NodeProto.FromString(node.encode(0))
    assert list(read.attribute[0].ints) == ints.tolist()
    assert numpy_helper.to_array(read.attribute[1].t).tolist() == [0.5, 0.25]


# ---------------------------------------------------------------- reference converter
def ref_tree_attributes(trees: list[tuple[Any, int, Any]]) -> dict[str, list[Any]]:
    """TreeEnsemble attributes for (tree, target, leaf weight of each sklearn node | None for a
    constant tree with that weight), one split node at a time."""
    out: dict[str, list[Any]] = {key: [] for key in ("roots", "feat", "split", "tn", "tl")}
    out |= {key: [] for key in ("fn", "fl", "miss", "target", "weight")}
    n_nodes = n_leaves = 0
    for tree, target, weight in trees:
        if tree is None or tree.node_count == 1:  # one split whose branches both reach it
            out["roots"].append(n_nodes)
            for key, value in zip(
                ("feat", "split", "miss", "tn", "tl", "fn", "fl"),
                (0, 0.0, 0, n_leaves, 1, n_leaves, 1),
                strict=True,
            ):
                out[key].append(value)
            out["target"].append(target)
            out["weight"].append(weight if tree is None else weight[0])
            n_nodes, n_leaves = n_nodes + 1, n_leaves + 1
            continue
        splits = [n for n in range(tree.node_count) if tree.children_left[n] != -1]
        leaves = [n for n in range(tree.node_count) if tree.children_left[n] == -1]

        ids = {n: (n_nodes + i, 0) for i, n in enumerate(splits)}
        ids |= {n: (n_leaves + i, 1) for i, n in enumerate(leaves)}
        out["roots"].append(n_nodes + splits.index(0))
        missing = getattr(tree, "missing_go_to_left", np.zeros(tree.node_count))
        for n in splits:
            out["feat"].append(int(tree.feature[n]))
            out["split"].append(float(tree.threshold[n]))
            out["miss"].append(int(missing[n]))
            (tn, tl), (fn, fl) = ids[tree.children_left[n]], ids[tree.children_right[n]]
            out["tn"] += [tn]
            out["tl"] += [tl]
            out["fn"] += [fn]
            out["fl"] += [fl]
        for n in leaves:
            out["target"].append(target)
            out["weight"].append(float(weight[n]))
        n_nodes, n_leaves = n_nodes + len(splits), n_leaves + len(leaves)
    return out


def graph_tree_attributes(graph: bytes) -> dict[str, list[Any]]:
    node = next(n for n in onnx.load_from_string(graph).graph.node if n.op_type == "TreeEnsemble")
    attributes = {a.name: a for a in node.attribute}
    ints = {
        "roots": "tree_roots",
        "feat": "nodes_featureids",
        "tn": "nodes_truenodeids",
        "tl": "nodes_trueleafs",
        "fn": "nodes_falsenodeids",
        "fl": "nodes_falseleafs",
        "miss": "nodes_missing_value_tracks_true",
        "target": "leaf_targetids",
    }
    out: dict[str, list[Any]] = {key: list(attributes[name].ints) for key, name in ints.items()}
    out["split"] = numpy_helper.to_array(attributes["nodes_splits"].t).tolist()
    out["weight"] = numpy_helper.to_array(attributes["leaf_weights"].t).tolist()
    modes = numpy_helper.to_array(attributes["nodes_modes"].t)
    assert modes.dtype == np.uint8
    assert modes.tolist() == [0] * len(out["feat"])  # BRANCH_LEQ
    return out


def _forest_members(model: Any) -> list[tuple[Any, int, Any]]:
    trees = [model.tree_] if hasattr(model, "tree_") else [e.tree_ for e in model.estimators_]
    n_targets = len(model.classes_) if hasattr(model, "classes_") else 1
    return [(t, k, t.value[:, 0, k]) for t in trees for k in range(n_targets)]


def _boosting_members(model: Any) -> list[tuple[Any, int, Any]]:
    probes = np.zeros((1, model.n_features_in_))
    init = (
        np.zeros(model.estimators_.shape[1])
        if isinstance(model.init_, str)
        else model._raw_predict_init(probes)[0]
    )
    members: list[tuple[Any, int, Any]] = [(None, k, float(v)) for k, v in enumerate(init)]
    for stage in model.estimators_:
        for k, estimator in enumerate(stage):
            tree = estimator.tree_
            members.append((tree, k, model.learning_rate * tree.value[:, 0, 0]))
    return members


def _with_nan(X: Any) -> Any:
    holed = X.copy()
    holed[::4, 1] = np.nan
    return holed


_TINY_X, _TINY_Y = np.array([[0.0], [1.0], [2.0]]), np.array([0, 0, 1])
MODELS = {
    "forest-binary": lambda: RandomForestClassifier(6, random_state=0).fit(X_IRIS, Y_IRIS == 1),
    "forest-multiclass-nan": lambda: RandomForestClassifier(4, random_state=0).fit(
        _with_nan(X_IRIS), Y_IRIS
    ),
    "forest-with-single-leaves": lambda: RandomForestClassifier(12, random_state=3).fit(
        _TINY_X, _TINY_Y
    ),
    "regressor-with-single-leaves": lambda: RandomForestRegressor(12, random_state=3).fit(
        _TINY_X, _TINY_Y * 1.5
    ),
    "extra-trees-nan": lambda: ExtraTreesRegressor(3, random_state=0).fit(
        _with_nan(X_DIABETES), Y_DIABETES
    ),
    "single-leaf": lambda: DecisionTreeClassifier().fit(X_IRIS, np.zeros(150, dtype=int)),
    "boosting-multiclass": lambda: GradientBoostingClassifier(n_estimators=6, random_state=0).fit(
        X_IRIS, Y_IRIS
    ),
    "boosting-binary-exponential": lambda: GradientBoostingClassifier(
        n_estimators=5, loss="exponential", random_state=0
    ).fit(X_IRIS, Y_IRIS == 2),
    "boosting-from-zero": lambda: GradientBoostingRegressor(
        n_estimators=5, init="zero", random_state=0
    ).fit(X_DIABETES, Y_DIABETES),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_tree_attributes_match_the_per_node_reference(name: str) -> None:
    model = MODELS[name]()
    members = (
        _boosting_members(model) if hasattr(model, "learning_rate") else _forest_members(model)
    )
    expected = ref_tree_attributes(members)
    got = graph_tree_attributes(to_onnx(model))
    assert got.keys() == expected.keys()
    for key, values in expected.items():
        if key in ("split", "weight"):  # bit for bit
            assert np.array(got[key]).tobytes() == np.array(values, dtype=np.float64).tobytes()
        else:
            assert got[key] == values, key
