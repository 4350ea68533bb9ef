"""Local stack benchmarks (issue 14, item 4), run by benchmarks/run.py (`make bench`) or alone:

    .venv/bin/python benchmarks/local_stack.py

Against a real `creditml dev` of its own (a subprocess in a temporary project copy, port 0):

  idle CPU              the stack's CPU time (utime + stime of /proc/<pid>/stat) over 20 s
                        with nobody calling it, after it settled     target <= 1 % of a core
  warm predict p50      POST /models/{id}/predictions, 1 row, over HTTP with one keep-alive
                        connection, after 20 warm-up calls, median of 200   target <= 25 ms
  growth ratio          the same p50 after 10,000 more ledger entries on the same account
                        (written straight into the embedded DynamoDB: copies of one of the
                        account's own grant entries) / the p50 with ~10 entries  target <= 1.2
  stop time             SIGTERM to the process's exit, and the CPU it burned meanwhile
                                                                             target <= 3 s

Not pass/fail tests: numbers vary with the machine.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from stack import publish_directly  # noqa: E402

PYTHON = sys.executable
IDLE_SECONDS = 20.0
SETTLE_SECONDS = 3.0
WARMUP = 20
SAMPLES = 200
SEEDED_ENTRIES = 10_000
TICKS = os.sysconf("SC_CLK_TCK")

TARGETS: list[tuple[str, str, str, Callable[[float], bool], str]] = [
    (
        "local stack idle CPU (20 s)",
        "local_idle_cpu_percent",
        "%",
        lambda v: v <= 1.0,
        "<= 1",
    ),
    (
        "local warm predict p50 over HTTP, 1 row",
        "local_predict_p50_ms",
        "ms",
        lambda v: v <= 25,
        "<= 25",
    ),
    (
        "  same, 10,010 entries / 10 entries",
        "local_predict_growth_ratio",
        "x",
        lambda v: v <= 1.2,
        "<= 1.2",
    ),
    ("local stack stop after SIGTERM", "local_stop_s", "s", lambda v: v <= 3, "<= 3"),
]


@dataclass
class _Stack:
    process: subprocess.Popen[bytes]
    state: dict[str, Any]
    url: str
    log: Path


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


@contextmanager
def _running_stack() -> Iterator[_Stack]:
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        (work / "template.yaml").write_text((ROOT / "template.yaml").read_text())
        os.symlink(ROOT / "functions", work / "functions")
        log = work / "stack.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                [str(Path(PYTHON).with_name("creditml")), "dev", "--port", "0"],
                cwd=work,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            try:
                deadline = time.monotonic() + 120
                while "Press Ctrl-C" not in (printed := log.read_text()):
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(printed[-2000:])
                    time.sleep(0.1)
                url = next(
                    line.split()[1] for line in printed.splitlines() if line.split()[:1] == ["API"]
                )
                state = json.loads((work / ".creditml" / "dev-stack.json").read_text())
                yield _Stack(process, state, url, log)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()


def idle_cpu_percent(pid: int, seconds: float = IDLE_SECONDS) -> float:
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds * 100


def _funded_model() -> tuple[str, str, str]:
    """(user id, access token, model id): a user with credits and an iris-shaped model."""
    import io

    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from creditml.billing.entries import EntryKind
    from creditml.composition.auth import auth_service
    from creditml.composition.core import ledger, token_signer

    user = auth_service().register(f"local-{uuid.uuid4().hex[:6]}@example.com", "bench pw 123")
    ledger().credit(
        user.id,
        10**6,
        EntryKind.GRANT,
        actor_id="bench-admin",
        idempotency_key=str(uuid.uuid4()),
        request="bench",
    )
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 4))
    model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    model_id = publish_directly(user.id, buffer.getvalue())
    return user.id, token_signer().issue_access(user.id, user.role), model_id


def predict_p50_ms(url: str, token: str, model_id: str) -> float:
    """Median of SAMPLES warm 1-row predictions over one keep-alive connection."""
    import httpx

    headers = {"authorization": f"Bearer {token}"}
    body = {"inputs": [[5.1, 3.5, 1.4, 0.2]]}
    samples = []
    with httpx.Client(base_url=url, timeout=30, headers=headers) as client:
        for index in range(WARMUP + SAMPLES):
            started = time.perf_counter()
            answer = client.post(
                f"/models/{model_id}/predictions",
                json=body,
                headers={"idempotency-key": uuid.uuid4().hex},
            )
            elapsed = time.perf_counter() - started
            assert answer.status_code == 200, answer.text
            if index >= WARMUP:
                samples.append(elapsed * 1000)
    return statistics.median(samples)


def seed_entries(user_id: str, count: int = SEEDED_ENTRIES) -> int:
    """Copy one of the account's grant entries `count` times into its partition, straight
    through the embedded DynamoDB (BatchWriteItem); grants are not counted as usage, so the
    stream consumers skip them. Returns the partition's item count."""
    import boto3

    from creditml.settings import get_settings

    table = get_settings().ledger_table
    dynamodb = boto3.client("dynamodb")
    items = dynamodb.query(
        TableName=table,
        KeyConditionExpression="account_id = :a AND begins_with(sk, :e)",
        ExpressionAttributeValues={":a": {"S": user_id}, ":e": {"S": "ENTRY#"}},
    )["Items"]
    original = next(item for item in items if item.get("kind", {}).get("S") == "grant")
    for start in range(0, count, 25):
        requests = []
        for index in range(start, min(start + 25, count)):
            copy = dict(original)
            copy["sk"] = {"S": f"ENTRY#seeded-{index:06d}"}
            if "entry_id" in copy:
                copy["entry_id"] = {"S": f"seeded-{index:06d}"}
            if "entry_seq" in copy:  # older than every real entry
                copy["entry_seq"] = {"N": str(index - count)}
            requests.append({"PutRequest": {"Item": copy}})
        dynamodb.batch_write_item(RequestItems={table: requests})
    pages = dynamodb.get_paginator("query").paginate(
        TableName=table,
        KeyConditionExpression="account_id = :a",
        ExpressionAttributeValues={":a": {"S": user_id}},
        Select="COUNT",
    )
    return sum(int(page["Count"]) for page in pages)


