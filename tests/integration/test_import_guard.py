"""The functions without the ML layer never load the ML stack (it is not in their layers),
and the predict function's import loads none of scikit-learn, scipy or joblib: only the
versions scikit-learn serves import it, when one is first loaded."""

from __future__ import annotations

import subprocess
import sys

import pytest

from creditml.devstack.template import Template

HEAVY = ("sklearn", "scipy", "numpy", "joblib")
PROBE = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("probe", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
assert callable(module.handler)
print(",".join(sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[2].split(","))))
"""


@pytest.mark.parametrize(
    "function",
    [
        "AuthFunction",
        "BillingFunction",
        "DocsFunction",
        "ModelsFunction",
        "ExpireUploadsFunction",
        "WebFunction",
    ],
)
def test_function_import_loads_no_ml_libraries(template: Template, function: str) -> None:
    path = template.functions[function].module_path
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), ",".join(HEAVY)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip() == ""


def test_the_predict_function_imports_onnx_runtime_not_scikit_learn(template: Template) -> None:
    path = template.functions["PredictFunction"].module_path
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), "sklearn,scipy,joblib,onnxruntime"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip().split(",")[0] == "onnxruntime"
    assert {name.split(".")[0] for name in result.stdout.strip().split(",")} == {"onnxruntime"}


def test_probe_detects_a_heavy_import() -> None:
    # Guard the guard: the same probe reports a module that does import a heavy library.
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys; print(','.join(m for m in sys.modules if m == 'json'))",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip() == "json"


def test_only_model_loading_functions_attach_the_ml_layer(template: Template) -> None:
    with_ml = {
        name
        for name, resource in template.resources_of("AWS::Serverless::Function").items()
        if {"Ref": "MlLayer"} in resource["Properties"].get("Layers", [])
    }
    assert with_ml == {"RegisterModelFunction", "PredictFunction"}
