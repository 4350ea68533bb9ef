"""A minimal ONNX protobuf writer and reader, so neither registration nor serving needs the
`onnx` or `protobuf` packages.

The writer emits exactly what creditml's converters need: a ModelProto (ir_version 10,
opsets {"": 21, "ai.onnx.ml": 5}) holding one graph of nodes with attributes, initializers
as `raw_data`, typed inputs/outputs with a symbolic batch dimension, and metadata_props.
Repeated scalars are written packed (every protobuf parser must accept packed and unpacked
encodings alike), a whole array at a time: varints by numpy, floats by `tobytes`, so a graph of
a million tree nodes is written in a fraction of a second.

The reader (`graph_facts`) walks the wire format of any ModelProto, trusted or not, and
reports what the serving side refuses: operator domains and opset imports, tensors whose
data lives outside the graph, local functions and subgraph attributes.

Field numbers are those of onnx/onnx.proto (ONNX 1.17+; stable since IR version 3).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

IR_VERSION = 10
OPSETS: dict[str, int] = {"": 21, "ai.onnx.ml": 5}
PRODUCER = "creditml"

# TensorProto.DataType
FLOAT = 1
UINT8 = 2
INT64 = 7
STRING = 8
BOOL = 9
DOUBLE = 11

_NUMPY_TYPES: dict[str, int] = {
    "float32": FLOAT,
    "uint8": UINT8,
    "int64": INT64,
    "bool": BOOL,
    "float64": DOUBLE,
}

# AttributeProto.AttributeType
_ATTR_FLOAT, _ATTR_INT, _ATTR_STRING, _ATTR_TENSOR = 1, 2, 3, 4
_ATTR_FLOATS, _ATTR_INTS, _ATTR_STRINGS = 6, 7, 8

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


class MalformedGraph(ValueError):
    """The bytes are not a well-formed protobuf message."""


# ---------------------------------------------------------------- wire-format writing
def _varint(value: int) -> bytes:
    value &= 0xFFFFFFFFFFFFFFFF  # int64 negatives are ten-byte two's complement
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(number: int, wire_type: int) -> bytes:
    return _varint((number << 3) | wire_type)


def _int(number: int, value: int) -> bytes:
    return _key(number, _VARINT) + _varint(value)


def _bytes(number: int, value: bytes) -> bytes:
    return _key(number, _LENGTH) + _varint(len(value)) + value


def _str(number: int, value: str) -> bytes:
    return _bytes(number, value.encode())


def varints(values: NDArray[Any]) -> bytes:
    """The varints of an integer array, concatenated: what `_varint` writes for each value
    (int64 negatives as ten-byte two's complement), computed for the whole array at once."""
    wide = np.ascontiguousarray(values).astype(np.int64, copy=False).ravel()
    if wide.size == 0:
        return b""
    rest = wide.view(np.uint64) >> np.uint64(7)
    lengths = np.ones(wide.size, dtype=np.int64)
    while rest.any():  # at most nine rounds: one per further 7 bits
        lengths += rest != 0
        rest >>= np.uint64(7)
    width = int(lengths.max())
    shifted = wide.view(np.uint64).copy()
    out = np.empty((wide.size, width), dtype=np.uint8)
    for k in range(width):
        more = (lengths > k + 1).astype(np.uint8) << np.uint8(7)  # continuation bit
        out[:, k] = (shifted & np.uint64(0x7F)).astype(np.uint8) | more
        shifted >>= np.uint64(7)
    return out[np.arange(width) < lengths[:, None]].tobytes()


def _packed_ints(number: int, values: Sequence[int] | NDArray[Any]) -> bytes:
    if not isinstance(values, np.ndarray):
        try:
            values = np.array([int(v) for v in values], dtype=np.int64)
        except OverflowError:  # beyond int64: written modulo 2**64, one at a time
            return _bytes(number, b"".join(_varint(int(v)) for v in values))
    return _bytes(number, varints(values))


def _packed_floats(number: int, values: Sequence[float]) -> bytes:
    wide = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore"):
        narrow = wide.astype("<f4")
    if (np.isinf(narrow) & np.isfinite(wide)).any():  # as struct.pack("f") refuses
        raise OverflowError("float too large to pack with f format")
    return _bytes(number, narrow.tobytes())


# ---------------------------------------------------------------- ONNX messages
def tensor(name: str, array: Any) -> bytes:
    """A TensorProto holding `array` (float32/float64/int64/uint8/bool) as raw_data."""
    values = np.ascontiguousarray(array)
    kind = _NUMPY_TYPES.get(values.dtype.name)
    if kind is None:
        raise TypeError(f"no ONNX tensor type for numpy {values.dtype}")
    little = values.astype(values.dtype.newbyteorder("<"), copy=False)
    return (
        _packed_ints(1, values.shape) + _int(2, kind) + _str(8, name) + _bytes(9, little.tobytes())
    )


class Ints:
    """A list-of-ints attribute (AttributeProto.ints) held as a numpy integer array: written
    exactly as the same values in a list, without a Python object per value. (A bare numpy
    array as an attribute is a tensor.)"""

    __slots__ = ("values",)

    def __init__(self, values: NDArray[Any]) -> None:
        self.values = values


def _attribute(name: str, value: Any) -> bytes:
    head = _str(1, name)
    if isinstance(value, Ints):
        return head + _packed_ints(8, value.values) + _int(20, _ATTR_INTS)
    if isinstance(value, np.ndarray):
        return head + _bytes(5, tensor("", value)) + _int(20, _ATTR_TENSOR)
    if isinstance(value, bool | int | np.integer):
        return head + _int(3, int(value)) + _int(20, _ATTR_INT)
    if isinstance(value, float | np.floating):
        return head + _key(2, _FIXED32) + struct.pack("<f", value) + _int(20, _ATTR_FLOAT)
    if isinstance(value, str):
        return head + _str(4, value) + _int(20, _ATTR_STRING)
    return head + _list_attribute(name, list(value))


def _list_attribute(name: str, values: list[Any]) -> bytes:
    if values and all(isinstance(v, str) for v in values):
        return b"".join(_str(9, v) for v in values) + _int(20, _ATTR_STRINGS)
    if values and any(isinstance(v, float | np.floating) for v in values):
        return _packed_floats(7, [float(v) for v in values]) + _int(20, _ATTR_FLOATS)
    if all(isinstance(v, bool | int | np.integer) for v in values):
        return _packed_ints(8, [int(v) for v in values]) + _int(20, _ATTR_INTS)
    raise TypeError(f"attribute {name!r}: unsupported list value")


@dataclass(frozen=True)
class Node:
    """One NodeProto: `attributes` maps names to int, float, str, numpy array (a tensor),
    Ints (a numpy array written as a list of ints), or lists of ints, floats or strs."""

    op_type: str
    inputs: Sequence[str]
    outputs: Sequence[str]
    attributes: Mapping[str, Any] = field(default_factory=dict)
    domain: str = ""

    def encode(self, index: int) -> bytes:
        body = b"".join(_str(1, name) for name in self.inputs)
        body += b"".join(_str(2, name) for name in self.outputs)
        body += _str(3, f"n{index}_{self.op_type}") + _str(4, self.op_type)
        body += b"".join(_bytes(5, _attribute(k, v)) for k, v in self.attributes.items())
        if self.domain:
            body += _str(7, self.domain)
        return body


@dataclass(frozen=True)
class ValueInfo:
    """A graph input/output: a tensor of `elem_type` whose dims are ints or symbolic names."""

    name: str
    elem_type: int
    dims: Sequence[int | str]

    def encode(self) -> bytes:
        dims = b"".join(
            _bytes(1, _str(2, d) if isinstance(d, str) else _int(1, d)) for d in self.dims
        )
        tensor_type = _int(1, self.elem_type) + _bytes(2, dims)
        return _str(1, self.name) + _bytes(2, _bytes(1, tensor_type))


def model_bytes(
    nodes: Sequence[Node],
    inputs: Sequence[ValueInfo],
    outputs: Sequence[ValueInfo],
    initializers: Mapping[str, Any] | None = None,
    metadata: Mapping[str, str] | None = None,
    graph_name: str = "creditml",
) -> bytes:
    """A serialized ModelProto with one graph (IR 10, opsets {"": 21, "ai.onnx.ml": 5})."""
    graph = b"".join(_bytes(1, node.encode(i)) for i, node in enumerate(nodes))
    graph += _str(2, graph_name)
    graph += b"".join(_bytes(5, tensor(k, v)) for k, v in (initializers or {}).items())
    graph += b"".join(_bytes(11, vi.encode()) for vi in inputs)
    graph += b"".join(_bytes(12, vi.encode()) for vi in outputs)
    out = _int(1, IR_VERSION) + _str(2, PRODUCER)
    out += _bytes(7, graph)
    out += b"".join(_bytes(8, _str(1, d) + _int(2, v)) for d, v in OPSETS.items())
    out += b"".join(_bytes(14, _str(1, k) + _str(2, v)) for k, v in (metadata or {}).items())
    return out


# ---------------------------------------------------------------- wire-format reading
def _read_varint(buf: memoryview, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise MalformedGraph("truncated or overlong varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, i


def fields(buf: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, value) for each field of one message: ints for varints, views for
    length-delimited and fixed-width fields."""
    i, n = 0, len(buf)
    while i < n:
        key, i = _read_varint(buf, i)
        number, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            value, i = _read_varint(buf, i)
            yield number, value
            continue
        if wire_type == _LENGTH:
            size, i = _read_varint(buf, i)
        elif wire_type in (_FIXED64, _FIXED32):
            size = 8 if wire_type == _FIXED64 else 4
        else:
            raise MalformedGraph(f"unsupported wire type {wire_type}")
        if i + size > n:
            raise MalformedGraph("a field runs past the end of its message")
        yield number, buf[i : i + size]
        i += size


@dataclass
class GraphFacts:
    """What serving checks about a ModelProto before it creates a session."""

    opsets: dict[str, int] = field(default_factory=dict)
    node_domains: set[str] = field(default_factory=set)
    external_data: bool = False
    functions: bool = False
    subgraphs: bool = False
    metadata: dict[str, str] = field(default_factory=dict)


def _text(value: int | memoryview) -> str:
    if not isinstance(value, memoryview):
        raise MalformedGraph("expected a string field")
    return bytes(value).decode("utf-8", errors="replace")


def _message(value: int | memoryview) -> memoryview:
    if not isinstance(value, memoryview):
        raise MalformedGraph("expected an embedded message")
    return value


def _tensor_is_external(tensor_bytes: memoryview) -> bool:
    # TensorProto 13 external_data, 14 data_location (1 = EXTERNAL)
    return any(n == 13 or (n == 14 and v == 1) for n, v in fields(tensor_bytes))


def _read_attribute(attribute: memoryview, facts: GraphFacts) -> None:
    for number, value in fields(attribute):
        if number in (6, 11):  # g, graphs: control flow carries its own graphs
            facts.subgraphs = True
        elif number in (5, 10) and _tensor_is_external(_message(value)):  # t, tensors
            facts.external_data = True


def _read_node(node: memoryview, facts: GraphFacts) -> None:
    domain = ""
    for number, value in fields(node):
        if number == 7:
            domain = _text(value)
        elif number == 5:
            _read_attribute(_message(value), facts)
    facts.node_domains.add(domain)


def _read_graph(graph: memoryview, facts: GraphFacts) -> None:
    for number, value in fields(graph):
        if number == 1:
            _read_node(_message(value), facts)
        elif number == 5 and _tensor_is_external(_message(value)):  # initializer
            facts.external_data = True
        elif number == 15:  # sparse_initializer: values (1) and indices (2) are tensors
            sparse = fields(_message(value))
            if any(n in (1, 2) and _tensor_is_external(_message(v)) for n, v in sparse):
                facts.external_data = True


def _pair(message: memoryview, key_field: int, value_field: int) -> tuple[str, Any]:
    key: str = ""
    found: Any = ""
    for number, value in fields(message):
        if number == key_field:
            key = _text(value)
        elif number == value_field:
            found = value if isinstance(value, int) else _text(value)
    return key, found


def graph_facts(data: bytes) -> GraphFacts:
    """Opset imports, node domains, external data, functions, subgraph attributes and
    metadata of a serialized ModelProto. MalformedGraph when it does not parse."""
    facts = GraphFacts()
    try:
        for number, value in fields(memoryview(data)):
            if number == 7:
                _read_graph(_message(value), facts)
            elif number == 8:  # OperatorSetIdProto: 1 domain, 2 version
                domain, version = _pair(_message(value), 1, 2)
                facts.opsets[domain] = int(version or 0)
            elif number == 14:  # StringStringEntryProto: 1 key, 2 value
                key, text = _pair(_message(value), 1, 2)
                facts.metadata[key] = str(text)
            elif number == 25:
                facts.functions = True
    except IndexError as exc:
        raise MalformedGraph("truncated message") from exc
    return facts
