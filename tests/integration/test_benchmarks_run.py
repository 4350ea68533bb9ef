"""The benchmarks still run (`make bench` is not in CI, so nothing else would notice a
broken one): each measurement at a small size, in a process of its own (a benchmark sets
its process up as a Lambda container: environment, handlers, loggers), with sane results."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.conftest import ROOT

SMALL_RUN = """
import json, sys
sys.path.insert(0, "benchmarks")
import reports, run
results = run.bench_warm_path(iterations=20)
results |= reports.bench_aggregator_writes(rate=10, seconds=3, window=2)
results |= reports.bench_usage_latency(predictions=200, calls=2)
results |= reports.bench_daily_report(predictions=300)
print("RESULTS " + json.dumps(results))
"""


WEB_RUN = """
import json, sys
sys.path.insert(0, "benchmarks")
import web
print("RESULTS " + json.dumps(web.bench_web(renders=3, entries=6)))
"""


def _small_run(script: str = SMALL_RUN) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("RESULTS ")]
    results: dict[str, Any] = json.loads(line.removeprefix("RESULTS "))
    return results


def test_every_benchmark_runs_at_a_small_size() -> None:
    results = _small_run()
    assert results["dynamodb_calls_per_warm_predict"] == 1
    assert results["warm_overhead_median_ms"] > 0
    # The forest is served by its ONNX graph (asserted by the benchmark), in one DynamoDB call.
    assert results["dynamodb_calls_per_warm_onnx_predict"] == 1
    assert results["warm_onnx_forest_compute_median_ms"] > 0
    assert results["aggregator_predictions"] == 30
    assert 1 < results["aggregator_items_per_prediction"] <= 4
    assert results["usage_counter_items_read"] == 5 * 30
    assert 0 < results["usage_own_cost_day_median_ms"] <= results["usage_latency_day_median_ms"]
    assert results["daily_report_predictions"] == 300
    assert 0 < results["daily_report_own_s"] <= results["daily_report_s"]


def test_the_web_benchmark_runs_at_a_small_size() -> None:
    results = _small_run(WEB_RUN)
    for page in ("account", "model"):
        total = results[f"web_{page}_render_median_ms"]
        assert 0 < results[f"web_{page}_render_own_median_ms"] <= total
        assert 0 < results[f"web_{page}_render_jinja_median_ms"] <= total
        assert results[f"web_{page}_render_aws_calls"] >= 1
    # Sizes do not depend on the machine: the UI's pages stay within the budget.
    for page in ("account", "model", "usage"):
        assert 5 < results[f"web_{page}_page_kb"] <= 250
        assert {"html", "/ui/static/app.css", "/ui/static/app.js"} <= {
            name.split("?")[0] for name in results[f"web_{page}_page_bytes"]
        }
    assert results["web_foreign_url_count"] == 0
    assert results["web_docs_foreign_urls"] == []
    assert results["web_docs_page_kb"] > 250  # Swagger UI, vendored: reported, no target
