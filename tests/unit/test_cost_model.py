"""scripts/cost_model.py: the arithmetic on known inputs, and docs/COSTS.md is what the script
writes from the committed docs/costs_inputs.json (no timing here: benchmarks/costs.py
measures)."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.unit


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cost_model", ROOT / "scripts" / "cost_model.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cost_model"] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


cost_model = _load()

# Round numbers chosen so every line is checkable by hand.
KNOWN: dict[str, Any] = {
    "machine": {"cpus": 2, "python": "3.12.1", "load_average": 0.5},
    "configured_memory_mb": 1024,
    "assumptions": {
        "dynamodb_round_trip_ms": 5,
        "cold_start_rate": 0.001,
        "model_working_set_mb": 64,
    },
    "compute_ms": {"sklearn": 10.0, "onnx": 0.0},
    "compute_how": {"sklearn": "given", "onnx": "given"},
    "warm": {
        "handler_overhead_ms": 0.5,
        "write_units": 2,
        "read_units": 0,
        "units_method": "given",
        "calls": ["dynamodb:TransactWriteItems"],
        "request_bytes": 100,
        "response_bytes": 200,
        "s3_puts": 0,
    },
    "cold": {
        "s3_gets": 1,
        "kms_calls": 2,
        "secrets_manager_calls": 1,
        "read_units": 2,
        "init_ms": 1000.0,
        "init_how": "given",
    },
    "usage_counters": {
        "write_units_per_prediction": 0.0,
        "how": "given",
        "invocations_per_prediction": 0.0,
        "duration_ms": 0,
        "memory_mb": 128,
    },
    "memory": {"peak_rss_mb": {"sklearn": 200.0, "onnx": 130.0}, "how": "given"},
}


@pytest.mark.parametrize(
    ("cpu_ms", "wait_ms", "memory_mb", "billed"),
    [
        (0.5, 5, 1769, 6),  # full vCPU: 5.5 ms rounds up to 6
        (0.5, 5, 3008, 6),  # more memory, no faster single thread
        (10.0, 5, 1024, 23),  # 10 * 1769 / 1024 = 17.27 + 5 -> 23
        (1.0, 0, 128, 14),  # 1769 / 128 = 13.8 -> 14
    ],
)
def test_billed_duration_stretches_cpu_work_below_a_full_vcpu(
    cpu_ms: float, wait_ms: float, memory_mb: int, billed: int
) -> None:
    assert cost_model.billed_ms(cpu_ms, wait_ms, memory_mb) == billed


@pytest.mark.parametrize(
    ("request_bytes", "response_bytes", "units"),
    [(100, 200, 1), (512 * 1024, 10, 1), (512 * 1024 + 1, 10, 2), (10, 1024 * 1024, 2)],
)
def test_http_api_meters_512_kb_increments(
    request_bytes: int, response_bytes: int, units: int
) -> None:
    assert cost_model.http_api_units(request_bytes, response_bytes) == units


def test_warm_lines_in_dollars_per_million() -> None:
    lines = cost_model.per_million(KNOWN, "onnx", 1024, 0.0)
    # 0.5 ms CPU at 1024 MB -> 0.864 ms + 5 ms wait -> 6 ms billed; 0.006 s * 1 GB
    assert lines["Lambda duration"] == pytest.approx(0.006 * 0.0000166667 * 1e6)
    assert lines["Lambda requests"] == pytest.approx(0.20)
    assert lines["HTTP API"] == pytest.approx(1.00)
    assert lines["DynamoDB"] == pytest.approx(2 * 0.625)
    assert (lines["KMS"], lines["S3"], lines["Secrets Manager"]) == (0, 0, 0)
    assert sum(lines.values()) == pytest.approx(0.20 + 0.100 + 1.00 + 1.25, abs=1e-3)


def test_cold_starts_add_init_and_model_load_at_their_rate() -> None:
    warm = cost_model.per_million(KNOWN, "onnx", 1024, 0.0)
    cold = cost_model.per_million(KNOWN, "onnx", 1024, 0.001)
    # init 1000 ms * 1769 / 1024 -> 1728 ms billed, at 1 GB, once per 1,000 predictions
    init = 1.728 * 0.0000166667 * 1e6 / 1000
    assert cold["Lambda duration"] - warm["Lambda duration"] == pytest.approx(init)
    assert cold["KMS"] == pytest.approx(2 * 3.0 / 1000)  # $0.03 per 10,000 = $3 per million
    assert cold["S3"] == pytest.approx(0.40 / 1000)
    assert cold["Secrets Manager"] == pytest.approx(5.0 / 1000)
    assert cold["DynamoDB"] - warm["DynamoDB"] == pytest.approx(2 * 0.125 / 1000)


def test_cheapest_memory_respects_the_floor() -> None:
    # onnx: 130 + 64 = 194 MB -> floor 256; sklearn: 264 -> 320, so 512 is its first size
    assert cost_model.floor_mb(KNOWN, "onnx") == 256
    assert cost_model.floor_mb(KNOWN, "sklearn") == 320
    size, total = cost_model.cheapest(KNOWN, "sklearn", 0.0)
    assert size >= 320
    for other in cost_model.MEMORY_SIZES_MB:
        if other >= 320:
            assert total <= sum(cost_model.per_million(KNOWN, "sklearn", other, 0.0).values())


def test_cold_start_option_prices_per_month() -> None:
    options = cost_model.cold_start_options(KNOWN)  # 1 GB, 730 h
    assert options["snapstart_cache_month"] == pytest.approx(2_628_000 * 0.0000015046)
    assert options["snapstart_restore_per_million"] == pytest.approx(1e6 * 0.0001397998)
    assert options["provisioned_month"] == pytest.approx(2_628_000 * 0.0000041667)


def test_the_verdict_follows_the_target() -> None:
    cheap = copy.deepcopy(KNOWN)
    dear = copy.deepcopy(KNOWN)
    dear["warm"]["write_units"] = 6  # + $2.50 per million: above $3
    assert "**met**" in cost_model.render(cheap).split("## What drives it")[0]
    assert "**NOT met**" in cost_model.render(dear).split("## What drives it")[0]


def test_unverified_prices_are_marked_in_the_document() -> None:
    text = cost_model.render(KNOWN)
    for name, entry in cost_model.PRICES.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
        assert ("**unverified**" in row) is not entry.verified


def test_committed_costs_doc_is_what_the_script_generates() -> None:
    inputs = json.loads((ROOT / "docs" / "costs_inputs.json").read_text(encoding="utf-8"))
    committed = (ROOT / "docs" / "COSTS.md").read_text(encoding="utf-8")
    assert committed == cost_model.render(inputs), "run: .venv/bin/python scripts/cost_model.py"
    assert "Generated by `.venv/bin/python scripts/cost_model.py`" in committed
