"""Python client benchmarks (issue 13), run by benchmarks/run.py (`make bench`) or alone:

  .venv/bin/python benchmarks/python_client.py

client overhead       Client.predict against a raw httpx POST of the same request, both
                      through one in-memory transport answering a real receipt body (no
                      network, no server: the difference is the client's own work: the
                      Idempotency-Key, headers, retry bookkeeping, JSON, error mapping),
                      medians of interleaved calls                    target <= 0.2 ms
download + load       a ~50 MB forest published on a local stack of its own; its owner's
                      Client.load_model on a registered device, over HTTP: cold (empty
                      cache: the sealed part from the API and the 50 MB big part through
                      its presigned URL) and with the big part cached (only the sealed
                      part travels). Both include opening the seal, the AES-GCM decrypt
                      and the allowlisted unpickle, which is reported on its own too: the
                      cached case should cost about the sealed part plus the local work.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
sys.path.insert(0, str(ROOT / "benchmarks"))

import httpx  # noqa: E402
from stack import file_of, forest, local_stack, publish_directly  # noqa: E402

from creditml_client import Client  # noqa: E402

RECEIPT = {
    "prediction_id": "0b7e6c1e-9a57-4d3c-8a4e-2f1c1d0e6a55",
    "model_id": "5f0b8a4e-57a2-4bb4-9d4e-0d5f3c1b2a11",
    "model_version": 1,
    "outputs": [1, 0, 1],
    "probabilities": None,
    "rows": 3,
    "cost": 3,
    "balance": 997,
    "created_at": "2026-11-30T10:00:00Z",
}
ROWS = [[0.1, 0.2, 0.3, 0.4], [1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]
PASSWORD = "benchmark client pw 1"  # noqa: S105 - a benchmark user's


def _answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=RECEIPT)


def bench_client_overhead(calls: int = 3000) -> dict[str, Any]:
    transport = httpx.MockTransport(_answer)
    base = "https://api.example.test"
    path = f"/models/{RECEIPT['model_id']}/predictions"
    raw = httpx.Client(base_url=base, transport=transport)
    client = Client(base, api_key="cml_" + "k" * 43, transport=transport)

    def raw_call() -> None:
        raw.post(
            path,
            json={"inputs": ROWS},
            headers={"Authorization": "Bearer cml_k", "Idempotency-Key": str(uuid.uuid4())},
        ).json()

    def client_call() -> None:
        client.predict(str(RECEIPT["model_id"]), ROWS)

    raws, clients = [], []
    for index in range(calls + 200):
        for call, into in ((raw_call, raws), (client_call, clients)):
            started = time.perf_counter()
            call()
            if index >= 200:  # warm-up
                into.append((time.perf_counter() - started) * 1000)
    raw.close()
    client.close()
    raw_ms, client_ms = statistics.median(raws), statistics.median(clients)
    return {
        "client_raw_httpx_median_ms": raw_ms,
        "client_predict_median_ms": client_ms,
        "client_overhead_median_ms": client_ms - raw_ms,
    }


def _timed_loads(client: Client, model_id: str, cache: Path, runs: int, cold: bool) -> list[float]:
    times = []
    for _ in range(runs):
        if cold:
            for cached in cache.rglob("*"):
                if cached.is_file():
                    cached.unlink()
        started = time.perf_counter()
        client.load_model(model_id)
        times.append(time.perf_counter() - started)
    return times


def bench_client_download(runs: int = 3) -> dict[str, Any]:
    """Against a local stack of its own, over HTTP, as a device sees it."""
    with local_stack() as (state, _, url), tempfile.TemporaryDirectory() as folder:
        from creditml.devstack.stack import apply_environment

        apply_environment(state["environment"])
        from creditml.composition.auth import auth_service
        from creditml.models.safe_loading import load_model

        email = f"bench-client-{uuid.uuid4().hex[:6]}@example.com"
        owner = auth_service().register(email, PASSWORD)
        model_file = file_of(forest(50_000_000, seed=3))
        model_id = publish_directly(owner.id, model_file)
        config, cache = Path(folder) / "config", Path(folder) / "cache"
        with Client(url, email=email, password=PASSWORD, config_dir=config, cache_dir=cache) as c:
            c.register_device("benchmark device")
            cold = _timed_loads(c, model_id, cache, runs, cold=True)
            cached = _timed_loads(c, model_id, cache, runs, cold=False)
            started = time.perf_counter()
            answer = c.download(model_id)
            download_cached = time.perf_counter() - started
        unpickles = []
        for _ in range(runs):
            started = time.perf_counter()
            load_model(model_file)
            unpickles.append(time.perf_counter() - started)
    return {
        "client_model_bytes": len(model_file),
        "client_sealed_part_bytes": len(json.dumps(answer["sealed"])),
        "client_load_cold_median_s": statistics.median(cold),
        "client_load_cached_median_s": statistics.median(cached),
        "client_download_cached_s": download_cached,
        "client_safe_unpickle_median_s": statistics.median(unpickles),
        "client_load_cached_minus_unpickle_s": statistics.median(cached)
        - statistics.median(unpickles),
    }


def bench_client() -> dict[str, Any]:
    return bench_client_overhead() | bench_client_download()


def _info(value: float) -> bool:
    return True


TARGETS: list[tuple[str, str, str, Any, str]] = [
    (
        "client overhead per predict",
        "client_overhead_median_ms",
        "ms",
        lambda v: v <= 0.2,
        "<= 0.2",
    ),
    ("  raw httpx POST (median)", "client_raw_httpx_median_ms", "ms", _info, "report"),
    ("load_model 50 MB, cold (median)", "client_load_cold_median_s", "s", _info, "report"),
    ("load_model 50 MB, big part cached", "client_load_cached_median_s", "s", _info, "report"),
    ("  of which the safe unpickle", "client_safe_unpickle_median_s", "s", _info, "report"),
    ("  download call alone, cached", "client_download_cached_s", "s", _info, "report"),
]


def notes(results: dict[str, Any]) -> list[str]:
    return [
        f"(client: model {results['client_model_bytes'] / 1e6:.1f} MB, sealed part "
        f"{results['client_sealed_part_bytes'] / 1e3:.1f} KB as JSON; cached load minus the "
        f"unpickle {results['client_load_cached_minus_unpickle_s']:.3f} s)"
    ]


if __name__ == "__main__":
    from run import record_alone

    measured = bench_client()
    record_alone(measured, TARGETS, notes(measured))
