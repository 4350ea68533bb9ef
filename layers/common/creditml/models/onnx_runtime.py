"""Serve an ONNX graph made by creditml.models.onnx_convert with onnxruntime only.

This module imports numpy, onnxruntime and creditml's own pure-Python modules, never
scikit-learn or scipy (a subprocess test checks sys.modules), so ONNX-served versions cold
start without the scikit-learn stack.

Before a session exists, the graph's wire format is checked (`check_graph`, in onnx_proto):
only what creditml's converter writes (its operators and attributes in the "" and
"ai.onnx.ml" domains; no external data, sparse tensors, local functions or subgraphs), even
though the graphs are our own. Sessions run single-threaded and sequentially: ORT's
TreeEnsemble sums trees in a different order with several intra-op threads, which changes
the last bits of regressions (measured, see docs/DECISIONS.md). InferenceSession.run is
thread-safe, so one OnnxModel serves concurrent requests.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]
from numpy.typing import NDArray

from creditml.models.onnx_proto import (
    ALLOWED_DOMAINS,
    SESSION_BYTES_PER_GRAPH_BYTE,
    SESSION_OVERHEAD_BYTES,
    GraphRefused,
    check_graph,
    estimate_nbytes,
)

__all__ = [
    "ALLOWED_DOMAINS",
    "SESSION_BYTES_PER_GRAPH_BYTE",
    "SESSION_OVERHEAD_BYTES",
    "GraphRefused",
    "OnnxModel",
    "check_graph",
    "estimate_nbytes",
    "session_options",
]

_INPUT = "X"
_LABEL = "label"
_PROBABILITIES = "probabilities"
_VALUE = "value"
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def session_options() -> ort.SessionOptions:
    """One intra-op and one inter-op thread, sequential, all graph optimizations, no
    spinning, released opsets only."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # bit-exact sums (see module docstring)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-wait
    options.add_session_config_entry("session.allow_released_opsets_only", "1")
    options.log_severity_level = 3
    return options


def _classes(text: str) -> NDArray[Any]:
    document = json.loads(text)
    return np.array(document["values"], dtype=np.dtype(document["dtype"]))


class OnnxModel:
    """A loaded graph answering like the scikit-learn model it was converted from:
    `predict` returns the same labels (same dtype) or float64 values, `predict_proba` the
    same float64 probabilities."""

    def __init__(self, session: Any, metadata: dict[str, str], nbytes: int) -> None:
        self._session = session
        self.is_classifier = metadata.get("creditml.kind") == "classifier"
        self.classes: NDArray[Any] | None = (
            _classes(metadata["creditml.classes"]) if self.is_classifier else None
        )
        self.n_features = int(metadata["creditml.n_features"])
        self._float32_input = metadata.get("creditml.float32_input") == "1"
        self._allow_nan = metadata.get("creditml.allow_nan") == "1"
        self.has_probabilities = self.is_classifier
        self.nbytes = nbytes

    @classmethod
    def load(cls, graph: bytes, max_bytes: int | None = None) -> OnnxModel:
        """check_graph (GraphRefused beyond `max_bytes` or for anything creditml does not
        write), then an InferenceSession from the bytes (never from a path)."""
        metadata = check_graph(graph, max_bytes)
        if "creditml.n_features" not in metadata or "creditml.kind" not in metadata:
            raise GraphRefused("the graph was not made by creditml's converter")
        session = ort.InferenceSession(graph, session_options(), providers=["CPUExecutionProvider"])
        return cls(session, metadata, estimate_nbytes(len(graph)))

    def _checked(self, rows: Any) -> NDArray[np.float64]:
        # The checks scikit-learn's validation makes, so both runtimes refuse the same rows
        X = np.ascontiguousarray(rows, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features or X.shape[0] == 0:
            raise ValueError(
                f"X has shape {X.shape}; the model takes rows of {self.n_features} features"
            )
        if not np.isfinite(X).all():
            self._check_non_finite(X)
        elif self._float32_input and np.abs(X).max() > _FLOAT32_MAX:
            self._check_float32(X)
        return X

    def _check_non_finite(self, X: NDArray[np.float64]) -> None:
        if np.isinf(X).any() or not self._allow_nan:
            raise ValueError("Input X contains infinity or NaN.")
        if self._float32_input:
            self._check_float32(np.nan_to_num(X))

    @staticmethod
    def _check_float32(X: NDArray[np.float64]) -> None:
        # beyond float32's range only if it rounds to infinity when cast, as sklearn's does
        if np.isinf(X.astype(np.float32)).any():
            raise ValueError("Input X contains a value too large for dtype('float32').")

    def run(self, rows: Any) -> tuple[NDArray[Any], NDArray[np.float64] | None]:
        """(predict, predict_proba or None) from one session run."""
        X = self._checked(rows)
        if not self.is_classifier:
            (value,) = self._session.run([_VALUE], {_INPUT: X})
            return np.asarray(value, dtype=np.float64).reshape(-1), None
        label, probabilities = self._session.run([_LABEL, _PROBABILITIES], {_INPUT: X})
        assert self.classes is not None
        return self.classes.take(label, axis=0), np.asarray(probabilities, dtype=np.float64)

    def predict(self, rows: Any) -> NDArray[Any]:
        """What the scikit-learn model's predict returns for `rows`."""
        if not self.is_classifier:
            return self.run(rows)[0]
        X = self._checked(rows)
        (label,) = self._session.run([_LABEL], {_INPUT: X})
        assert self.classes is not None
        labels: NDArray[Any] = self.classes.take(label, axis=0)
        return labels

    def predict_proba(self, rows: Any) -> NDArray[np.float64]:
        """What the scikit-learn classifier's predict_proba returns for `rows`."""
        if not self.is_classifier:
            raise AttributeError("a regressor has no predict_proba")
        X = self._checked(rows)
        (probabilities,) = self._session.run([_PROBABILITIES], {_INPUT: X})
        return np.asarray(probabilities, dtype=np.float64)
