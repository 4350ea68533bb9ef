"""Dollars per million 1-row predictions on AWS list prices: writes docs/COSTS.md.

    .venv/bin/python scripts/cost_model.py           # docs/COSTS.md from docs/costs_inputs.json
    .venv/bin/python scripts/cost_model.py --check   # exit 1 when docs/COSTS.md is stale

The measured inputs (billed work per prediction, DynamoDB units, SDK calls per cold load,
model compute per runtime, memory footprint) are written to docs/costs_inputs.json by
benchmarks/costs.py, which `make bench` runs; this script is pure arithmetic over them and
the list prices below, so the document is reproducible without running a benchmark.
tests/unit/test_cost_model.py checks the arithmetic and that the committed document is what
this script writes from the committed inputs.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
INPUTS = ROOT / "docs" / "costs_inputs.json"
DOC = ROOT / "docs" / "COSTS.md"
COMMAND = ".venv/bin/python scripts/cost_model.py"

MILLION = 1_000_000
SECONDS_PER_MONTH = 730 * 3600  # AWS bills a month as 730 hours
# Lambda gives a function one full vCPU at 1,769 MB, in proportion below it; above it more
# vCPUs, which single-threaded Python and one intra-op ONNX thread do not use.
FULL_VCPU_MB = 1769
MEMORY_SIZES_MB = (128, 256, 512, 768, 1024, 1536, 1769, 2048, 3008)
TARGET_PER_MILLION = 3.0
RUNTIMES = ("onnx", "sklearn")
LINES = (
    "Lambda requests",
    "Lambda duration",
    "HTTP API",
    "DynamoDB",
    "usage counters",
    "KMS",
    "S3",
    "Secrets Manager",
)


@dataclass(frozen=True)
class Price:
    """A us-east-1 list price in dollars per `unit`, where it was checked."""

    dollars: float
    unit: str
    source: str
    verified: bool


PRICES: dict[str, Price] = {
    "lambda_request": Price(
        0.20 / MILLION, "request", "aws.amazon.com/lambda/pricing ($0.20 per 1M)", True
    ),
    "lambda_gb_s": Price(
        0.0000166667,
        "GB-second (x86, first 6 billion GB-s a month)",
        "aws.amazon.com/lambda/pricing; cloudchipr.com Lambda pricing breakdown",
        True,
    ),
    "http_api_request": Price(
        1.00 / MILLION,
        "request (first 300M a month; metered in 512 KB increments)",
        "docs.aws.amazon.com whitepaper, API Gateway private APIs, cost optimization",
        True,
    ),
    "dynamodb_wru": Price(
        0.625 / MILLION,
        "write request unit (on-demand, after the Nov 2024 cut)",
        "airbyte.com DynamoDB pricing (third party)",
        True,
    ),
    "dynamodb_rru": Price(
        0.125 / MILLION,
        "read request unit (on-demand)",
        "airbyte.com DynamoDB pricing (third party)",
        True,
    ),
    "kms_request": Price(
        0.03 / 10_000,
        "request (symmetric)",
        "aws.amazon.com/kms/pricing; wring.co KMS pricing guide",
        True,
    ),
    "s3_get": Price(0.0004 / 1000, "GET (S3 Standard)", "from memory, not verified", False),
    "s3_put": Price(0.005 / 1000, "PUT (S3 Standard)", "from memory, not verified", False),
    "secrets_manager_call": Price(0.05 / 10_000, "API call", "from memory, not verified", False),
    "snapstart_cache_gb_s": Price(
        0.0000015046,
        "GB-second of snapshot cached (Python; 3 h minimum per version)",
        "awsnegotiations.com (third party, May 2026); not on an AWS page we could read",
        False,
    ),
    "snapstart_restore_gb": Price(
        0.0001397998,
        "GB restored (Python)",
        "awsnegotiations.com (third party, May 2026); not on an AWS page we could read",
        False,
    ),
    "provisioned_gb_s": Price(
        0.0000041667,
        "GB-second provisioned (x86; 5-minute increments, no free tier)",
        "AWS price list rate codes quoted in public repositories; the AWS page names it",
        True,
    ),
    "provisioned_duration_gb_s": Price(
        0.0000097222,
        "GB-second of duration on provisioned environments (x86)",
        "AWS price list rate codes quoted in public repositories",
        True,
    ),
}


def price(name: str) -> float:
    return PRICES[name].dollars


def cpu_share(memory_mb: int) -> float:
    """The fraction of one vCPU a function of `memory_mb` gets."""
    return min(1.0, memory_mb / FULL_VCPU_MB)


def billed_ms(cpu_ms: float, wait_ms: float, memory_mb: int) -> int:
    """Billed duration: CPU-bound work stretched by the CPU share, waiting (AWS round trips)
    not, rounded up to the next millisecond as Lambda bills it."""
    return math.ceil(cpu_ms / cpu_share(memory_mb) + wait_ms)


def gb_seconds(ms: float, memory_mb: int) -> float:
    return ms / 1000 * memory_mb / 1024


def http_api_units(request_bytes: int, response_bytes: int) -> int:
    """HTTP API requests are metered in 512 KB increments of the larger message."""
    return max(1, math.ceil(max(request_bytes, response_bytes) / (512 * 1024)))


def per_million(
    inputs: Mapping[str, Any], runtime: str, memory_mb: int, cold_rate: float
) -> dict[str, float]:
    """Dollars per million 1-row predictions, by line, for `runtime` at `memory_mb` with a
    fraction `cold_rate` of them landing on a new environment (on-demand, no SnapStart)."""
    warm = inputs["warm"]
    cold = inputs["cold"]
    usage = inputs["usage_counters"]
    assumed = inputs["assumptions"]
    cpu_ms = warm["handler_overhead_ms"] + inputs["compute_ms"][runtime]
    duration = gb_seconds(
        billed_ms(cpu_ms, assumed["dynamodb_round_trip_ms"], memory_mb), memory_mb
    )
    init = gb_seconds(billed_ms(cold["init_ms"], 0, memory_mb), memory_mb)
    aggregator = usage["invocations_per_prediction"]
    aggregator_duration = gb_seconds(usage["duration_ms"], usage["memory_mb"])
    lines = {
        "Lambda requests": price("lambda_request"),
        "Lambda duration": (duration + cold_rate * init) * price("lambda_gb_s"),
        "HTTP API": http_api_units(warm["request_bytes"], warm["response_bytes"])
        * price("http_api_request"),
        "DynamoDB": warm["write_units"] * price("dynamodb_wru")
        + (warm["read_units"] + cold_rate * cold["read_units"]) * price("dynamodb_rru"),
        "usage counters": usage["write_units_per_prediction"] * price("dynamodb_wru")
        + aggregator * (price("lambda_request") + aggregator_duration * price("lambda_gb_s")),
        "KMS": cold_rate * cold["kms_calls"] * price("kms_request"),
        "S3": cold_rate * cold["s3_gets"] * price("s3_get") + warm["s3_puts"] * price("s3_put"),
        "Secrets Manager": cold_rate
        * cold["secrets_manager_calls"]
        * price("secrets_manager_call"),
    }
    return {line: dollars * MILLION for line, dollars in lines.items()}


def floor_mb(inputs: Mapping[str, Any], runtime: str) -> int:
    """The smallest memory size (64 MB steps) holding the runtime's measured peak and the
    stated model working set."""
    needed = (
        inputs["memory"]["peak_rss_mb"][runtime] + inputs["assumptions"]["model_working_set_mb"]
    )
    return max(128, math.ceil(needed / 64) * 64)


def cheapest(inputs: Mapping[str, Any], runtime: str, cold_rate: float) -> tuple[int, float]:
    """The memory size at or above the floor with the lowest total, and that total."""
    floor = floor_mb(inputs, runtime)
    sizes = [size for size in MEMORY_SIZES_MB if size >= floor] or [floor]
    totals = {size: sum(per_million(inputs, runtime, size, cold_rate).values()) for size in sizes}
    best = min(totals, key=lambda size: (totals[size], size))
    return best, totals[best]


def cold_start_options(inputs: Mapping[str, Any], environments: int = 1) -> dict[str, float]:
    """Monthly dollars of the predict function's cold-start options at its configured memory:
    SnapStart's cache for one published version, a restore per million cold starts, and
    `environments` provisioned environments around the clock."""
    memory_gb = inputs["configured_memory_mb"] / 1024
    return {
        "snapstart_cache_month": memory_gb * SECONDS_PER_MONTH * price("snapstart_cache_gb_s"),
        "snapstart_restore_per_million": memory_gb * MILLION * price("snapstart_restore_gb"),
        "provisioned_month": environments
        * memory_gb
        * SECONDS_PER_MONTH
        * price("provisioned_gb_s"),
    }


def _money(value: float) -> str:
    return f"${value:,.2f}" if value >= 0.995 else f"${value:.3f}"


def _breakdown(inputs: Mapping[str, Any], memory_mb: int, cold_rate: float) -> list[str]:
    rows = ["| line | " + " | ".join(f"{r} warm | {r} cold" for r in RUNTIMES) + " |"]
    rows.append("|---|" + "---:|" * (2 * len(RUNTIMES)))
    columns = [
        per_million(inputs, runtime, memory_mb, rate)
        for runtime in RUNTIMES
        for rate in (0.0, cold_rate)
    ]
    for line in LINES:
        rows.append(f"| {line} | " + " | ".join(_money(c[line]) for c in columns) + " |")
    totals = " | ".join(f"**{_money(sum(c.values()))}**" for c in columns)
    rows.append(f"| **total** | {totals} |")
    return rows


def _sweep(inputs: Mapping[str, Any], cold_rate: float) -> list[str]:
    rows = [
        "| memory MB | vCPU share | "
        + " | ".join(f"{r} billed ms | {r} $/M cold" for r in RUNTIMES)
        + " |",
        "|---:|---:|" + "---:|" * (2 * len(RUNTIMES)),
    ]
    wait = inputs["assumptions"]["dynamodb_round_trip_ms"]
    floors = {runtime: floor_mb(inputs, runtime) for runtime in RUNTIMES}
    for size in MEMORY_SIZES_MB:
        cells = []
        for runtime in RUNTIMES:
            cpu = inputs["warm"]["handler_overhead_ms"] + inputs["compute_ms"][runtime]
            total = _money(sum(per_million(inputs, runtime, size, cold_rate).values()))
            below = " (below floor)" if size < floors[runtime] else ""
            cells += [str(billed_ms(cpu, wait, size)), total + below]
        rows.append(f"| {size} | {cpu_share(size):.2f} | " + " | ".join(cells) + " |")
    return rows


def _verdicts(inputs: Mapping[str, Any], cold_rate: float) -> list[str]:
    lines = []
    for runtime in RUNTIMES:
        size, total = cheapest(inputs, runtime, cold_rate)
        met = "met" if total <= TARGET_PER_MILLION else "NOT met"
        lines.append(
            f"- **{runtime}**: cheapest at **{size} MB** (floor {floor_mb(inputs, runtime)} MB): "
            f"{_money(total)} per million with cold starts; target <= "
            f"${TARGET_PER_MILLION:.2f}: **{met}**."
        )
    configured = inputs["configured_memory_mb"]
    for runtime in RUNTIMES:
        total = sum(per_million(inputs, runtime, configured, cold_rate).values())
        lines.append(
            f"- At the template's {configured} MB, {runtime}: {_money(total)} per million "
            f"({'met' if total <= TARGET_PER_MILLION else 'NOT met'})."
        )
    return lines


def _drivers(inputs: Mapping[str, Any], cold_rate: float) -> list[str]:
    """The largest lines at the ONNX optimum, and what the total would be without the
    transactional write's extra units and the usage counters."""
    size, total = cheapest(inputs, "onnx", cold_rate)
    lines = per_million(inputs, "onnx", size, cold_rate)
    ranked = sorted(lines.items(), key=lambda item: -item[1])[:4]
    one_write = (inputs["warm"]["write_units"] - 1) * price("dynamodb_wru") * MILLION
    lean = total - lines["usage counters"] - one_write
    return [
        f"At {size} MB, ONNX: "
        + ", ".join(f"{line} {_money(value)} ({value / total:.0%})" for line, value in ranked)
        + ".",
        "",
        f"DynamoDB bills each item of a transaction at 2 write units per KB, a ConditionCheck "
        f"included, so the ledger's one TransactWriteItems costs "
        f"{inputs['warm']['write_units']:g} units; the usage counters add "
        f"{inputs['usage_counters']['write_units_per_prediction']:.2f} units per prediction at "
        f"the benchmark's traffic mix. With one 1 KB non-transactional write per prediction "
        f"and no per-prediction counter writes, the same prediction would cost {_money(lean)} "
        f"per million ({'within' if lean <= TARGET_PER_MILLION else 'still above'} the "
        f"${TARGET_PER_MILLION:.2f} target): the target is a question of the billing write's "
        "design, not of the model runtime.",
    ]


