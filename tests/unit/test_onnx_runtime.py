"""Serving an ONNX graph: never imports scikit-learn or scipy, and answers concurrent calls
exactly as serial ones."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier

from creditml.models.onnx_convert import to_onnx
from creditml.models.onnx_runtime import OnnxModel, estimate_nbytes

pytestmark = pytest.mark.unit

X_IRIS, Y_IRIS = load_iris(return_X_y=True)

SERVE = """
import json, sys
import numpy as np
from creditml.models.onnx_runtime import OnnxModel
served = OnnxModel.load(open(sys.argv[1], "rb").read())
rows = np.array(json.loads(sys.argv[2]))
labels, probabilities = served.run(rows)
print(json.dumps({
    "labels": labels.tolist(),
    "probabilities": probabilities.tolist(),
    "heavy": sorted(m for m in sys.modules if m.split(".")[0] in ("sklearn", "scipy", "onnx")),
}))
"""


def test_serving_a_graph_never_imports_sklearn_or_scipy(tmp_path: Path) -> None:
    # Given a graph converted here, where scikit-learn is loaded
    model = RandomForestClassifier(5, random_state=0).fit(X_IRIS, np.array(["a", "b", "c"])[Y_IRIS])
    graph = tmp_path / "model.onnx"
    graph.write_bytes(to_onnx(model))
    rows = X_IRIS[::10]

    # When a fresh process serves it
    result = subprocess.run(
        [sys.executable, "-c", SERVE, str(graph), json.dumps(rows.tolist())],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    served = json.loads(result.stdout)

    # Then it answered like the model, and neither scikit-learn, scipy nor onnx was imported
    assert served["heavy"] == []
    assert served["labels"] == model.predict(rows).tolist()
    assert served["probabilities"] == model.predict_proba(rows).tolist()


def test_concurrent_predictions_equal_serial_ones() -> None:
    model = GradientBoostingRegressor(n_estimators=20, random_state=0).fit(X_IRIS, Y_IRIS)
    served = OnnxModel.load(to_onnx(model))
    batches = [X_IRIS[i::7] + i * 1e-3 for i in range(28)]
    serial = [served.predict(batch).tobytes() for batch in batches]

    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(lambda b: served.predict(b).tobytes(), batches))

    assert concurrent == serial
    assert serial[0] == model.predict(batches[0]).tobytes()


def test_a_regressor_has_no_probabilities_and_counts_its_memory() -> None:
    model = GradientBoostingRegressor(n_estimators=5, random_state=0).fit(X_IRIS, Y_IRIS)
    graph = to_onnx(model)
    served = OnnxModel.load(graph)

    assert not served.has_probabilities
    with pytest.raises(AttributeError):
        served.predict_proba(X_IRIS)
    assert served.run(X_IRIS)[1] is None
    assert served.nbytes == estimate_nbytes(len(graph)) > len(graph)
