"""The built artifacts run on their own: a fresh Python 3.12 that sees only the layers (and,
for the handlers, the AWS SDK the Lambda runtime provides) loads a real model and imports
every function. Sourceless bytecode, a trimmed folder or a missing dependency shows here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.build.conftest import Build, source_function_names

# Run in the child: only the given folders and the interpreter's own standard library are
# importable (-I: no environment, no user site; -S: no site-packages). Reports every loaded
# module that came from anywhere else, so an accidental import path cannot go unnoticed.
PRELUDE = """
import json, os, sys, sysconfig
ROOTS = json.loads(sys.argv[1])
sys.path[:0] = ROOTS

def foreign_modules():
    stdlib = tuple(os.path.join(sysconfig.get_paths()[k], "") for k in ("stdlib", "platstdlib"))
    allowed = tuple(os.path.join(root, "") for root in ROOTS)
    found = []
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None)
        if not origin:
            continue
        origin = os.path.abspath(origin)
        if origin.startswith(allowed):
            continue
        if origin.startswith(stdlib) and "site-packages" not in origin:
            continue
        found.append(f"{name}: {origin}")
    return found
"""

LOAD_AND_PREDICT = """
from creditml.models.inspection import inspect_model
from creditml.models.safe_loading import load_model

rows = json.loads(sys.argv[3])
results = {}
for path in sys.argv[2].split(os.pathsep):
    with open(path, "rb") as handle:
        model = load_model(handle.read())
    schema = inspect_model(model)
    results[os.path.basename(path)] = {
        "n_features": schema.n_features,
        "classes": schema.classes,
        "predictions": model.predict(rows).tolist(),
        "probabilities": model.predict_proba(rows).tolist(),
    }
import sklearn
results["sklearn"] = sklearn.__file__
results["foreign"] = foreign_modules()
results["aws"] = sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore"))
print(json.dumps(results))
"""

SERVE_GRAPH = """
from creditml.models.onnx_runtime import OnnxModel

rows = json.loads(sys.argv[3])
with open(sys.argv[2], "rb") as handle:
    model = OnnxModel.load(handle.read())
import numpy, onnxruntime
print(json.dumps({
    "predictions": model.predict(numpy.asarray(rows)).tolist(),
    "probabilities": model.predict_proba(numpy.asarray(rows)).tolist(),
    "onnxruntime": onnxruntime.__file__,
    "numpy": numpy.__file__,
    "ml": sorted(m for m in sys.modules if m.split(".")[0] in ("sklearn", "scipy", "joblib")),
    "foreign": foreign_modules(),
}))
"""

IMPORT_HANDLER = """
import importlib
app = importlib.import_module("app")
assert callable(app.handler), "app.handler is not callable"
print(json.dumps({"foreign": foreign_modules()}))
"""


def run_isolated(
    python: str, code: str, roots: list[Path], *args: str, cwd: Path
) -> dict[str, Any]:
    result = subprocess.run(
        [python, "-I", "-S", "-c", PRELUDE + code, json.dumps([str(r) for r in roots]), *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=cwd,
        # Nothing may reach AWS (or its metadata endpoint) while importing or predicting.
        env={"PATH": os.defpath, "AWS_EC2_METADATA_DISABLED": "true", "LANG": "C.UTF-8"},
    )
    assert result.returncode == 0, f"the isolated run failed:\n{result.stderr[-4000:]}"
    output: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return output


def test_the_built_layers_alone_load_and_run_a_real_model(
    build: Build, python312: str, tmp_path: Path
) -> None:
    features, labels = load_iris(return_X_y=True)
    models = {
        "forest.joblib": RandomForestClassifier(n_estimators=25, random_state=0),
        # Compressed: joblib's zlib path goes through the same allowlisting unpickler.
        "pipeline.joblib": make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
    }
    rows = features[::7]
    for name, model in models.items():
        model.fit(features, labels)
        joblib.dump(model, tmp_path / name, compress=3 if name.startswith("pipeline") else 0)
    paths = os.pathsep.join(str(tmp_path / name) for name in models)
    layers = [build.layers[name] for name in build.layers_of("PredictFunction")]

    results = run_isolated(
        python312, LOAD_AND_PREDICT, layers, paths, json.dumps(rows.tolist()), cwd=tmp_path
    )

    assert results.pop("foreign") == []
    assert results.pop("aws") == [], "loading a model must not need the AWS SDK"
    assert Path(results.pop("sklearn")).is_relative_to(build.layers["MlLayer"])
    for name, model in models.items():
        child = results[name]
        assert child["n_features"] == 4
        assert child["classes"] == [0, 1, 2]
        assert child["predictions"] == model.predict(rows).tolist()
        np.testing.assert_allclose(child["probabilities"], model.predict_proba(rows), rtol=1e-12)


def test_the_built_layers_serve_an_onnx_graph_without_scikit_learn(
    build: Build, python312: str, tmp_path: Path
) -> None:
    # The ONNX layer carries onnxruntime alone (--no-deps): numpy comes from the ML layer.
    from creditml.models.onnx_convert import to_onnx

    features, labels = load_iris(return_X_y=True)
    model = RandomForestClassifier(n_estimators=25, random_state=0).fit(features, labels)
    (tmp_path / "forest.onnx").write_bytes(to_onnx(model))
    rows = features[::7]
    layers = [build.layers[name] for name in build.layers_of("PredictFunction")]

    results = run_isolated(
        python312,
        SERVE_GRAPH,
        layers,
        str(tmp_path / "forest.onnx"),
        json.dumps(rows.tolist()),
        cwd=tmp_path,
    )

    assert results["foreign"] == []
    assert results["ml"] == [], "serving a graph must not import scikit-learn, scipy or joblib"
    assert Path(results["onnxruntime"]).is_relative_to(build.layers["OnnxLayer"])
    assert Path(results["numpy"]).is_relative_to(build.layers["MlLayer"])
    assert results["predictions"] == model.predict(rows).tolist()
    assert results["probabilities"] == model.predict_proba(rows).tolist()


@pytest.fixture(scope="session")
def runtime_sdk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the Lambda runtime adds to sys.path: the AWS SDK (here the dev venv's copy)."""
    folder = tmp_path_factory.mktemp("runtime")
    for package in ("boto3", "botocore", "s3transfer"):
        spec = importlib.util.find_spec(package)
        assert spec is not None, f"{package} is not installed in the dev venv"
        assert spec.origin is not None
        (folder / package).symlink_to(Path(spec.origin).parent)
    return folder


@pytest.mark.parametrize("function", source_function_names())
def test_each_function_imports_from_its_own_folder_and_layers_only(
    build: Build, python312: str, runtime_sdk: Path, tmp_path: Path, function: str
) -> None:
    # As Lambda orders them: the function's code, /opt/python (its layers), the runtime.
    roots = [
        build.functions[function],
        *(build.layers[name] for name in build.layers_of(function)),
        runtime_sdk,
    ]
    results = run_isolated(python312, IMPORT_HANDLER, roots, cwd=tmp_path)
    assert results["foreign"] == []