def _options(inputs: Mapping[str, Any], cold_rate: float) -> list[str]:
    options = cold_start_options(inputs)
    memory = inputs["configured_memory_mb"]
    restores = options["snapstart_restore_per_million"] * cold_rate
    return [
        f"For PredictFunction at {memory} MB (template.yaml), `ColdStartMode`:",
        "",
        "| mode | fixed per month | per million predictions | cold starts |",
        "|---|---:|---:|---|",
        f"| `snapstart` (default) | {_money(options['snapstart_cache_month'])} per published "
        f"version cached | {_money(restores)} of restores at the stated rate "
        f"({_money(options['snapstart_restore_per_million'])} per million restores) | restored "
        "from a snapshot: imports are not paid again |",
        f"| `provisioned` (1 environment) | {_money(options['provisioned_month'])} per "
        "environment, plus the same for AuthFunction's at its memory | duration at "
        f"${price('provisioned_duration_gb_s'):.10f}/GB-s instead of "
        f"${price('lambda_gb_s'):.10f} while within the provisioned environments | none "
        "until traffic exceeds them |",
        "| `none` | $0 | the cold column above (init billed as duration) | every new "
        "environment imports and loads |",
        "",
        "SnapStart and provisioned concurrency cannot both apply to one version (Lambda "
        "refuses it); the one `ColdStartMode` parameter makes that impossible to configure. "
        "With SnapStart, new environments after a deploy restore rather than import, so "
        "the init duration in the cold column is an upper bound for that mode.",
    ]


