"""The benchmarks still run (`make bench` is not in CI, so nothing else would notice a
broken one): each measurement at a small size, in-process moto, with sane results."""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import ModuleType

import pytest

from creditml.composition import forget_components
from tests.conftest import ROOT, benchmark_module


@pytest.fixture
def restored_environment() -> Iterator[None]:
    """The benchmarks set this process up as a container (os.environ): undo it after."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
    forget_components()


@pytest.fixture
def reports() -> ModuleType:
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    return benchmark_module("reports")


@pytest.mark.usefixtures("restored_environment")
def test_the_warm_path_benchmark_runs_and_counts_one_dynamodb_call() -> None:
    results = benchmark_module("run").bench_warm_path(iterations=20)
    assert results["dynamodb_calls_per_warm_predict"] == 1
    assert results["warm_overhead_median_ms"] > 0


@pytest.mark.usefixtures("restored_environment")
def test_the_usage_report_benchmarks_run(reports: ModuleType) -> None:
    writes = reports.bench_aggregator_writes(rate=10, seconds=3, window=2)
    assert writes["aggregator_predictions"] == 30
    assert 1 < writes["aggregator_items_per_prediction"] <= 4
    latency = reports.bench_usage_latency(predictions=200, calls=2)
    assert latency["usage_counter_items_read"] == 5 * 30
    assert 0 < latency["usage_own_cost_day_median_ms"] <= latency["usage_latency_day_median_ms"]
    daily = reports.bench_daily_report(predictions=300)
    assert daily["daily_report_predictions"] == 300
    assert 0 < daily["daily_report_own_s"] <= daily["daily_report_s"]
