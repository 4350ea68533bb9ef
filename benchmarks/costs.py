"""Cost inputs (issue 15), run by benchmarks/run.py (`make bench`) or alone:

    .venv/bin/python benchmarks/costs.py

Measures what a 1-row prediction makes AWS bill, writes docs/costs_inputs.json and
regenerates docs/COSTS.md with scripts/cost_model.py (the arithmetic lives there):
  warm prediction     in-process moto, the predict function's real handler: the AWS calls
                      of one billed prediction (a hook on botocore's BaseClient._make_api_call
                      that also asks DynamoDB for ReturnConsumedCapacity=TOTAL), DynamoDB
                      units, request and response bytes; the handler's own time with the
                      billing write stubbed, minus the model's (median)
  cold prediction     the same container's caches dropped (a new container): S3 GETs, KMS
                      and Secrets Manager calls and DynamoDB read units of its first prediction
  model compute       a 100-tree RandomForestClassifier, 1-row predict + predict_proba:
                      scikit-learn, and ONNX Runtime (one intra-op thread) on the graph
                      creditml.models.onnx_convert.to_onnx makes of it
  peak memory         a fresh process importing the predict function and serving the forest
                      with each runtime (ru_maxrss)
moto reports no consumed capacity for TransactWriteItems, so units are computed from item
sizes by DynamoDB's rules (the document says which was used). The cold init time is the
cold-predict benchmark's (benchmarks/run.py) from this run or the last results.json.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results.json"
INPUTS = ROOT / "docs" / "costs_inputs.json"
PYTHON = sys.executable
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")

import numpy as np  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from reports import bench_aggregator_writes, in_process_aws  # noqa: E402
from stack import file_of  # noqa: E402

# Used only when this run has no measurement of its own: the figure (predict import +
# first prediction on main before issue 15).
COLD_INIT_MS_UNMEASURED = 1520.0
ASSUMPTIONS = {
    "dynamodb_round_trip_ms": 5,
    "cold_start_rate": 0.001,
    "model_working_set_mb": 64,
}
# UsageAggregatorFunction reads the ledger stream in batches of up to 100 (template.yaml);
# on a busy stream one invocation serves about 100 predictions.
AGGREGATOR_INVOCATIONS_PER_PREDICTION = 0.01
AGGREGATOR_DURATION_MS = 200
TRANSACTIONAL = {"TransactWriteItems", "TransactGetItems"}
CAPACITY_OPERATIONS = {
    "GetItem",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "Query",
    "Scan",
    "BatchGetItem",
    "BatchWriteItem",
    "TransactWriteItems",
    "TransactGetItems",
}


def _cost_model() -> Any:
    spec = importlib.util.spec_from_file_location("cost_model", ROOT / "scripts/cost_model.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cost_model"] = module
    spec.loader.exec_module(module)
    return module


# --- DynamoDB item sizes and units (developer guide: "Item sizes and formats") ---


def _number_size(text: str) -> int:
    digits = text.lstrip("-").replace(".", "").lstrip("0") or "0"
    return math.ceil(len(digits) / 2) + 1


def value_size(value: Mapping[str, Any]) -> int:
    """Bytes DynamoDB counts for one attribute value in wire format."""
    ((kind, inner),) = value.items()
    sizes: dict[str, Callable[[Any], int]] = {
        "S": lambda v: len(v.encode()),
        "N": _number_size,
        "B": lambda v: len(v),
        "BOOL": lambda v: 1,
        "NULL": lambda v: 1,
        "SS": lambda v: sum(len(s.encode()) for s in v),
        "NS": lambda v: sum(_number_size(n) for n in v),
        "BS": lambda v: sum(len(b) for b in v),
        "L": lambda v: 3 + sum(1 + value_size(item) for item in v),
        "M": lambda v: 3 + sum(1 + len(k.encode()) + value_size(item) for k, item in v.items()),
    }
    return sizes[kind](inner)


def item_size(item: Mapping[str, Any]) -> int:
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def write_units(size: int, transactional: bool) -> int:
    return math.ceil(max(size, 1) / 1024) * (2 if transactional else 1)


def read_units(size: int, consistent: bool, transactional: bool) -> float:
    units = math.ceil(max(size, 1) / 4096)
    if transactional:
        return 2.0 * units
    return float(units) if consistent else units / 2


# --- recording the AWS calls of one prediction ---


@contextmanager
def recording() -> Iterator[list[dict[str, Any]]]:
    """Every AWS call made inside, with its parameters and answer; DynamoDB calls are asked
    for ReturnConsumedCapacity=TOTAL."""
    from botocore.client import BaseClient

    calls: list[dict[str, Any]] = []
    original = BaseClient._make_api_call

    def record(self: Any, operation: str, params: Any) -> Any:
        service = self.meta.service_model.service_name
        if service == "dynamodb" and operation in CAPACITY_OPERATIONS:
            params = {**params, "ReturnConsumedCapacity": "TOTAL"}
        answer = original(self, operation, params)
        calls.append(
            {"service": service, "operation": operation, "params": params, "answer": answer}
        )
        return answer

    BaseClient._make_api_call = record  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        BaseClient._make_api_call = original  # type: ignore[method-assign]


def _stored(table: str, key: Mapping[str, Any]) -> Mapping[str, Any]:
    import boto3

    found: Mapping[str, Any] = (
        boto3.client("dynamodb")
        .get_item(TableName=table, Key=key, ConsistentRead=True)
        .get("Item", {})
    )
    return found


def _transact_write_units(params: Mapping[str, Any]) -> int:
    """A transaction's items at their sizes after it (an update is billed on the larger of
    before and after; these items grow, so after), two units per KB each."""
    units = 0
    for action in params["TransactItems"]:
        ((kind, body),) = action.items()
        size = (
            item_size(body["Item"])
            if kind == "Put"
            else item_size(_stored(body["TableName"], body["Key"]))
        )
        units += write_units(size, transactional=True)
    return units


def _units_of(call: Mapping[str, Any]) -> tuple[float, float]:
    """(write units, read units) of one DynamoDB call, computed from item sizes."""
    operation, params, answer = call["operation"], call["params"], call["answer"]
    consistent = bool(params.get("ConsistentRead"))
    if operation == "TransactWriteItems":
        return float(_transact_write_units(params)), 0.0
    if operation == "GetItem":
        return 0.0, read_units(item_size(answer.get("Item", {})), consistent, False)
    if operation in {"Query", "Scan"}:
        size = sum(item_size(item) for item in answer.get("Items", []))
        return 0.0, read_units(size, consistent, False)
    if operation == "TransactGetItems":
        sizes = [item_size(r.get("Item", {})) for r in answer.get("Responses", [])]
        return 0.0, sum(read_units(size, True, True) for size in sizes)
    if operation in {"PutItem", "UpdateItem", "DeleteItem"}:
        item = params.get("Item") or _stored(params["TableName"], params["Key"])
        return float(write_units(item_size(item), transactional=False)), 0.0
    return 0.0, 0.0


def dynamodb_units(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """Write and read units of the DynamoDB calls in `calls`: what DynamoDB reported when
    every call reported it, else computed from item sizes."""
    dynamodb = [call for call in calls if call["service"] == "dynamodb"]
    reported = [call["answer"].get("ConsumedCapacity") for call in dynamodb]
    computed = [_units_of(call) for call in dynamodb]
    return {
        "write_units": sum(w for w, _ in computed),
        "read_units": sum(r for _, r in computed),
        "reported_by_moto": reported,
        "units_method": "computed from item sizes by DynamoDB's rules (transactions 2x): "
        "moto reports no ConsumedCapacity for TransactWriteItems",
    }


def _count(calls: list[dict[str, Any]], service: str, operations: set[str] | None = None) -> int:
    return sum(
        1
        for call in calls
        if call["service"] == service and (operations is None or call["operation"] in operations)
    )


# --- the measurements ---


def _hundred_trees() -> tuple[RandomForestClassifier, np.ndarray]:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(600, 10))
    labels = rng.integers(0, 2, size=600)
    model = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1)
    return model.fit(features, labels), features[:1]


def _median_ms(action: Callable[[], Any], runs: int) -> float:
    for _ in range(20):
        action()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def _onnx_compute_ms(model: Any, row: np.ndarray, runs: int) -> tuple[float, str]:
    from creditml.models.onnx_convert import to_onnx
    from creditml.models.onnx_runtime import OnnxModel

    served = OnnxModel.load(to_onnx(model))  # what predict serves: our session options
    return _median_ms(lambda: served.run(row), runs), (
        "measured: OnnxModel.run (labels and probabilities, one session run, one intra-op "
        "thread, input checks included; median)"
    )


def bench_compute(runs: int = 300) -> dict[str, Any]:
    model, row = _hundred_trees()
    sklearn_ms = _median_ms(lambda: (model.predict(row), model.predict_proba(row)), runs)
    onnx_ms, onnx_how = _onnx_compute_ms(model, row, runs)
    return {
        "compute_ms": {"sklearn": sklearn_ms, "onnx": onnx_ms},
        "compute_how": {"sklearn": "measured: scikit-learn (median)", "onnx": onnx_how},
        "forest_bytes": len(file_of(model)),
    }


def _overhead_ms(setup: dict[str, Any], runs: int) -> float:
    """Handler time minus the model's, the billing write stubbed (its round trip on AWS is
    the stated assumption instead)."""
    from run import _call, _stubbed_billing_write

    model = setup["model"]
    row = [[0.1, -0.2, 0.3, 0.4]]
    matrix = np.asarray(row)
    with _stubbed_billing_write():
        handler = _median_ms(lambda: _call(setup, row), runs)
    own = _median_ms(lambda: (model.predict(matrix), model.predict_proba(matrix)), runs)
    return max(0.0, handler - own)


def bench_prediction(runs: int = 500) -> dict[str, Any]:
    """One billed warm prediction's and one cold prediction's AWS bill, in-process moto."""
    from run import _call, _warm_handler_setup

    from creditml.composition import forget_components

    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, 4))
    model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    row = [features[0].tolist()]
    with in_process_aws():
        setup = _warm_handler_setup(model) | {"model": model}
        for _ in range(20):
            _call(setup, row)
        with recording() as warm_calls:
            _call(setup, row)
        warm = dynamodb_units(warm_calls)  # sizes read back now, as the call left them
        request = json.dumps({"inputs": row}).encode()
        response = setup["handler"](
            setup["event"]
            | {
                "body": request.decode(),
                "headers": {**setup["event"]["headers"], "idempotency-key": uuid.uuid4().hex},
            },
            setup["context"],
        )
        forget_components()  # a new container: nothing cached
        with recording() as cold_calls:
            _call(setup, row)
        cold = dynamodb_units(cold_calls)
        overhead = _overhead_ms(setup, runs)
    return {
        "warm": {
            "handler_overhead_ms": overhead,
            "write_units": warm["write_units"],
            "read_units": warm["read_units"],
            "units_method": warm["units_method"],
            "reported_by_moto": warm["reported_by_moto"],
            "calls": [f"{c['service']}:{c['operation']}" for c in warm_calls],
            "request_bytes": len(request),
            "response_bytes": len(response["body"].encode()),
            "s3_puts": _count(warm_calls, "s3", {"PutObject"}),
        },
        "cold": {
            "calls": [f"{c['service']}:{c['operation']}" for c in cold_calls],
            "s3_gets": _count(cold_calls, "s3", {"GetObject"}),
            "kms_calls": _count(cold_calls, "kms"),
            "secrets_manager_calls": _count(cold_calls, "secretsmanager"),
            "read_units": cold["read_units"],
        },
    }


PEAK_PROBE = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))
runtime, path = sys.argv[2], sys.argv[3]
import numpy as np
row = np.zeros((1, 10))
if runtime == "sklearn":
    import joblib
    model = joblib.load(path)
    model.predict(row), model.predict_proba(row)
else:
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(open(path, "rb").read(), options)
    session.run(None, {session.get_inputs()[0].name: row})
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the (larger) parent
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(int(peak.split()[1]) / 1024)
"""


