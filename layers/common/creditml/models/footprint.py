"""How much memory a loaded model holds: the bytes of every numpy array reachable from it
(through estimators, lists, dicts and scikit-learn's Cython trees) plus Python object
overhead. The model cache and registration count this, not the size of the file."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

# Per model: the interpreter's bookkeeping that getsizeof does not see (type caches, etc.).
MODEL_OVERHEAD_BYTES = 64 * 1024
# sklearn.tree._tree.Node: seven 8-byte fields and a flag, padded.
_TREE_NODE_BYTES = 64


def model_nbytes(model: Any) -> int:
    """Bytes of memory `model` keeps alive (each object counted once, cycles included)."""
    return MODEL_OVERHEAD_BYTES + sum(_own_nbytes(item) for item in reachable(model))


def reachable(model: Any) -> Iterator[Any]:
    """Every object reachable from `model` through attributes, containers, object arrays and
    array bases, each once."""
    seen: dict[int, Any] = {}  # holding each object keeps temporaries' ids from being reused
    pending: list[Any] = [model]
    while pending:
        item = pending.pop()
        if id(item) in seen:
            continue
        seen[id(item)] = item
        yield item
        pending.extend(_children(item))


def _own_nbytes(item: Any) -> int:
    if isinstance(item, np.ndarray):
        # A view's memory belongs to its base (an array or bytes, visited as a child); a view
        # of anything else (a Cython memoryview: KDTree, BallTree) is counted itself.
        if isinstance(item.base, np.ndarray | bytes | bytearray):
            return sys.getsizeof(item)
        return item.nbytes + 112
    tree = _tree_nbytes(item)
    if tree is not None:
        return tree
    return sys.getsizeof(item, 64)


def _children(item: Any) -> list[Any]:
    if isinstance(item, np.ndarray):
        base = [item.base] if item.base is not None else []
        return base + (list(item.ravel()) if item.dtype.hasobject else [])
    if isinstance(item, dict):
        return [*item.keys(), *item.values()]
    if isinstance(item, list | tuple | set | frozenset):
        return list(item)
    if isinstance(item, str | bytes | int | float | bool | type) or item is None:
        return []
    attributes = getattr(item, "__dict__", None)
    children = list(attributes.values()) if isinstance(attributes, dict) else []
    return children + _binary_tree_arrays(item)


def _tree_nbytes(item: Any) -> int | None:
    """A scikit-learn decision tree's memory: `capacity` node structs and value rows."""
    if type(item).__name__ != "Tree" or not type(item).__module__.startswith("sklearn.tree"):
        return None
    capacity = max(int(item.capacity), int(item.node_count))
    value_row = int(item.n_outputs) * int(item.max_n_classes) * 8
    return capacity * (_TREE_NODE_BYTES + value_row) + 256


def _binary_tree_arrays(item: Any) -> list[Any]:
    """KDTree/BallTree keep their arrays behind get_arrays(), not __dict__."""
    get_arrays = getattr(type(item), "get_arrays", None)
    if get_arrays is None or not type(item).__module__.startswith("sklearn.neighbors"):
        return []
    arrays: tuple[Any, ...] = get_arrays(item)
    return list(arrays)
