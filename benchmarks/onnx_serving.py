"""ONNX serving numbers for issue 15: a 100-tree RandomForestClassifier (iris) served by
OnnxModel vs scikit-learn, the exactness gate's time, session memory per graph byte (the
basis of OnnxModel.nbytes), and which zoo families the gate serves by ONNX.

    .venv/bin/python benchmarks/onnx_serving.py

Not a test: numbers vary with the machine (target: <= 50 us per 1-row predict).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from creditml.models.inspection import inspect_model
from creditml.models.onnx_convert import to_onnx
from creditml.models.onnx_gate import decide_runtime
from creditml.models.onnx_runtime import OnnxModel, estimate_nbytes

X_IRIS, Y_IRIS = load_iris(return_X_y=True)
X_DIABETES, Y_DIABETES = load_diabetes(return_X_y=True)


def per_call_us(call: Callable[[], Any], seconds: float = 1.0) -> float:
    for _ in range(20):
        call()
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        call()
        runs += 1
    return (time.perf_counter() - started) / runs * 1e6


SESSIONS = r"""
import gc, os, sys
import numpy as np
from creditml.models.onnx_runtime import OnnxModel
def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
graph, copies = open(sys.argv[1], "rb").read(), int(sys.argv[2])
OnnxModel.load(graph).run(np.zeros((1, OnnxModel.load(graph).n_features)))  # ORT's own warm-up
gc.collect()
before = rss()
sessions = [OnnxModel.load(graph) for _ in range(copies)]
for session in sessions:
    session.run(np.zeros((1, session.n_features)))
print((rss() - before) / copies)
"""


def session_memory(graph: bytes) -> float:
    """RSS growth per session (bytes), over several sessions of `graph` in a fresh process."""
    with tempfile.NamedTemporaryFile(suffix=".onnx") as file:
        file.write(graph)
        file.flush()
        copies = "20" if len(graph) < 1_000_000 else "5"
        done = subprocess.run(
            [sys.executable, "-c", SESSIONS, file.name, copies],
            capture_output=True,
            text=True,
            check=True,
        )
    return float(done.stdout)


def forest_row() -> dict[str, Any]:
    forest = RandomForestClassifier(100, random_state=0).fit(X_IRIS, Y_IRIS)
    graph = to_onnx(forest)
    served = OnnxModel.load(graph)
    row = X_IRIS[:1].copy()
    started = time.perf_counter()
    decision = decide_runtime(forest, inspect_model(forest))
    gate_s = time.perf_counter() - started
    return {
        "onnx_run_us": per_call_us(lambda: served.run(row)),
        "onnx_two_calls_us": per_call_us(lambda: (served.predict(row), served.predict_proba(row))),
        "sklearn_us": per_call_us(lambda: (forest.predict(row), forest.predict_proba(row)), 2.0),
        "graph_bytes": len(graph),
        "nbytes": served.nbytes,
        "gate_s": gate_s,
        "gate_rows": decision.rows_checked,
        "runtime": decision.runtime,
    }


def memory_rows() -> list[tuple[str, int, float]]:
    models = {
        "RF(10) iris": RandomForestClassifier(10, random_state=0).fit(X_IRIS, Y_IRIS),
        "RF(100) iris": RandomForestClassifier(100, random_state=0).fit(X_IRIS, Y_IRIS),
        "GB(100) iris": GradientBoostingClassifier(random_state=0).fit(X_IRIS, Y_IRIS),
        "RF(100) diabetes": RandomForestRegressor(100, random_state=0).fit(X_DIABETES, Y_DIABETES),
        "ET(300) diabetes": ExtraTreesRegressor(300, random_state=0).fit(X_DIABETES, Y_DIABETES),
    }
    rows = []
    for name, model in models.items():
        graph = to_onnx(model)
        rows.append((name, len(graph), session_memory(graph)))
    return rows


ZOO: list[tuple[str, Any, Any, Any]] = [
    ("DecisionTreeClassifier", DecisionTreeClassifier(random_state=0), X_IRIS, Y_IRIS),
    ("DecisionTreeRegressor", DecisionTreeRegressor(random_state=0), X_DIABETES, Y_DIABETES),
    ("RandomForestClassifier", RandomForestClassifier(50, random_state=0), X_IRIS, Y_IRIS),
    ("RandomForestRegressor", RandomForestRegressor(50, random_state=0), X_DIABETES, Y_DIABETES),
    ("ExtraTreesClassifier", ExtraTreesClassifier(50, random_state=0), X_IRIS, Y_IRIS),
    ("ExtraTreesRegressor", ExtraTreesRegressor(50, random_state=0), X_DIABETES, Y_DIABETES),
    (
        "GradientBoostingClassifier 2",
        GradientBoostingClassifier(random_state=0),
        X_IRIS,
        Y_IRIS > 1,
    ),
    ("GradientBoostingClassifier 3", GradientBoostingClassifier(random_state=0), X_IRIS, Y_IRIS),
    (
        "GradientBoostingRegressor",
        GradientBoostingRegressor(random_state=0),
        X_DIABETES,
        Y_DIABETES,
    ),
]


def main() -> None:
    forest = forest_row()
    print("100-tree RandomForestClassifier (iris), 1-row predict")
    print(f"  OnnxModel.run (labels + probabilities): {forest['onnx_run_us']:8.1f} us")
    print(f"  OnnxModel.predict + predict_proba:      {forest['onnx_two_calls_us']:8.1f} us")
    print(f"  sklearn predict + predict_proba:        {forest['sklearn_us']:8.1f} us")
    print(f"  graph {forest['graph_bytes']} bytes, nbytes estimate {forest['nbytes']}")
    print(
        f"  gate: {forest['gate_s']:.2f} s over {forest['gate_rows']} rows -> {forest['runtime']}"
    )
    print()
    print(f"{'graph':<18} {'bytes':>10} {'RSS/session':>12} {'per byte':>9} {'estimate':>10}")
    for name, size, grown in memory_rows():
        print(
            f"{name:<18} {size:>10} {grown:>12.0f} {grown / size:>9.2f} {estimate_nbytes(size):>10}"
        )
    print()
    print(f"{'zoo model':<30} {'runtime':<8} {'rows':>6} {'gate s':>7}  reason")
    for name, model, X, y in ZOO:
        model.fit(X, y)
        started = time.perf_counter()
        decision = decide_runtime(model, inspect_model(model))
        took = time.perf_counter() - started
        print(
            f"{name:<30} {decision.runtime:<8} {decision.rows_checked:>6} {took:>7.2f}  "
            f"{decision.reason or ''}"
        )


if __name__ == "__main__":
    main()
