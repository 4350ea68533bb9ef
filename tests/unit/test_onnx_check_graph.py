"""check_graph is an allow-list: it accepts exactly what creditml's converter writes and
refuses everything else (other operators, attributes, fields, opsets, sparse tensors,
external data, functions, subgraphs, oversized or malformed bytes) as GraphRefused, never
as another exception, without importing onnxruntime."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.tree import DecisionTreeClassifier

from creditml.models import onnx_proto, onnx_runtime
from creditml.models.onnx_convert import to_onnx
from creditml.models.onnx_proto import OPERATORS, GraphRefused, check_graph, read_model

pytestmark = pytest.mark.unit

X_IRIS, Y_IRIS = load_iris(return_X_y=True)
X_DIABETES, Y_DIABETES = load_diabetes(return_X_y=True)

# Between them, every operator and attribute the converter writes
GRAPHS = {
    "forest-classifier": to_onnx(RandomForestClassifier(3, random_state=0).fit(X_IRIS, Y_IRIS)),
    "tree-classifier": to_onnx(DecisionTreeClassifier(random_state=0).fit(X_IRIS, Y_IRIS)),
    "forest-regressor": to_onnx(
        RandomForestRegressor(3, random_state=0).fit(X_DIABETES, Y_DIABETES)
    ),
    "boosting-binary": to_onnx(
        GradientBoostingClassifier(n_estimators=3, random_state=0).fit(X_IRIS, Y_IRIS > 1)
    ),
    "boosting-multiclass": to_onnx(
        GradientBoostingClassifier(n_estimators=3, random_state=0).fit(X_IRIS, Y_IRIS)
    ),
    "boosting-regressor": to_onnx(
        GradientBoostingRegressor(n_estimators=3, random_state=0).fit(X_DIABETES, Y_DIABETES)
    ),
}
GRAPH = GRAPHS["forest-classifier"]


def test_the_allow_list_is_exactly_what_the_converter_writes() -> None:
    written: dict[tuple[str, str], set[str]] = {}
    for graph in GRAPHS.values():
        for node in read_model(graph).nodes:
            written.setdefault((node.domain, node.op_type), set()).update(node.attributes)
    assert written == {op: set(attributes) for op, attributes in OPERATORS.items()}


@pytest.mark.parametrize("graph", GRAPHS.values(), ids=GRAPHS.keys())
def test_every_converted_graph_is_accepted_and_read_back_byte_for_byte(graph: bytes) -> None:
    assert check_graph(graph)["creditml.n_features"] in ("4", "10")
    assert read_model(graph).encode() == graph
    # onnx writes repeated ints unpacked where our writer packs them: both are accepted
    assert check_graph(onnx.load_from_string(graph).SerializeToString()) == check_graph(graph)


def test_check_graph_is_the_same_from_onnx_runtime() -> None:
    assert onnx_runtime.check_graph is onnx_proto.check_graph
    assert onnx_runtime.GraphRefused is onnx_proto.GraphRefused


CHECK_WITHOUT_ORT = """
import sys
sys.modules["onnxruntime"] = None  # any import of it now fails
from creditml.models.onnx_proto import GraphRefused, check_graph
print(check_graph(open(sys.argv[1], "rb").read())["creditml.kind"])
try:
    check_graph(b"\\x3a\\x05\\x0a")
except GraphRefused as refused:
    print(refused.reason)
