"""A minimal ONNX protobuf writer and reader, so neither registration nor serving needs the
`onnx` or `protobuf` packages.

The writer emits exactly what creditml's converters need: a ModelProto (ir_version 10,
opsets {"": 21, "ai.onnx.ml": 5}) holding one graph of nodes with attributes, initializers
as `raw_data`, typed inputs/outputs with a symbolic batch dimension, and metadata_props.
Repeated scalars are written packed (every protobuf parser must accept packed and unpacked
encodings alike), a whole array at a time: varints by numpy, floats by `tobytes`, so a graph of
a million tree nodes is written in a fraction of a second.

The allow-list reader (`read_model`, `check_graph`) reads back exactly what the writer writes
(every field the writer emits, packed or unpacked) and refuses anything else as GraphRefused,
whatever the bytes: other operators, attributes, fields, domains or opsets, external data,
sparse tensors, local functions, subgraphs, more than `max_bytes`, and any malformed wire
data. It imports neither onnx nor onnxruntime, so registration can run it before a session
exists; the gate checks the trees it returns against scikit-learn's (onnx_gate). The older
`graph_facts` only reports facts of any ModelProto (tests use it).

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


def _facts_attribute(attribute: memoryview, facts: GraphFacts) -> None:
    for number, value in fields(attribute):
        if number in (6, 11):  # g, graphs: control flow carries its own graphs
            facts.subgraphs = True
        elif number in (5, 10) and _tensor_is_external(_message(value)):  # t, tensors
            facts.external_data = True


def _facts_node(node: memoryview, facts: GraphFacts) -> None:
    domain = ""
    for number, value in fields(node):
        if number == 7:
            domain = _text(value)
        elif number == 5:
            _facts_attribute(_message(value), facts)
    facts.node_domains.add(domain)


def _facts_graph(graph: memoryview, facts: GraphFacts) -> None:
    for number, value in fields(graph):
        if number == 1:
            _facts_node(_message(value), facts)
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
                _facts_graph(_message(value), facts)
            elif number == 8:  # OperatorSetIdProto: 1 domain, 2 version
                domain, version = _pair(_message(value), 1, 2)
                if not isinstance(version, int):
                    raise MalformedGraph("an opset version is not a varint")
                facts.opsets[domain] = version
            elif number == 14:  # StringStringEntryProto: 1 key, 2 value
                key, text = _pair(_message(value), 1, 2)
                facts.metadata[key] = str(text)
            elif number == 25:
                facts.functions = True
    except IndexError as exc:
        raise MalformedGraph("truncated message") from exc
    return facts


# ---------------------------------------------------------------- the allow-list reader
# What serving accepts: exactly what creditml's converter writes. Every message below lists
# the fields the writer emits, with their wire format; any other field, operator, attribute,
# domain or opset is refused, and so is anything that does not parse, always as GraphRefused.

ALLOWED_DOMAINS = frozenset(OPSETS)
ML_DOMAIN = "ai.onnx.ml"

# (domain, op_type) -> attribute name -> AttributeProto.type: the operators
# creditml.models.onnx_convert emits, with the attributes it gives them (a unit test keeps
# this table equal to what the converter writes across every family).
OPERATORS: dict[tuple[str, str], dict[str, int]] = {
    ("", "Cast"): {"to": _ATTR_INT},
    ("", "Div"): {},
    ("", "Identity"): {},
    ("", "ArgMax"): {"axis": _ATTR_INT, "keepdims": _ATTR_INT},
    ("", "GreaterOrEqual"): {},
    ("", "Reshape"): {},
    ("", "Mul"): {},
    ("", "Neg"): {},
    ("", "Exp"): {},
    ("", "Add"): {},
    ("", "Sub"): {},
    ("", "Concat"): {"axis": _ATTR_INT},
    ("", "ReduceMax"): {"keepdims": _ATTR_INT},
    ("", "ReduceSum"): {"keepdims": _ATTR_INT},
    (ML_DOMAIN, "TreeEnsemble"): {
        "aggregate_function": _ATTR_INT,
        "post_transform": _ATTR_INT,
        "n_targets": _ATTR_INT,
        "tree_roots": _ATTR_INTS,
        "nodes_featureids": _ATTR_INTS,
        "nodes_splits": _ATTR_TENSOR,
        "nodes_modes": _ATTR_TENSOR,
        "nodes_truenodeids": _ATTR_INTS,
        "nodes_trueleafs": _ATTR_INTS,
        "nodes_falsenodeids": _ATTR_INTS,
        "nodes_falseleafs": _ATTR_INTS,
        "nodes_missing_value_tracks_true": _ATTR_INTS,
        "leaf_targetids": _ATTR_INTS,
        "leaf_weights": _ATTR_TENSOR,
    },
}

_TENSOR_DTYPES: dict[int, str] = {FLOAT: "<f4", UINT8: "u1", INT64: "<i8", BOOL: "?", DOUBLE: "<f8"}


class GraphRefused(Exception):
    """The graph is not what creditml's converter writes; `reason` says what."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# Refusals found while reading, most telling first: a graph with several problems is
