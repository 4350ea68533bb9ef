# Generated from creditml/models/safe_loading.py by scripts/sync_client_shared.py; do not edit.
"""Load a model file without executing anything it did not earn.

A joblib or pickle file is a program: every global it names is imported and may be called.
`load_model` reads it with an unpickler whose `find_class` admits only the exact globals in
`ALLOWED_GLOBALS` (estimator classes, their internal types, numpy/scipy reconstructors),
never a module prefix: `numpy.testing` alone holds an `exec`, and `numpy`'s own ufunc
reconstructor imports any module by name. joblib reads object arrays through the same
`find_class`, so a hostile global inside an array is refused too. Anything else rejects the
file with a reason that names the offending global.

Given `max_memory_bytes`, the load also keeps a budget: every array's declared shape, every
read of the (decompressed) stream and every call that allocates from its arguments is
charged before it happens, so a 1 MB file that inflates to 1 GiB is refused having
allocated next to nothing. Registration runs all of this in a memory-limited child process
(creditml.models.vetting) as well: the budget gives a clear reason, the limit a backstop.
"""

from __future__ import annotations

import io
import lzma
import math
import operator
import pickle
import struct
import zlib
from typing import Any

from joblib.numpy_pickle import NumpyArrayWrapper, NumpyUnpickler
from joblib.numpy_pickle_utils import _validate_fileobject_and_memmap

from creditml_client._shared.allowlist import ALLOWED_GLOBALS
from creditml_client._shared.errors import ModelRejected

_MB = 1024 * 1024
_MAX_LINE_BYTES = 16 * _MB
_UNREADABLE = (
    "the file is not a readable joblib or pickle file (truncated, corrupt or another format)"
)
# joblib's unpickler is the pure-Python one, whose opcode methods we extend.
_PY_UNPICKLER: Any = pickle._Unpickler