def _inputs_table(inputs: Mapping[str, Any]) -> list[str]:
    warm, cold, usage = inputs["warm"], inputs["cold"], inputs["usage_counters"]
    assumed, memory = inputs["assumptions"], inputs["memory"]
    rows = [
        "| input | value | how |",
        "|---|---:|---|",
        f"| handler time without the model and the AWS call, 1 row | "
        f"{warm['handler_overhead_ms']:.3f} ms | measured in-process (median) |",
    ]
    for runtime in RUNTIMES:
        rows.append(
            f"| model compute, 100-tree forest, 1-row predict + predict_proba, {runtime} | "
            f"{inputs['compute_ms'][runtime]:.4f} ms | {inputs['compute_how'][runtime]} |"
        )
    rows += [
        f"| DynamoDB round trip on AWS | {assumed['dynamodb_round_trip_ms']} ms | "
        "assumption (in-region, one TransactWriteItems) |",
        f"| DynamoDB write units per prediction | {warm['write_units']:g} | "
        f"{warm['units_method']} |",
        f"| DynamoDB read units per warm prediction | {warm['read_units']:g} | same |",
        f"| AWS calls per warm prediction | {', '.join(warm['calls']) or 'none'} | "
        "counted with a botocore hook |",
        f"| request / response bytes, 1 row | {warm['request_bytes']} / "
        f"{warm['response_bytes']} | measured |",
        f"| S3 PUTs per prediction | {warm['s3_puts']} | counted |",
        f"| cold load: S3 GETs, KMS calls, Secrets Manager calls | {cold['s3_gets']}, "
        f"{cold['kms_calls']}, {cold['secrets_manager_calls']} | counted on a new "
        "container's first prediction |",
        f"| cold load: DynamoDB read units | {cold['read_units']:g} | computed from item sizes |",
        f"| cold init (import + first prediction) | {cold['init_ms']:.0f} ms | "
        f"{cold['init_how']} |",
        f"| cold-start rate | 1 in {round(1 / assumed['cold_start_rate']):,} | assumption |",
        f"| usage counter write units per prediction | "
        f"{usage['write_units_per_prediction']:.3f} | {usage['how']} |",
        f"| aggregator invocations per prediction, duration, memory | "
        f"{usage['invocations_per_prediction']:g}, {usage['duration_ms']} ms, "
        f"{usage['memory_mb']} MB | assumption (BatchSize 100, busy stream) |",
    ]
    for runtime in RUNTIMES:
        rows.append(
            f"| peak memory, {runtime} runtime + 1 MB forest | "
            f"{memory['peak_rss_mb'][runtime]:.0f} MB | {memory['how']} |"
        )
    rows.append(
        f"| model working set above that | {assumed['model_working_set_mb']} MB | "
        "assumption (a few small models cached) |"
    )
    return rows