# refused for the first of these it has.
_PRIORITY = (
    "size",
    "domains",
    "external",
    "sparse",
    "functions",
    "subgraphs",
    "operators",
    "attributes",
    "fields",
    "content",
    "opsets",
)

# Field kinds: (allowed wire types, repeated?)
_INT, _STR, _BYTES, _MSG, _STRS, _MSGS, _INTS = "int", "str", "bytes", "msg", "strs", "msgs", "ints"
_KINDS: dict[str, tuple[frozenset[int], bool]] = {
    _INT: (frozenset({_VARINT}), False),
    _STR: (frozenset({_LENGTH}), False),
    _BYTES: (frozenset({_LENGTH}), False),
    _MSG: (frozenset({_LENGTH}), False),
    _STRS: (frozenset({_LENGTH}), True),
    _MSGS: (frozenset({_LENGTH}), True),
    _INTS: (frozenset({_VARINT, _LENGTH}), True),  # unpacked or packed
}

# message -> field number -> (name, kind): only what the writer emits
_SPECS: dict[str, dict[int, tuple[str, str]]] = {
    "ModelProto": {
        1: ("ir_version", _INT),
        2: ("producer_name", _STR),
        7: ("graph", _MSG),
        8: ("opset_import", _MSGS),
        14: ("metadata_props", _MSGS),
    },
    "OperatorSetIdProto": {1: ("domain", _STR), 2: ("version", _INT)},
    "StringStringEntryProto": {1: ("key", _STR), 2: ("value", _STR)},
    "GraphProto": {
        1: ("node", _MSGS),
        2: ("name", _STR),
        5: ("initializer", _MSGS),
        11: ("input", _MSGS),
        12: ("output", _MSGS),
    },
    "NodeProto": {
        1: ("input", _STRS),
        2: ("output", _STRS),
        3: ("name", _STR),
        4: ("op_type", _STR),
        5: ("attribute", _MSGS),
        7: ("domain", _STR),
    },
    "AttributeProto": {
        1: ("name", _STR),
        3: ("i", _INT),
        5: ("t", _MSG),
        8: ("ints", _INTS),
        20: ("type", _INT),
    },
    "TensorProto": {
        1: ("dims", _INTS),
        2: ("data_type", _INT),
        8: ("name", _STR),
        9: ("raw_data", _BYTES),
    },
    "ValueInfoProto": {1: ("name", _STR), 2: ("type", _MSG)},
    "TypeProto": {1: ("tensor_type", _MSG)},
    "TypeProto.Tensor": {1: ("elem_type", _INT), 2: ("shape", _MSG)},
    "TensorShapeProto": {1: ("dim", _MSGS)},
    "TensorShapeProto.Dimension": {1: ("dim_value", _INT), 2: ("dim_param", _STR)},
}

# Fields outside the specs that name a refusal of their own: (message, field) -> problem
_NAMED_FIELDS: dict[tuple[str, int], str] = {
    ("ModelProto", 25): "functions",
    ("GraphProto", 15): "sparse",  # sparse_initializer
    ("AttributeProto", 6): "subgraphs",  # g
    ("AttributeProto", 11): "subgraphs",  # graphs
    ("AttributeProto", 22): "sparse",  # sparse_tensor
    ("AttributeProto", 23): "sparse",  # sparse_tensors
    ("TensorProto", 13): "external",  # external_data
    ("TypeProto", 8): "sparse",  # sparse_tensor_type
}
# Fields outside the specs that may hold TensorProtos (directly or in a SparseTensorProto)
# whose external data is worth naming: (message, field) -> "tensor" | "sparse"
_HOLDERS: dict[tuple[str, int], str] = {
    ("GraphProto", 15): "sparse",
    ("AttributeProto", 10): "tensor",  # tensors
    ("AttributeProto", 22): "sparse",
    ("AttributeProto", 23): "sparse",
}


