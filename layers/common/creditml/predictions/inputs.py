"""Parse and validate prediction rows against a model's schema, fast and precisely.

Rows arrive as JSON: lists of numbers in feature order, or objects keyed by feature name.
Every value must be a finite JSON number: booleans, strings, null, and the non-standard
`NaN` / `Infinity` tokens (which Python's json would otherwise accept) are refused with the
row and field named. The result is one float64 matrix for the model.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from creditml.errors import InputsInvalid, NonFiniteOutput, PayloadTooLarge
from creditml.models.schema import ModelSchema


class _NonStandard:
    """What json.loads gives for NaN/Infinity tokens here, so they fail as values."""

    def __init__(self, token: str) -> None:
        self.token = token


def _problem(field: str, message: str) -> InputsInvalid:
    return InputsInvalid(field, message)


def _bad_value(value: Any) -> str:
    if isinstance(value, _NonStandard):
        return f"must be a finite number, not {value.token}"
    if value is None:
        return "must be a number, not null"
    if isinstance(value, bool):
        return "must be a number, not a boolean"
    if isinstance(value, str):
        return "must be a number, not a string"
    if isinstance(value, float):
        return "must be a finite number"
    return f"must be a number, not {type(value).__name__}"


def parse_body(body: bytes, max_bytes: int) -> Any:
    if len(body) > max_bytes:
        raise PayloadTooLarge(max_bytes)
    try:
        return json.loads(body, parse_constant=_NonStandard)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _problem("body", "is not valid JSON") from exc


def parse_rows(document: Any, schema: ModelSchema, max_rows: int) -> NDArray[np.float64]:
    """The rows of a prediction request as an (n_rows, n_features) float64 matrix."""
    if not isinstance(document, dict) or set(document) != {"inputs"}:
        raise _problem("body", 'must be an object with one member, "inputs"')
    rows = document["inputs"]
    if not isinstance(rows, list):
        raise _problem("body.inputs", "must be a list of rows")
    if not rows:
        raise _problem("body.inputs", "must hold at least one row")
    if len(rows) > max_rows:
        raise _problem("body.inputs", f"holds {len(rows)} rows; at most {max_rows} per request")
    if isinstance(rows[0], dict):
        rows = _ordered(rows, schema)
    for index, row in enumerate(rows):
        _check_row(index, row, schema)
    return _matrix(rows, schema)


def _check_row(index: int, row: Any, schema: ModelSchema) -> None:
    if not isinstance(row, list):
        raise _problem(
            f"body.inputs.{index}",
            "must be a list of numbers (or every row an object keyed by feature name)",
        )
    if len(row) != schema.n_features:
        raise _problem(
            f"body.inputs.{index}", f"has {len(row)} values; the model takes {schema.n_features}"
        )
    for column, value in enumerate(row):
        kind = type(value)
        if kind is int or (kind is float and math.isfinite(value)):
            continue
        raise _problem(f"body.inputs.{index}.{_name(schema, column)}", _bad_value(value))


def _matrix(rows: list[Any], schema: ModelSchema) -> NDArray[np.float64]:
    try:
        matrix = np.asarray(rows, dtype=np.float64)
    except OverflowError:  # an integer beyond float range, e.g. 10**400
        row, column = _first_huge(rows)
        raise _problem(
            f"body.inputs.{row}.{_name(schema, column)}", "must be a finite number"
        ) from None
    if not np.isfinite(matrix).all():  # e.g. integers too large for a float
        row, column = (int(i) for i in np.argwhere(~np.isfinite(matrix))[0])
        raise _problem(f"body.inputs.{row}.{_name(schema, column)}", "must be a finite number")
    return matrix


def _first_huge(rows: list[Any]) -> tuple[int, int]:
    for row_index, row in enumerate(rows):
        for column, value in enumerate(row):
            try:
                float(value)
            except OverflowError:
                return row_index, column
    return 0, 0


def _name(schema: ModelSchema, column: int) -> str:
    return schema.feature_names[column] if schema.feature_names else str(column)


def _ordered(rows: list[Any], schema: ModelSchema) -> list[Any]:
    names = schema.feature_names
    if not names:
        raise _problem(
            "body.inputs.0",
            f"this model has no feature names: send rows as lists of {schema.n_features} numbers",
        )
    expected = set(names)
    ordered = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise _problem(f"body.inputs.{index}", "must be an object like the first row")
        if row.keys() != expected:
            unknown = sorted(set(row) - expected)
            missing = [name for name in names if name not in row]
            if unknown:
                raise _problem(
                    f"body.inputs.{index}.{unknown[0]}",
                    f"is not a feature of this model (features: {', '.join(names)})",
                )
            raise _problem(f"body.inputs.{index}.{missing[0]}", "is missing")
        ordered.append([row[name] for name in names])
    return ordered


def to_json_values(values: Any) -> list[Any]:
    """numpy outputs as plain JSON values; NonFiniteOutput when a number among them is inf
    or NaN (JSON has neither: they would be delivered, and charged, as null)."""
    array = np.asarray(values)
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        raise NonFiniteOutput()
    listed: list[Any] = array.tolist()
    return listed


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
