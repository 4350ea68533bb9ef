"""The hand-written ONNX protobuf writer and reader, checked against the onnx package."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from creditml.models.onnx_proto import (
    DOUBLE,
    INT64,
    MalformedGraph,
    Node,
    ValueInfo,
    graph_facts,
    model_bytes,
)

pytestmark = pytest.mark.unit


def _written() -> bytes:
    attributes = {
        "an_int": -3,
        "a_float": 0.25,
        "a_string": "ünïcode",
        "ints": [0, -1, 2**40],
        "floats": [1.5, -2.0],
        "strings": ["a", "bc"],
        "a_tensor": np.array([0.1, np.nextafter(0.1, 1.0)]),
    }
    nodes = [
        Node("Cast", ["X"], ["x32"], {"to": 1}),
        Node("Cast", ["x32"], ["x64"], {"to": DOUBLE}),
        Node("Add", ["x64", "bias"], ["Y"]),
        Node("Custom", ["Y"], ["Z"], attributes, domain="ai.onnx.ml"),
    ]
    return model_bytes(
        nodes,
        [ValueInfo("X", DOUBLE, ["N", 2])],
        [ValueInfo("Y", DOUBLE, ["N", 2]), ValueInfo("Z", INT64, ["N"])],
        {"bias": np.array([1.0, 2.0]), "index": np.array([[1, -2]], dtype=np.int64)},
        {"creditml.kind": "regressor", "note": "ä"},
    )


def test_onnx_reads_what_the_writer_writes() -> None:
    # Given a model written without the onnx package
    model = onnx.load_from_string(_written())

    # Then onnx sees every field as written
    assert model.ir_version == 10
    assert model.producer_name == "creditml"
    assert {(o.domain, o.version) for o in model.opset_import} == {("", 21), ("ai.onnx.ml", 5)}
    assert {p.key: p.value for p in model.metadata_props} == {
        "creditml.kind": "regressor",
        "note": "ä",
    }
    custom = model.graph.node[3]
    assert (custom.op_type, custom.domain) == ("Custom", "ai.onnx.ml")
    values = {a.name: helper.get_attribute_value(a) for a in custom.attribute}
    assert values["an_int"] == -3
    assert values["a_float"] == 0.25
    assert values["a_string"] == "ünïcode".encode()
    assert list(values["ints"]) == [0, -1, 2**40]
    assert list(values["floats"]) == [1.5, -2.0]
    assert list(values["strings"]) == [b"a", b"bc"]
    tensor = numpy_helper.to_array(values["a_tensor"])
    assert tensor.dtype == np.float64
    assert tensor.tobytes() == np.array([0.1, np.nextafter(0.1, 1.0)]).tobytes()
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert inits["index"].tolist() == [[1, -2]]
    assert inits["index"].dtype == np.int64
    x = model.graph.input[0].type.tensor_type
    assert x.elem_type == TensorProto.DOUBLE
    assert [d.dim_param or d.dim_value for d in x.shape.dim] == ["N", 2]


def test_a_written_graph_passes_the_full_checker() -> None:
    nodes = [Node("Cast", ["X"], ["x32"], {"to": 1}), Node("Add", ["x32", "one"], ["Y"])]
    data = model_bytes(
        nodes,
        [ValueInfo("X", DOUBLE, ["N", 3])],
        [ValueInfo("Y", 1, ["N", 3])],
        {"one": np.array(1.0, dtype=np.float32)},
    )
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)


def test_the_reader_reports_opsets_domains_and_metadata() -> None:
    facts = graph_facts(_written())

    assert facts.opsets == {"": 21, "ai.onnx.ml": 5}
    assert facts.node_domains == {"", "ai.onnx.ml"}
    assert facts.metadata == {"creditml.kind": "regressor", "note": "ä"}
    assert (facts.external_data, facts.functions, facts.subgraphs) == (False, False, False)


def _onnx_model(**changes: object) -> onnx.ModelProto:
    node = helper.make_node("Identity", ["X"], ["Y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.DOUBLE, [2])],
        [helper.make_tensor_value_info("Y", TensorProto.DOUBLE, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    for name, value in changes.items():
        setattr(model, name, value)
    return model


def test_the_reader_parses_graphs_written_by_onnx() -> None:
    # onnx writes repeated scalars unpacked, our writer packed: the reader takes both
    facts = graph_facts(_onnx_model().SerializeToString())
    assert facts.opsets == {"": 21}
    assert facts.node_domains == {""}


def test_the_reader_sees_external_data_in_an_initializer() -> None:
    model = _onnx_model()
    weights = numpy_helper.from_array(np.zeros(2), "W")
    weights.ClearField("raw_data")
    weights.data_location = TensorProto.EXTERNAL
    entry = weights.external_data.add()
    entry.key, entry.value = "location", "w.bin"
    model.graph.initializer.append(weights)

    assert graph_facts(model.SerializeToString()).external_data


def test_the_reader_sees_functions_and_subgraphs() -> None:
    model = _onnx_model()
    model.functions.append(
        helper.make_function("local", "f", ["a"], ["b"], [], [helper.make_opsetid("", 21)])
    )
    assert graph_facts(model.SerializeToString()).functions

    branch = helper.make_graph(
        [helper.make_node("Identity", ["X"], ["Z"])],
        "b",
        [],
        [helper.make_tensor_value_info("Z", TensorProto.DOUBLE, [2])],
    )
    nested = _onnx_model()
    nested.graph.node.append(
        helper.make_node("If", ["c"], ["W"], then_branch=branch, else_branch=branch)
    )
    assert graph_facts(nested.SerializeToString()).subgraphs


@pytest.mark.parametrize(
    "data",
    [b"\x3a\xff\xff\xff\xff\x0f", b"\x08", b"\x3a\x05\x0a", b"\x0f\x00"],
    ids=["field-past-the-end", "truncated-varint", "truncated-node", "wire-type-7"],
)
def test_malformed_bytes_raise_malformed_graph(data: bytes) -> None:
    with pytest.raises(MalformedGraph):
        graph_facts(data)