def _wire_fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) for each field of one message."""
    i, n = 0, len(buf)
    while i < n:
        key, i = _read_varint(buf, i)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise MalformedGraph("field number 0")
        if wire_type == _VARINT:
            value, i = _read_varint(buf, i)
            yield number, wire_type, value
            continue
        if wire_type == _LENGTH:
            size, i = _read_varint(buf, i)
        elif wire_type in (_FIXED64, _FIXED32):
            size = 8 if wire_type == _FIXED64 else 4
        else:
            raise MalformedGraph(f"unsupported wire type {wire_type}")
        if i + size > n:
            raise MalformedGraph("a field runs past the end of its message")
        yield number, wire_type, buf[i : i + size]
        i += size


def decode_varints(data: bytes | memoryview) -> NDArray[np.int64]:
    """The int64 values of a packed run of varints (the inverse of `varints`), at once."""
    raw = np.frombuffer(data, dtype=np.uint8)
    if raw.size == 0:
        return np.empty(0, dtype=np.int64)
    ends = np.flatnonzero(raw < 0x80)
    if ends.size == 0 or ends[-1] != raw.size - 1:
        raise MalformedGraph("a packed varint is truncated")
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts + 1
    if lengths.max() > 10 or (raw[ends[lengths == 10]] > 1).any():
        raise MalformedGraph("a varint is longer than 64 bits")
    position = np.arange(raw.size, dtype=np.int64) - np.repeat(starts, lengths)
    parts = (raw & 0x7F).astype(np.uint64) << (position * 7).astype(np.uint64)
    return np.add.reduceat(parts, starts).view(np.int64)


class _Problems:
    """The first detail of each kind of refusal met while reading."""

    def __init__(self) -> None:
        self.found: dict[str, str] = {}

    def add(self, kind: str, reason: str) -> None:
        self.found.setdefault(kind, reason)

    def raise_first(self) -> None:
        for kind in _PRIORITY:
            if kind in self.found:
                raise GraphRefused(self.found[kind])


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _utf8(value: memoryview) -> str:
    return bytes(value).decode("utf-8")  # UnicodeDecodeError: refused as unparsable


class _Ints:
    """A repeated int64 field met packed (varint runs) or unpacked (one value a field)."""

    def __init__(self) -> None:
        self.chunks: list[NDArray[np.int64]] = []
        self.loose: list[int] = []

    def add(self, wire_type: int, value: int | memoryview) -> None:
        if wire_type == _VARINT:
            assert isinstance(value, int)
            self.loose.append(_signed(value))
            return
        assert isinstance(value, memoryview)
        self._flush()
        self.chunks.append(decode_varints(value))

    def _flush(self) -> None:
        if self.loose:
            self.chunks.append(np.array(self.loose, dtype=np.int64))
            self.loose = []

    def array(self) -> NDArray[np.int64]:
        self._flush()
        if len(self.chunks) == 1:
            return self.chunks[0]
        return np.concatenate(self.chunks) if self.chunks else np.empty(0, dtype=np.int64)


def _external_tensor(tensor_bytes: memoryview) -> bool:
    # TensorProto 13 external_data, 14 data_location (1 = EXTERNAL)
    return any(
        n == 13 or (n == 14 and w == _VARINT and v == 1) for n, w, v in _wire_fields(tensor_bytes)
    )


def _holds_external(kind: str, value: memoryview) -> bool:
    if kind == "tensor":
        return _external_tensor(value)
    # a SparseTensorProto: 1 values, 2 indices
    return any(
        n in (1, 2) and w == _LENGTH and isinstance(v, memoryview) and _external_tensor(v)
        for n, w, v in _wire_fields(value)
    )


def _unknown_field(
    message: str, number: int, wire_type: int, value: int | memoryview, problems: _Problems
) -> None:
    holder = _HOLDERS.get((message, number))
    if holder and isinstance(value, memoryview) and _holds_external(holder, value):
        problems.add("external", "the graph refers to external data")
    if (message, number) == ("TensorProto", 14) and value == 1:  # data_location EXTERNAL
        problems.add("external", "the graph refers to external data")
    named = _NAMED_FIELDS.get((message, number))
    if named is not None:
        problems.add(named, _NAMED_REASONS[named])
    problems.add("fields", f"the graph holds a field creditml does not write ({message} {number})")


_NAMED_REASONS = {
    "functions": "the graph defines local functions",
    "sparse": "the graph holds sparse tensors",
    "subgraphs": "the graph holds subgraphs",
    "external": "the graph refers to external data",
}


def _parse(buf: memoryview, message: str, problems: _Problems) -> dict[str, Any]:
    """The fields of one message that its spec allows, by name: ints, strs, views, lists of
    those, or int64 arrays for repeated ints. Other fields are recorded in `problems`; a
    field of the wrong wire type or a repeated singular field refuses the graph."""
    spec = _SPECS[message]
    out: dict[str, Any] = {}
    for number, wire_type, value in _wire_fields(buf):
        entry = spec.get(number)
        if entry is None:
            _unknown_field(message, number, wire_type, value, problems)
            continue
        name, kind = entry
        wire_types, repeated = _KINDS[kind]
        if wire_type not in wire_types:
            raise MalformedGraph(f"{message}.{name} has wire type {wire_type}")
        if not repeated and name in out:
            raise MalformedGraph(f"{message}.{name} appears twice")
        out[name] = _field_value(kind, wire_type, value, out.get(name))
    return {k: v.array() if isinstance(v, _Ints) else v for k, v in out.items()}


def _field_value(kind: str, wire_type: int, value: int | memoryview, before: Any) -> Any:
    if kind == _INT:
        assert isinstance(value, int)
        return _signed(value)
    if kind == _INTS:
        ints = before if isinstance(before, _Ints) else _Ints()
        ints.add(wire_type, value)
        return ints
    assert isinstance(value, memoryview)
    item: Any = _utf8(value) if kind in (_STR, _STRS) else value
    if kind in (_STRS, _MSGS):
        return [*(before or []), item]
    return item


@dataclass
class GraphContents:
    """A graph as read by the allow-list reader: what `model_bytes` was given to write it."""

    ir_version: int
    opsets: dict[str, int]
    graph_name: str
    nodes: list[Node]
    inputs: list[ValueInfo]
    outputs: list[ValueInfo]
    initializers: dict[str, NDArray[Any]]
    metadata: dict[str, str]

    def encode(self) -> bytes:
        """The bytes `model_bytes` writes for these contents."""
        return model_bytes(
            self.nodes,
            self.inputs,
            self.outputs,
            self.initializers,
            self.metadata,
            self.graph_name,
        )


def _read_tensor(buf: memoryview, problems: _Problems) -> tuple[str, NDArray[Any]]:
    parsed = _parse(buf, "TensorProto", problems)
    name = parsed.get("name", "")
    dims = [int(d) for d in parsed.get("dims", ())]
    dtype = _TENSOR_DTYPES.get(parsed.get("data_type", 0))
    if dtype is None or any(d < 0 for d in dims):
        problems.add(
            "content", "the graph holds a tensor of a type or shape creditml does not write"
        )
        return name, np.empty(0)
    raw = parsed.get("raw_data", memoryview(b""))
    count = 1
    for d in dims:
        count *= d
    if count * np.dtype(dtype).itemsize != len(raw):
        problems.add("content", "the graph holds a tensor whose data does not match its shape")
        return name, np.empty(0)
    return name, np.frombuffer(raw, dtype=dtype).reshape(dims)


def _attribute_value(parsed: dict[str, Any], problems: _Problems) -> Any:
    kind = parsed.get("type", 0)
    if kind == _ATTR_INT:
        return parsed.get("i", 0)
    if kind == _ATTR_TENSOR and "t" in parsed:
        return _read_tensor(parsed["t"], problems)[1]
    return Ints(parsed.get("ints", np.empty(0, dtype=np.int64)))


def _read_attribute(
    buf: memoryview, allowed: dict[str, int] | None, problems: _Problems
) -> tuple[str, Any]:
    parsed = _parse(buf, "AttributeProto", problems)
    name, kind = parsed.get("name", ""), parsed.get("type", 0)
    value_field = {_ATTR_INT: "i", _ATTR_INTS: "ints", _ATTR_TENSOR: "t"}.get(kind, "")
    carried = {"i", "t", "ints"} & parsed.keys()
    if allowed is not None and name not in allowed:
        problems.add(
            "attributes",
            f"the graph gives an operator an attribute creditml does not write ({name})",
        )
    elif allowed is not None and (allowed[name] != kind or not carried <= {value_field}):
        problems.add(
            "attributes", f"the graph's attribute {name} is not of the type creditml writes"
        )
    return name, _attribute_value(parsed, problems)


def _read_node(buf: memoryview, problems: _Problems) -> Node:
    parsed = _parse(buf, "NodeProto", problems)
    domain, op_type = parsed.get("domain", ""), parsed.get("op_type", "")
    allowed = OPERATORS.get((domain, op_type))
    if allowed is None and domain in ALLOWED_DOMAINS:
        problems.add("operators", f"the graph uses an operator creditml does not write ({op_type})")
    attributes: dict[str, Any] = {}
    for attribute in parsed.get("attribute", []):
        name, value = _read_attribute(attribute, allowed, problems)
        if name in attributes:
            problems.add("attributes", f"the graph gives an operator attribute {name} twice")
        attributes[name] = value
    return Node(op_type, parsed.get("input", []), parsed.get("output", []), attributes, domain)


def _read_value_info(buf: memoryview, problems: _Problems) -> ValueInfo:
    parsed = _parse(buf, "ValueInfoProto", problems)
    kind = _parse(parsed.get("type", memoryview(b"")), "TypeProto", problems)
    tensor_type = _parse(kind.get("tensor_type", memoryview(b"")), "TypeProto.Tensor", problems)
    shape = _parse(tensor_type.get("shape", memoryview(b"")), "TensorShapeProto", problems)
    dims: list[int | str] = []
    for dim in shape.get("dim", []):
        size = _parse(dim, "TensorShapeProto.Dimension", problems)
        dims.append(size["dim_param"] if "dim_param" in size else size.get("dim_value", 0))
    elem_type = tensor_type.get("elem_type", 0)
    if elem_type not in _TENSOR_DTYPES:
        problems.add(
            "content", "the graph has an input or output of a type creditml does not write"
        )
    return ValueInfo(parsed.get("name", ""), elem_type, dims)


def _read_graph(buf: memoryview, problems: _Problems) -> dict[str, Any]:
    parsed = _parse(buf, "GraphProto", problems)
    initializers: dict[str, NDArray[Any]] = {}
    for tensor_bytes in parsed.get("initializer", []):
        name, array = _read_tensor(tensor_bytes, problems)
        if name in initializers:
            problems.add("content", f"the graph holds two initializers named {name}")
        initializers[name] = array
    return {
        "graph_name": parsed.get("name", ""),
        "nodes": [_read_node(node, problems) for node in parsed.get("node", [])],
        "initializers": initializers,
        "inputs": [_read_value_info(v, problems) for v in parsed.get("input", [])],
        "outputs": [_read_value_info(v, problems) for v in parsed.get("output", [])],
    }


def _entries(
    messages: list[memoryview], message: str, key: str, value: str, problems: _Problems
) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for entry in messages:
        parsed = _parse(entry, message, problems)
        name = parsed.get(key, "")
        if name in found:
            problems.add("content", f"the graph names {name!r} twice in its {message}s")
        found[name] = parsed.get(value, "" if message == "StringStringEntryProto" else 0)
    return found


def _read_model(buf: memoryview, problems: _Problems) -> GraphContents:
    parsed = _parse(buf, "ModelProto", problems)
    if "graph" not in parsed:
        problems.add("content", "the model holds no graph")
    graph = _read_graph(parsed.get("graph", memoryview(b"")), problems)
    opsets = _entries(
        parsed.get("opset_import", []), "OperatorSetIdProto", "domain", "version", problems
    )
    domains = set(opsets) | {node.domain for node in graph["nodes"]}
    if domains - ALLOWED_DOMAINS:
        problems.add(
            "domains", f"the graph uses operator domains {sorted(domains - ALLOWED_DOMAINS)}"
        )
    ir_version = parsed.get("ir_version", 0)
    if opsets != OPSETS or ir_version != IR_VERSION:
        problems.add(
            "opsets",
            f"the graph imports opsets {opsets} at IR version {ir_version}, "
            f"creditml writes {OPSETS} at {IR_VERSION}",
        )
    metadata = _entries(
        parsed.get("metadata_props", []), "StringStringEntryProto", "key", "value", problems
    )
    return GraphContents(ir_version, opsets, metadata=metadata, **graph)


def read_model(data: bytes, max_bytes: int | None = None) -> GraphContents:
    """The contents of a serialized ModelProto if it holds only what creditml's converter
    writes (OPERATORS, their attributes, the fields of the writer's messages, the "" and
    "ai.onnx.ml" opsets; no external data, sparse tensors, functions or subgraphs, and at
    most `max_bytes` bytes); otherwise GraphRefused with the reason, for any input."""
    if max_bytes is not None and len(data) > max_bytes:
        raise GraphRefused(f"the graph is {len(data)} bytes, more than the {max_bytes} allowed")
    problems = _Problems()
    try:
        contents = _read_model(memoryview(data), problems)
    except (ValueError, IndexError, OverflowError) as exc:  # MalformedGraph, bad UTF-8, ...
        raise GraphRefused(f"the graph does not parse ({exc})") from exc
    problems.raise_first()
    return contents


def check_graph(data: bytes, max_bytes: int | None = None) -> dict[str, str]:
    """GraphRefused unless `data` holds only what creditml's converter writes (see
    read_model); returns the graph's metadata. Imports neither onnx nor onnxruntime."""
    metadata: dict[str, str] = read_model(data, max_bytes).metadata
    return metadata