def bench_peak_memory() -> dict[str, Any]:
    """Peak RSS (MB) of a fresh process that imports the predict function and serves the
    forest with each runtime."""
    model, _ = _hundred_trees()
    peaks: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        files = {"sklearn": Path(folder) / "forest.joblib"}
        files["sklearn"].write_bytes(file_of(model))
        try:
            from creditml.models.onnx_convert import to_onnx

            files["onnx"] = Path(folder) / "forest.onnx"
            files["onnx"].write_bytes(to_onnx(model))
        except ImportError:
            pass
        for runtime, path in files.items():
            out = subprocess.run(
                [
                    PYTHON,
                    "-c",
                    PEAK_PROBE,
                    str(ROOT / "functions/predict/app.py"),
                    runtime,
                    str(path),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            peaks[runtime] = float(out.stdout.strip().splitlines()[-1])
    peaks.setdefault("onnx", peaks["sklearn"])
    return {
        "peak_rss_mb": peaks,
        "how": "measured: peak RSS (VmHWM) of a fresh process (predict function imported, "
        "forest loaded and served once)",
    }


def _usage_counters(previous: Mapping[str, Any], aggregator_memory_mb: int) -> dict[str, Any]:
    key = "aggregator_write_units_per_prediction"
    units = previous.get(key)
    how = "measured by benchmarks/reports.py (50 predictions/s, 200 accounts, 20 models)"
    if units is None:
        units = bench_aggregator_writes(seconds=20)[key]
        how = (
            "measured: benchmarks/reports.py's aggregator, 50 predictions/s over 200 "
            "accounts and 20 models, 20 s"
        )
    return {
        "write_units_per_prediction": units,
        "how": how,
        "invocations_per_prediction": AGGREGATOR_INVOCATIONS_PER_PREDICTION,
        "duration_ms": AGGREGATOR_DURATION_MS,
        "memory_mb": aggregator_memory_mb,
    }


def measure_inputs(previous: Mapping[str, Any]) -> dict[str, Any]:
    from creditml.devstack.template import Template

    functions = Template(ROOT / "template.yaml").functions
    prediction = bench_prediction()
    init = previous.get("cold_predict_first_prediction_median_ms")
    prediction["cold"]["init_ms"] = init if init is not None else COLD_INIT_MS_UNMEASURED
    prediction["cold"]["init_how"] = (
        "measured: benchmarks/run.py cold predict (fresh process, local stack, median of 5)"
        if init is not None
        else "NOT MEASURED here: the issue's figure on main, re-run make bench"
    )
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "load_average": os.getloadavg()[0],
        },
        "configured_memory_mb": functions["PredictFunction"].memory_mb,
        "assumptions": ASSUMPTIONS,
        **bench_compute(),
        **prediction,
        "memory": bench_peak_memory(),
        "usage_counters": _usage_counters(previous, functions["UsageAggregatorFunction"].memory_mb),
    }


