"""Cold imports of every function: each `functions/<name>/app.py` imported the way Lambda
imports it, in a fresh process per run.

    .venv/bin/python benchmarks/cold_start.py [--runs N] [--only auth,web]

Each run is a new interpreter whose sys.path starts with the function's folder and the
layer's code (as /var/task and /opt/python are on Lambda), with bytecode caches written and
read (PYTHONDONTWRITEBYTECODE unset; one unmeasured run first fills them). The import is
timed twice per function:

  local    as the tests and `creditml dev` run it: tracing disabled (no LAMBDA_TASK_ROOT)
  lambda   with Lambda's environment (LAMBDA_TASK_ROOT, AWS_LAMBDA_FUNCTION_NAME): the
           Powertools Tracer is enabled and patches what it traces, as it does on AWS

Prints a table of median and min milliseconds, and which heavy modules each import loaded.
`bench_cold_imports(runs)` returns the same numbers for benchmarks/run.py.
Not a test: numbers vary with the machine (target: auth <= 250 ms median). On a shared
machine the CPU columns (process time of the import) are steadier than wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
AUTH_TARGET_MS = 250.0
MODES = ("local", "lambda")
# Modules a function should not pay for unless it uses them.
HEAVY = (
    "sklearn",
    "scipy",
    "numpy",
    "onnxruntime",
    "joblib",
    "jinja2",
    "argon2",
    "cryptography",
    "pynamodb",
    "boto3",
    "botocore",
    "aws_xray_sdk",
    "requests",
)

PROBE = """
import gc, importlib, json, sys, time
function_dir, layer = sys.argv[1], sys.argv[2]
sys.path[:0] = [function_dir, layer]
started, cpu_started = time.perf_counter(), time.process_time()
importlib.import_module("app")
elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
clients = 0
if "botocore.client" in sys.modules:
    base = sys.modules["botocore.client"].BaseClient
    clients = sum(1 for thing in gc.get_objects() if isinstance(thing, base))
print(json.dumps({
    "seconds": elapsed,
    "cpu_seconds": cpu,
    "modules": len(sys.modules),
    "loaded": [name for name in json.loads(sys.argv[3]) if name in sys.modules],
    "aws_clients": clients,
}))
"""


def function_names(root: Path = ROOT) -> list[str]:
    return sorted(path.parent.name for path in (root / "functions").glob("*/app.py"))


def _environment(function_dir: Path, mode: str) -> dict[str, str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        # Lambda's own variables come from `mode` alone; coverage must not time itself.
        if key != "PYTHONDONTWRITEBYTECODE"
        and not key.startswith(("LAMBDA_", "AWS_LAMBDA_", "COVERAGE_", "_X_AMZN"))
    }
    environment.setdefault("AWS_REGION", "us-east-1")
    environment.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    environment["POWERTOOLS_METRICS_DISABLED"] = "true"
    if mode == "lambda":
        environment["LAMBDA_TASK_ROOT"] = str(function_dir)
        environment["AWS_LAMBDA_FUNCTION_NAME"] = function_dir.name
        environment["AWS_EXECUTION_ENV"] = "AWS_Lambda_python3.12"
        environment.pop("POWERTOOLS_TRACE_DISABLED", None)
    return environment


class ImportFailed(Exception):
    """The function's app.py raised on import (its last line of stderr is the message)."""


def import_once(name: str, mode: str, root: Path = ROOT) -> dict[str, Any]:
    """One fresh process importing function `name`'s app.py (of the tree at `root`):
    seconds, CPU seconds, modules, AWS clients."""
    function_dir = root / "functions" / name
    layer = root / "layers" / "common"
    done = subprocess.run(
        [PYTHON, "-c", PROBE, str(function_dir), str(layer), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        env=_environment(function_dir, mode),
        cwd=function_dir,
    )
    if done.returncode != 0:
        raise ImportFailed((done.stderr.strip().splitlines() or ["no output"])[-1])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(name: str, mode: str, runs: int, root: Path = ROOT) -> dict[str, Any]:
    try:
        import_once(name, mode, root)  # fills the bytecode caches; not counted
        samples = [import_once(name, mode, root) for _ in range(runs)]
    except ImportFailed as failure:
        return {"error": str(failure)}
    times = [sample["seconds"] * 1000 for sample in samples]
    cpu = [sample["cpu_seconds"] * 1000 for sample in samples]
    return {
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "runs_ms": times,
        # CPU time of the import: steadier than wall time on a shared machine.
        "cpu_median_ms": statistics.median(cpu),
        "modules": samples[-1]["modules"],
        "loaded": samples[-1]["loaded"],
        "aws_clients": samples[-1]["aws_clients"],
    }


def bench_cold_imports(
    runs: int = 5, names: list[str] | None = None, root: Path = ROOT
) -> dict[str, Any]:
    """Median/min import time of every function (or `names`), both modes, for run.py;
    `root` measures another checkout (e.g. `git archive` of an older commit)."""
    measured: dict[str, Any] = {}
    for name in names or function_names(root):
        for mode in MODES:
            measured[f"{name}:{mode}"] = measure(name, mode, runs, root)
    results: dict[str, Any] = {"cold_imports": measured}
    if "median_ms" in measured.get("auth:lambda", {}):
        # The headline keeps run.py's definition (bench_auth_import: tracing off).
        results["cold_auth_import_median_ms"] = measured["auth:local"]["median_ms"]
        results["cold_auth_import_lambda_median_ms"] = measured["auth:lambda"]["median_ms"]
    return results


def table(results: dict[str, Any]) -> str:
    measured = results["cold_imports"]
    names = sorted({key.split(":")[0] for key in measured})
    lines = [
        f"{'function':<18}{'local med':>10}{'min':>6}{'cpu':>6}{'lambda med':>12}{'min':>6}"
        f"{'cpu':>6}{'modules':>9}{'clients':>9}  heavy modules loaded (lambda)",
        f"{'':<18}{'':>10}{'':>6}{'':>6}{'':>12}{'':>6}{'':>6}{'L/λ':>9}{'L/λ':>9}",
    ]
    for name in names:
        local, lam = measured[f"{name}:local"], measured[f"{name}:lambda"]
        if "error" in local or "error" in lam:
            lines.append(f"{name:<18}import failed: {local.get('error') or lam.get('error')}")
            continue
        lines.append(
            f"{name:<18}{local['median_ms']:>10.0f}{local['min_ms']:>6.0f}"
            f"{local['cpu_median_ms']:>6.0f}{lam['median_ms']:>12.0f}{lam['min_ms']:>6.0f}"
            f"{lam['cpu_median_ms']:>6.0f}"
            f"{local['modules']:>5}/{lam['modules']:<4}{local['aws_clients']:>5}/{lam['aws_clients']:<3}"
            f"  {','.join(lam['loaded']) or '-'}"
        )
    for key, mode in (
        ("cold_auth_import_median_ms", "local"),
        ("cold_auth_import_lambda_median_ms", "lambda"),
    ):
        if key in results:
            met = results[key] <= AUTH_TARGET_MS
            lines.append(
                f"auth import ({mode}, median): {results[key]:.0f} ms, "
                f"target <= {AUTH_TARGET_MS:.0f} ms: {'met' if met else 'MISSED'}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per function")
    parser.add_argument("--only", default="", help="comma-separated function names")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="the tree whose functions/ and layers/ to time"
    )
    arguments = parser.parse_args(argv)
    names = [name for name in arguments.only.split(",") if name] or None
    results = bench_cold_imports(arguments.runs, names, arguments.root.resolve())
    print(json.dumps(results, indent=2) if arguments.json else table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