# ---------------------------------------------------------------- session memory
# Here, not in onnx_runtime: registration caps graphs by their session's memory without
# importing onnxruntime.
SESSION_BYTES_PER_GRAPH_BYTE = 28
SESSION_OVERHEAD_BYTES = 160 * 1024


def estimate_nbytes(graph_size: int) -> int:
    """An upper bound of the memory a session over a graph of `graph_size` bytes takes:
    SESSION_OVERHEAD_BYTES + SESSION_BYTES_PER_GRAPH_BYTE x graph_size.

    Measured on TreeEnsemble graphs (the only ones creditml writes), one session loaded and
    run once in a fresh process after a warm-up session over another graph, with
    RSS from /proc/self/statm (kept) and VmHWM from /proc/self/status (peak); below the
    first four, benchmarks/stack.py's forest(50_000_000, 2) cut to 1-52 trees (or its trees
    repeated to 104 and 156):

        graph      RSS kept          peak growth
        0.007 MB     0.08 MB (11.4x)   0.08 MB (11.4x)  RandomForestClassifier(10), iris
        0.065 MB     1.85 MB (28.4x)   1.85 MB (28.4x)  RandomForestClassifier(100), iris
        0.049 MB     1.30 MB (26.3x)   1.30 MB (26.3x)  GradientBoostingClassifier, iris
        0.73 MB     18.6 MB (25.6x)   19.2 MB (26.3x)  RandomForestRegressor(100), diabetes
        0.31 MB      8.3 MB (26.6x)    8.4 MB (26.8x)
        1.64 MB     36.9 MB (22.5x)   41.0 MB (25.1x)
        4.30 MB    100.6 MB (23.4x)  111.4 MB (25.9x)
        8.63 MB    202.7 MB (23.5x)  224.6 MB (26.0x)
       17.29 MB    389.0 MB (22.5x)  453.1 MB (26.2x)
       34.62 MB    537.3 MB (15.5x)  863.9 MB (25.0x)
       51.95 MB    675.2 MB (13.0x) 1259.8 MB (24.3x)

    ONNX Runtime holds the parsed protobuf (packed varints become 8-byte ints), its own tree
    nodes and optimizer copies; the peak while loading is ~25x and what stays ~13-24x (big
    transient buffers go back to the system, smaller ones stay in the heap). An independent
    review measured 0.73 MB -> 4.4 MB, 3.6 MB -> 19 MB, 38.4 MB -> 616 MB, 42.6 MB -> 565 MB
    and 340 MB -> 2.9 GB kept. 160 KiB + 28x bounds every one of these, peaks included (what
    a load reaches before the function's memory limit would stop it). The earlier 6x,
    amortized over many sessions of one graph, undercounted by up to 4x."""
    return SESSION_OVERHEAD_BYTES + SESSION_BYTES_PER_GRAPH_BYTE * graph_size


def max_graph_bytes(max_session_bytes: int) -> int:
    """The largest graph whose session estimate_nbytes fits in `max_session_bytes`."""
    return max(0, (max_session_bytes - SESSION_OVERHEAD_BYTES) // SESSION_BYTES_PER_GRAPH_BYTE)