def bench_costs(previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Measure, write docs/costs_inputs.json and docs/COSTS.md; the headline numbers for
    results.json. `previous`: this run's other results (else the last results.json)."""
    if previous is None:
        previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    inputs = measure_inputs(previous)
    INPUTS.write_text(json.dumps(inputs, indent=2, default=str) + "\n")
    model = _cost_model()
    model.DOC.write_text(model.render(inputs), encoding="utf-8")
    rate = inputs["assumptions"]["cold_start_rate"]
    results: dict[str, Any] = {}
    for runtime in model.RUNTIMES:
        size, total = model.cheapest(inputs, runtime, rate)
        configured = model.per_million(inputs, runtime, inputs["configured_memory_mb"], rate)
        results[f"cost_per_million_{runtime}"] = total
        results[f"cost_best_memory_mb_{runtime}"] = size
        results[f"cost_per_million_{runtime}_configured_memory"] = sum(configured.values())
        results[f"model_compute_ms_{runtime}"] = inputs["compute_ms"][runtime]
    results["dynamodb_write_units_per_prediction"] = inputs["warm"]["write_units"]
    results["kms_calls_per_cold_load"] = inputs["cold"]["kms_calls"]
    results["s3_gets_per_cold_load"] = inputs["cold"]["s3_gets"]
    return results


TARGETS: list[tuple[str, str, str, Callable[[float], bool], str]] = [
    (
        "$ per million 1-row predictions, ONNX (best memory)",
        "cost_per_million_onnx",
        "$",
        lambda v: v <= 3,
        "<= 3",
    ),
    (
        "  same, scikit-learn",
        "cost_per_million_sklearn",
        "$",
        lambda v: v <= 3,
        "<= 3",
    ),
    (
        "model compute, 100-tree forest, 1 row, ONNX",
        "model_compute_ms_onnx",
        "ms",
        lambda v: v <= 0.05,
        "<= 0.05",
    ),
    (
        "  same, scikit-learn",
        "model_compute_ms_sklearn",
        "ms",
        lambda v: True,
        "report",
    ),
]


def notes(results: dict[str, Any]) -> list[str]:
    return [
        f"(costs: cheapest memory ONNX {results['cost_best_memory_mb_onnx']} MB, scikit-learn "
        f"{results['cost_best_memory_mb_sklearn']} MB; at the template's memory "
        f"${results['cost_per_million_onnx_configured_memory']:.2f} / "
        f"${results['cost_per_million_sklearn_configured_memory']:.2f} per million; "
        f"{results['dynamodb_write_units_per_prediction']:g} DynamoDB write units per "
        f"prediction; docs/COSTS.md)"
    ]


def main() -> int:
    from run import quiet, record_alone

    with quiet():
        measured = bench_costs()
    record_alone(measured, TARGETS, notes(measured))
    return 0


if __name__ == "__main__":
    sys.exit(main())