def stop_seconds(process: subprocess.Popen[bytes]) -> tuple[float, float]:
    """(seconds from SIGTERM to exit, CPU seconds the process used meanwhile)."""
    before = cpu_seconds(process.pid)
    started = time.perf_counter()
    process.send_signal(signal.SIGTERM)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"the stack exited with {process.returncode}")
    return elapsed, usage.ru_utime + usage.ru_stime - before


def bench_local_stack() -> dict[str, Any]:
    from creditml.devstack.stack import apply_environment

    with _running_stack() as stack:
        pid = stack.process.pid
        time.sleep(SETTLE_SECONDS)
        idle = idle_cpu_percent(pid)
        apply_environment(stack.state["environment"])
        user_id, token, model_id = _funded_model()
        small = predict_p50_ms(stack.url, token, model_id)
        entries = seed_entries(user_id)
        time.sleep(SETTLE_SECONDS)  # let the stream consumers see the seeded items
        large = predict_p50_ms(stack.url, token, model_id)
        stopped, stop_cpu = stop_seconds(stack.process)
    return {
        "local_idle_cpu_percent": idle,
        "local_predict_p50_ms": small,
        "local_predict_p50_large_ms": large,
        "local_predict_partition_items": entries,
        "local_predict_growth_ratio": large / small,
        "local_stop_s": stopped,
        "local_stop_cpu_s": stop_cpu,
    }


def notes(results: dict[str, Any]) -> list[str]:
    return [
        f"(local stack: predict p50 {results['local_predict_p50_ms']:.1f} ms with ~10 entries, "
        f"{results['local_predict_p50_large_ms']:.1f} ms with "
        f"{results['local_predict_partition_items']:,} items in the account's partition; "
        f"stop used {results['local_stop_cpu_s']:.2f} s of CPU)"
    ]


def main() -> int:
    from run import table  # the same table as `make bench`

    results = bench_local_stack()
    lines = table(results, TARGETS) + notes(results)
    sys.stdout.write(json.dumps(results, indent=2) + "\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