print(sorted(m for m in sys.modules if m.split(".")[0] in ("onnx", "google", "sklearn")))
"""


def test_check_graph_needs_no_onnxruntime(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(GRAPH)

    done = subprocess.run(
        [sys.executable, "-c", CHECK_WITHOUT_ORT, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )

    kind, refused, imported = done.stdout.splitlines()
    assert kind == "classifier"
    assert refused.startswith("the graph does not parse (")
    assert imported == "[]"


# ---------------------------------------------------------------- refusals
def _model(graph: bytes = GRAPH) -> onnx.ModelProto:
    return onnx.load_from_string(graph)


def _ensemble(model: onnx.ModelProto) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.op_type == "TreeEnsemble")


def _external(tensor: onnx.TensorProto, location: str = "secret.bin") -> onnx.TensorProto:
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    return tensor


def _sparse_constant(external: bool) -> onnx.ModelProto:
    # The review's repro: ORT read the values of this Constant from a file in its directory
    values = numpy_helper.from_array(np.zeros(1), "values")
    indices = numpy_helper.from_array(np.array([0], dtype=np.int64), "indices")
    sparse = helper.make_sparse_tensor(_external(values) if external else values, indices, [2])
    model = _model()
    model.graph.node.append(helper.make_node("Constant", [], ["leak"], sparse_value=sparse))
    model.graph.output.append(helper.make_tensor_value_info("leak", TensorProto.DOUBLE, [2]))
    return model


def _sparse_initializer() -> onnx.ModelProto:
    model = _model()
    values = numpy_helper.from_array(np.zeros(1), "s")
    indices = numpy_helper.from_array(np.array([0], dtype=np.int64), "i")
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [2]))
    return model


def _unknown_op() -> onnx.ModelProto:
    model = _model()
    node = helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.zeros(1)))
    model.graph.node.append(node)
    return model


def _external_attribute() -> onnx.ModelProto:
    model = _model()
    tensor = _external(numpy_helper.from_array(np.zeros(1)))
    model.graph.node.append(helper.make_node("Constant", [], ["c"], value=tensor))
    return model


def _external_initializer() -> onnx.ModelProto:
    model = _model()
    _external(next(t for t in model.graph.initializer if t.name == "n_trees"))
    return model


def _changed(change: Callable[[onnx.ModelProto], Any]) -> onnx.ModelProto:
    model = _model()
    change(model)
    return model


def _with_function(model: onnx.ModelProto) -> None:
    model.functions.append(
        helper.make_function("ai.onnx.ml", "f", ["a"], ["b"], [], [helper.make_opsetid("", 21)])
    )


def _with_subgraph(model: onnx.ModelProto) -> None:
    branch = helper.make_graph(
        [helper.make_node("Identity", ["x64"], ["z"])],
        "b",
        [],
        [helper.make_tensor_value_info("z", TensorProto.DOUBLE, [2])],
    )
    _ensemble(model).attribute.append(helper.make_attribute("then_branch", branch))


def _opset(domain: str, version: int) -> Callable[[onnx.ModelProto], None]:
    def change(model: onnx.ModelProto) -> None:
        for entry in model.opset_import:
            if entry.domain == domain:
                entry.version = version
                return
        model.opset_import.append(helper.make_opsetid(domain, version))

    return change


def _float_data(model: onnx.ModelProto) -> None:
    tensor = next(t for t in model.graph.initializer if t.name == "n_trees")
    tensor.ClearField("raw_data")
    tensor.double_data.append(3.0)


REFUSED: dict[str, tuple[Callable[[], onnx.ModelProto], str]] = {
    "sparse-constant-with-external-data": (
        lambda: _sparse_constant(external=True),
        "the graph refers to external data",
    ),
    "sparse-constant": (lambda: _sparse_constant(external=False), "the graph holds sparse tensors"),
    "sparse-initializer": (_sparse_initializer, "the graph holds sparse tensors"),
    "external-attribute": (_external_attribute, "the graph refers to external data"),
    "external-initializer": (_external_initializer, "the graph refers to external data"),
    "unknown-op": (_unknown_op, "the graph uses an operator creditml does not write (Constant)"),
    "op-in-another-domain": (
        lambda: _changed(lambda m: setattr(m.graph.node[0], "domain", "ai.onnx.ml")),
        "the graph uses an operator creditml does not write (Cast)",
    ),
    "unknown-attribute": (
        lambda: _changed(
            lambda m: _ensemble(m).attribute.append(helper.make_attribute("nodes_hitrates", [1.0]))
        ),
        "the graph gives an operator an attribute creditml does not write (nodes_hitrates)",
    ),
    "attribute-of-another-type": (
        lambda: _changed(lambda m: setattr(m.graph.node[0].attribute[0], "type", 1)),
        "the graph's attribute to is not of the type creditml writes",
    ),
    "foreign-domain": (
        lambda: _changed(_opset("com.microsoft", 1)),
        "the graph uses operator domains ['com.microsoft']",
    ),
    "function": (lambda: _changed(_with_function), "the graph defines local functions"),
    "subgraph": (lambda: _changed(_with_subgraph), "the graph holds subgraphs"),
    "opset-version": (
        lambda: _changed(_opset("", 22)),
        "the graph imports opsets {'': 22, 'ai.onnx.ml': 5} at IR version 10, "
        "creditml writes {'': 21, 'ai.onnx.ml': 5} at 10",
    ),
    "ir-version": (
        lambda: _changed(lambda m: setattr(m, "ir_version", 11)),
        "the graph imports opsets {'': 21, 'ai.onnx.ml': 5} at IR version 11, "
        "creditml writes {'': 21, 'ai.onnx.ml': 5} at 10",
    ),
    "node-doc-string": (
        lambda: _changed(lambda m: setattr(m.graph.node[0], "doc_string", "hi")),
        "the graph holds a field creditml does not write (NodeProto 6)",
    ),
    "value-info": (
        lambda: _changed(
            lambda m: m.graph.value_info.append(
                helper.make_tensor_value_info("x32", TensorProto.FLOAT, [2])
            )
        ),
        "the graph holds a field creditml does not write (GraphProto 13)",
    ),
    "tensor-as-double-data": (
        lambda: _changed(_float_data),
        "the graph holds a field creditml does not write (TensorProto 10)",
    ),
}


@pytest.mark.parametrize(("make", "reason"), REFUSED.values(), ids=REFUSED.keys())
def test_anything_the_converter_does_not_write_is_refused(
    make: Callable[[], onnx.ModelProto], reason: str
) -> None:
    data = make().SerializeToString()

    with pytest.raises(GraphRefused) as refused:
        check_graph(data)

    assert refused.value.reason == reason
    with pytest.raises(GraphRefused):
        onnx_runtime.OnnxModel.load(data)


def test_a_graph_over_the_size_cap_is_refused_before_it_is_read() -> None:
    assert check_graph(GRAPH, max_bytes=len(GRAPH))
    with pytest.raises(GraphRefused) as refused:
        check_graph(GRAPH, max_bytes=len(GRAPH) - 1)
    assert refused.value.reason == (
        f"the graph is {len(GRAPH)} bytes, more than the {len(GRAPH) - 1} allowed"
    )
    with pytest.raises(GraphRefused):
        onnx_runtime.OnnxModel.load(GRAPH, max_bytes=100)


# ---------------------------------------------------------------- malformed bytes
def _key(number: int, wire_type: int) -> bytes:
    return bytes([number << 3 | wire_type])


def _field(number: int, body: bytes) -> bytes:
    return _key(number, 2) + bytes([len(body)]) + body


MALFORMED = {
    # an OperatorSetIdProto whose version is length-delimited instead of a varint
    "opset-version-wire-type": GRAPH + _field(8, _field(1, b"") + _field(2, b"\x15")),
    "ir-version-wire-type": _field(1, b"\x0a") + GRAPH,
    "graph-as-varint": GRAPH + _key(7, 0) + b"\x01",
    "graph-twice": GRAPH + _field(7, b""),
    "op-type-not-utf8": GRAPH.replace(b"ArgMax", b"Arg\xffax"),
    "field-number-0": b"\x02\x00" + GRAPH,
    "wire-type-7": GRAPH + b"\x0f\x00",
    "field-past-the-end": b"\x3a\xff\xff\xff\xff\x0f",
    "truncated-varint": b"\x08",
    "truncated-node": b"\x3a\x05\x0a",
    "overlong-varint": b"\x08" + b"\xff" * 10 + b"\x01",
    "truncated": GRAPH[: len(GRAPH) // 2],
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_bytes_are_refused_as_graph_refused(data: bytes) -> None:
    with pytest.raises(GraphRefused) as refused:
        check_graph(data)
    assert refused.value.reason.startswith("the graph does not parse (")


def _mutations(graph: bytes, rng: np.random.Generator, count: int) -> list[bytes]:
    out = []
    for _ in range(count):
        data = bytearray(graph)
        kind = rng.integers(5)
        at = int(rng.integers(len(data)))
        if kind == 0:  # flip bits of one byte
            data[at] ^= int(rng.integers(1, 256))
        elif kind == 1:  # a random byte
            data[at] = int(rng.integers(256))
        elif kind == 2:  # delete a few bytes
            del data[at : at + int(rng.integers(1, 5))]
        elif kind == 3:  # insert a few bytes
            data[at:at] = rng.integers(0, 256, int(rng.integers(1, 5)), dtype=np.uint8).tobytes()
        else:  # cut the end off
            del data[at:]
        out.append(bytes(data))
    return out


@pytest.mark.parametrize("name", ["tree-classifier", "boosting-binary"])
def test_random_mutations_only_ever_pass_or_raise_graph_refused(name: str) -> None:
    rng = np.random.default_rng(15)
    outcomes = {"accepted": 0, "refused": 0}
    for data in _mutations(GRAPHS[name], rng, 1500):
        try:
            check_graph(data)
        except GraphRefused:
            outcomes["refused"] += 1
        else:
            outcomes["accepted"] += 1
    # (anything else raised fails the test) and the mutations reach both outcomes
    assert outcomes["refused"] > 500
    assert outcomes["accepted"] > 50


@pytest.mark.parametrize("limit", [0, 160 * 1024, 10**6, 512 * 2**20 + 13])
def test_max_graph_bytes_is_the_largest_graph_whose_session_fits(limit: int) -> None:
    largest = onnx_proto.max_graph_bytes(limit)
    assert onnx_proto.estimate_nbytes(largest + 1) > limit
    assert largest == 0 or onnx_proto.estimate_nbytes(largest) <= limit