class _MemoryBudget:
    """Bytes a load may still allocate; charged before each allocation it can foresee."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.used = 0

    def remaining(self) -> int | None:
        return None if self.limit is None else self.limit - self.used

    def charge(self, nbytes: int) -> None:
        self.used += max(nbytes, 0)
        if self.limit is not None and self.used > self.limit:
            raise ModelRejected(
                f"the model needs more than {self.limit // _MB} MB of memory once loaded "
                f"(the limit is {self.limit // _MB} MB)"
            )


class _CountingReader:
    """The decompressed stream, charging every byte read to the budget and refusing reads
    the budget cannot afford before they happen (a 1 MB zlib file can hold 1 GiB)."""

    def __init__(self, raw: Any, budget: _MemoryBudget) -> None:
        self._raw = raw
        self._budget = budget
        self.counting = True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:  # pickle never asks for "everything"; refuse to
            raise ModelRejected(_UNREADABLE)
        remaining = self._budget.remaining() if self.counting else None
        if remaining is not None and size > remaining:
            self._budget.charge(size)  # refused before a byte of it is decompressed
        chunk: bytes = self._raw.read(size)
        self._charge(len(chunk))
        return chunk

    def readline(self, size: int | None = -1) -> bytes:
        # Protocol-0 opcodes end in a newline; a bomb could be one endless line.
        line: bytes = self._raw.readline(_MAX_LINE_BYTES + 1)
        if len(line) > _MAX_LINE_BYTES:
            raise ModelRejected(_UNREADABLE)
        self._charge(len(line))
        return line

    def _charge(self, nbytes: int) -> None:
        if self.counting:
            self._budget.charge(nbytes)

    def __getattr__(self, name: str) -> Any:  # seek, tell, peek: joblib's array padding
        return getattr(self._raw, name)


def _declared_nbytes(shape: Any, dtype: Any) -> int:
    """Bytes an array of `shape` and `dtype` would take, computed without allocating it."""
    import numpy as np

    try:
        dims = [operator.index(shape)] if not isinstance(shape, tuple | list) else shape
        dims = [operator.index(d) for d in dims]
    except TypeError as exc:
        raise ModelRejected("the file declares an array with an invalid shape") from exc
    if any(d < 0 for d in dims):
        raise ModelRejected("the file declares an array with a negative dimension")
    try:
        itemsize = max(int(np.dtype(dtype).itemsize), 1)
    except TypeError:
        itemsize = 8
    return int(math.prod(dims)) * itemsize


def _allocating_call_nbytes(func: Any, args: Any) -> int:
    """Bytes a REDUCE/NEWOBJ of an allowlisted global would allocate from its arguments alone
    (ndarray(shape), _reconstruct(cls, shape, dtype), bytearray(n), a sparse matrix of a
    shape, a tree of n outputs); 0 for calls that allocate no more than their arguments."""
    import numpy as np

    if not isinstance(args, tuple) or not args:
        return 0
    if func is bytearray:
        return args[0] if isinstance(args[0], int) else 0
    if func is np.ndarray:
        return _declared_nbytes(args[0], args[1] if len(args) > 1 else float)
    name = f"{getattr(func, '__module__', '')}.{getattr(func, '__qualname__', '')}"
    if name.endswith("multiarray._reconstruct") and len(args) >= 2:
        return _declared_nbytes(args[1], args[2] if len(args) > 2 else "b")
    if name.startswith("scipy.sparse.") and _is_matrix_shape(args[0]):
        return _declared_nbytes(max(args[0]) + 1, np.int64)  # an empty matrix's indptr
    if name == "sklearn.tree._tree.Tree":
        return _tree_header_nbytes(args)
    return 0


def _is_matrix_shape(value: Any) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value)


def _tree_header_nbytes(args: tuple[Any, ...]) -> int:
    """A Tree is built as Tree(n_features, n_classes, n_outputs) and reads n_outputs entries
    of n_classes unchecked: refuse a header that disagrees with itself."""
    import numpy as np

    if len(args) != 3:
        raise ModelRejected("the file holds a decision tree with an invalid header")
    n_features, n_classes, n_outputs = args
    valid = (
        isinstance(n_features, int)
        and isinstance(n_outputs, int)
        and isinstance(n_classes, np.ndarray)
        and n_classes.ndim == 1
        and n_classes.dtype.kind in "iu"
        and 1 <= n_outputs == n_classes.shape[0]
        and n_features >= 0
        and bool(np.all(n_classes >= 1))
    )
    if not valid:
        raise ModelRejected("the file holds a decision tree with an invalid header")
    return _declared_nbytes((n_outputs,), np.intp)


class _AllowlistUnpickler(NumpyUnpickler):  # type: ignore[misc]
    dispatch = NumpyUnpickler.dispatch.copy()

    def __init__(self, stream: _CountingReader, budget: _MemoryBudget) -> None:
        super().__init__("", stream, ensure_native_byte_order=True)
        self._budget = budget
        self._stream = stream

    def find_class(self, module: str, name: str) -> Any:
        if f"{module}.{name}" not in ALLOWED_GLOBALS:
            raise ModelRejected(f"the file references a forbidden global: {module}.{name}")
        return super().find_class(module, name)

    def load_build(self) -> None:
        # Same as joblib's, but the array's declared size is charged before it is allocated,
        # and its data (read from the stream) is not charged a second time.
        _PY_UNPICKLER.load_build(self)
        wrapper = self.stack[-1]
        if not isinstance(wrapper, NumpyArrayWrapper):
            return
        self.stack.pop()
        dtype = getattr(wrapper, "dtype", None)
        if not isinstance(dtype, self.np.dtype):
            raise ModelRejected("the file declares an array with an invalid data type")
        if not dtype.hasobject:
            self._budget.charge(_declared_nbytes(wrapper.shape, dtype))
            self._stream.counting = False
        try:
            self.stack.append(wrapper.read(self, self.ensure_native_byte_order))
        finally:
            self._stream.counting = True

    def load_reduce(self) -> None:
        self._budget.charge(_allocating_call_nbytes(self.stack[-2], self.stack[-1]))
        _PY_UNPICKLER.load_reduce(self)

    def load_newobj(self) -> None:
        self._budget.charge(_allocating_call_nbytes(self.stack[-2], self.stack[-1]))
        _PY_UNPICKLER.load_newobj(self)

    def load_newobj_ex(self) -> None:
        args, kwargs = self.stack[-2], self.stack[-1]
        shape_args = args if args else (kwargs.get("shape"),) if isinstance(kwargs, dict) else ()
        self._budget.charge(_allocating_call_nbytes(self.stack[-3], tuple(shape_args)))
        _PY_UNPICKLER.load_newobj_ex(self)

    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex


def load_model(data: bytes, max_memory_bytes: int | None = None) -> Any:
    """The object in a joblib/pickle file, loaded through the allowlist; ModelRejected
    (with a reason) for anything unsafe, empty, truncated or not a model file, or, when
    `max_memory_bytes` is given, for a file whose arrays and data would take more memory
    than that once loaded (checked before each array is allocated)."""
    if not data:
        raise ModelRejected("the file is empty")
    budget = _MemoryBudget(max_memory_bytes)
    try:
        with _validate_fileobject_and_memmap(io.BytesIO(data), "", None) as (stream, _):
            return _AllowlistUnpickler(_CountingReader(stream, budget), budget).load()
    except ModelRejected:
        raise
    except MemoryError as exc:
        raise ModelRejected("the model needs more memory than is available to load it") from exc
    except Exception as exc:
        raise ModelRejected(_unreadable_reason(exc)) from exc


def _unreadable_reason(exc: Exception) -> str:
    unreadable = (EOFError, pickle.UnpicklingError, struct.error, zlib.error, lzma.LZMAError)
    # joblib raises ValueError("EOF: ...") when the file ends inside an array's data.
    if isinstance(exc, unreadable) or (isinstance(exc, ValueError) and str(exc).startswith("EOF")):
        return _UNREADABLE
    return f"the file could not be read as a model ({type(exc).__name__})"