def _prices_table() -> list[str]:
    rows = ["| price | dollars | per | source |", "|---|---:|---|---|"]
    for name, entry in PRICES.items():
        mark = "" if entry.verified else " (**unverified**)"
        rows.append(f"| {name} | {entry.dollars:.10g} | {entry.unit} | {entry.source}{mark} |")
    return rows


def render(inputs: Mapping[str, Any]) -> str:
    """The whole of docs/COSTS.md for `inputs`."""
    rate = inputs["assumptions"]["cold_start_rate"]
    memory = inputs["configured_memory_mb"]
    parts = [
        "# Costs: dollars per million 1-row predictions",
        "",
        f"<!-- Generated by `{COMMAND}` from docs/costs_inputs.json (written by "
        "benchmarks/costs.py in `make bench`). Do not edit by hand. -->",
        "",
        "AWS list prices, us-east-1, x86, no free tier. A prediction is one HTTP API request to "
        "PredictFunction for one row of a 100-tree RandomForest, charged one debit. "
        '"warm" is a prediction on an environment that has the model cached; "cold" adds, at '
        f"the stated rate of 1 in {round(1 / rate):,}, a new environment's init and its model "
        "load (on-demand, no SnapStart). Measured on "
        f"{inputs['machine']['cpus']} shared CPUs (load average "
        f"{inputs['machine']['load_average']:.1f} at the time), Python "
        f"{inputs['machine']['python']}: times there are upper bounds for a quiet Lambda vCPU.",
        "",
        "## Verdict",
        "",
        *_verdicts(inputs, rate),
        "",
        "## What drives it",
        "",
        *_drivers(inputs, rate),
        "",
        f"## Breakdown at the template's {memory} MB",
        "",
        *_breakdown(inputs, memory, rate),
        "",
        "## Across memory sizes",
        "",
        "CPU-bound work (the handler, the model, the init) takes its measured time at a full "
        f"vCPU and stretches by {FULL_VCPU_MB} / memory below {FULL_VCPU_MB} MB; the DynamoDB "
        "round trip does not. Sizes below a runtime's floor cannot hold it with its models.",
        "",
        *_sweep(inputs, rate),
        "",
        "## Cold-start options (`ColdStartMode` in template.yaml)",
        "",
        *_options(inputs, rate),
        "",
        "## Inputs",
        "",
        *_inputs_table(inputs),
        "",
        "## Prices",
        "",
        *_prices_table(),
        "",
    ]
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    text = render(json.loads(INPUTS.read_text(encoding="utf-8")))
    if "--check" in argv:
        if DOC.read_text(encoding="utf-8") != text:
            sys.stderr.write(f"{DOC.relative_to(ROOT)} is stale: run {COMMAND}\n")
            return 1
        return 0
    DOC.write_text(text, encoding="utf-8")
    sys.stdout.write(f"wrote {DOC.relative_to(ROOT)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
