"""What importing a function costs it: each `functions/<name>/app.py` imported in a fresh
process, as Lambda imports it (the function's folder and the layer first on sys.path).

Assertions on what is imported and made, never on time (the times: benchmarks/cold_start.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "common"
# A trace header as Lambda sets it for a sampled invocation.
TRACE_HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"

# The ML stack belongs to predict and register_model only; the X-Ray SDK is not needed
# where tracing is off (outside Lambda its recorder creates AWS clients of its own).
NEVER = ("sklearn", "scipy", "numpy", "onnxruntime", "onnx", "joblib", "aws_xray_sdk")
ALSO_NEVER = {
    "auth": ("jinja2",),
    "billing": ("jinja2",),
    "docs": ("jinja2",),
    "models": ("jinja2",),
    "reports": ("jinja2",),
    "usage_aggregator": ("jinja2", "fastapi"),
    "usage_report": ("jinja2", "fastapi"),
    "expire_uploads": ("jinja2", "fastapi"),
    "web": (),
}

IMPORT = """
import gc, importlib, json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
importlib.import_module("app")
clients = 0
if "botocore.client" in sys.modules:
    base = sys.modules["botocore.client"].BaseClient
    clients = sum(1 for thing in gc.get_objects() if isinstance(thing, base))
print(json.dumps({"modules": sorted(sys.modules), "aws_clients": clients}))
"""

# After the import, one AWS SDK call (stubbed: no network) made as the handler would make it,
# with every entity the X-Ray recorder sends captured instead of sent to the daemon.
TRACED_CALL = """
import importlib, json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
importlib.import_module("app")
import botocore.client, botocore.httpsession, botocore.session
from botocore.stub import Stubber
from aws_xray_sdk.core import xray_recorder

sent = []

class Capture:
    def send_entity(self, entity):
        sent.append(json.loads(entity.serialize()))

    def set_daemon_address(self, address):
        pass

xray_recorder.configure(emitter=Capture())
client = botocore.session.get_session().create_client(
    "dynamodb", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s"
)
with Stubber(client) as stub:
    stub.add_response("list_tables", {"TableNames": []})
    client.list_tables()
print(json.dumps({
    "modules": sorted(sys.modules),
    "botocore_patched": hasattr(botocore.client, "_xray_enabled"),
    "pynamodb_patched": hasattr(botocore.httpsession, "_xray_enabled"),
    "sent": [(entity.get("namespace"), entity["name"]) for entity in sent],
}))
"""


def _run(script: str, function: str, environment: dict[str, str]) -> dict[str, Any]:
    folder = ROOT / "functions" / function
    result = subprocess.run(
        [sys.executable, "-c", script, str(folder), str(LAYER)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=folder,
        env=environment,
    )
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


def _outside_lambda() -> dict[str, str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LAMBDA_", "AWS_LAMBDA_", "_X_AMZN", "COVERAGE_"))
    }
    environment.pop("POWERTOOLS_TRACE_DISABLED", None)
    return environment | {"AWS_REGION": "us-east-1", "POWERTOOLS_METRICS_DISABLED": "true"}


def _in_lambda(function: str) -> dict[str, str]:
    return _outside_lambda() | {
        "LAMBDA_TASK_ROOT": str(ROOT / "functions" / function),
        "AWS_LAMBDA_FUNCTION_NAME": function,
        "_X_AMZN_TRACE_ID": TRACE_HEADER,
    }


def _loaded(modules: list[str], packages: tuple[str, ...]) -> list[str]:
    return sorted({name.split(".")[0] for name in modules} & set(packages))


@pytest.mark.parametrize("function", sorted(ALSO_NEVER))
def test_importing_a_function_loads_only_what_it_serves(function: str) -> None:
    # Given a fresh process outside Lambda (tests, `creditml dev`: tracing off)
    # When it imports the function as Lambda would
    imported = _run(IMPORT, function, _outside_lambda())

    # Then neither the ML stack, nor the X-Ray SDK, nor what the function never uses is
    # loaded, and no AWS client exists yet (clients are made on first use)
    assert _loaded(imported["modules"], NEVER + ALSO_NEVER[function]) == []
    assert imported["aws_clients"] == 0


def test_in_lambda_the_aws_sdk_calls_are_traced_and_nothing_else_is_patched() -> None:
    # Given Lambda's environment (tracing on) and a sampled invocation's trace header
    # When the auth function is imported and then makes an AWS SDK call
    traced = _run(TRACED_CALL, "auth", _in_lambda("auth"))

    # Then the call was recorded as an AWS subsegment: the SDKs were patched at import,
    # before the first call
    assert traced["botocore_patched"]
    assert traced["pynamodb_patched"]
    assert ("aws", "dynamodb") in [tuple(entity) for entity in traced["sent"]]
    # ...and only the SDKs: no other library was imported to be patched (patch_all would
    # import and patch sqlite3, http.client's tracer, requests, httpx, ...)
    patches = sorted(
        name
        for name in traced["modules"]
        if name.startswith("aws_xray_sdk.ext.") and name.endswith(".patch")
    )
    assert patches == ["aws_xray_sdk.ext.botocore.patch", "aws_xray_sdk.ext.pynamodb.patch"]
    assert _loaded(traced["modules"], ("sqlite3", "requests", "httpx")) == []
